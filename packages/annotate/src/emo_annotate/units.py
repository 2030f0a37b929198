"""Units of work: a few input videos whose clips go into the unit's own shards.

The unit is what Ray schedules, retries and commits. Processing a unit is deterministic (same
inputs and config give byte-identical shards), so redoing an interrupted unit reproduces exactly
what an uninterrupted run writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from . import index
from .index import STATUS_FAILED
from .layout import OutputLayout
from .shards import ShardSink

if TYPE_CHECKING:
    from .pipeline import Annotator

VIDEO_EXTENSIONS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".flv", ".mpg", ".mpeg", ".ts", ".wmv", ".3gp"}


@dataclass(frozen=True)
class VideoTask:
    source: str  # path relative to the input directory, POSIX separators; undecodable bytes of a
    # name that is not UTF-8 are kept as lone surrogates (os.fsdecode), so the file opens again
    video_id: str  # [A-Za-z0-9-]+, unique within the run

    @property
    def display_source(self) -> str:
        """`source` as text every writer accepts (index, json): bytes that are not UTF-8 as `\\xNN`."""
        return display_name(self.source)


@dataclass(frozen=True)
class Unit:
    unit: int
    videos: tuple[VideoTask, ...]

    def to_dict(self) -> dict:
        return {"unit": self.unit, "videos": [asdict(v) for v in self.videos]}

    @classmethod
    def from_dict(cls, data: dict) -> "Unit":
        return cls(data["unit"], tuple(VideoTask(**v) for v in data["videos"]))


def display_name(source: str) -> str:
    return os.fsencode(source).decode("utf-8", "backslashreplace")


def video_id_for(source: str) -> str:
    """A readable, dot-free id: the sanitised file stem plus 64 bits of a hash of the path's bytes
    (unique at any dataset size one would annotate: 1e-9 odds of a clash among 190 000 files)."""
    stem = Path(display_name(source)).stem
    readable = re.sub(r"[^A-Za-z0-9]+", "-", stem).strip("-")[:48] or "video"
    digest = hashlib.sha1(os.fsencode(source)).hexdigest()[:16]
    return f"{readable}-{digest}"


def discover_videos(input_dir: Path) -> list[str]:
    """Relative paths of every file under `input_dir` (hidden files and folders aside), sorted:
    each input gets an index row, so a file that is not a video is reported, not ignored."""
    found = [
        p.relative_to(input_dir).as_posix()
        for p in input_dir.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(input_dir).parts)
    ]
    return sorted(found, key=os.fsencode)


def extend_plan(units: list[Unit], sources: list[str], videos_per_task: int, num_workers: int = 1) -> list[Unit]:
    """Units for `sources` not planned yet, numbered after the existing ones.

    Units hold at most `videos_per_task` videos, fewer when that leaves some workers idle: every
    worker gets at least two units where there are enough videos.
    """
    planned = {v.source for u in units for v in u.videos}
    new = [s for s in sources if s not in planned]
    videos_per_task = max(1, min(videos_per_task, len(new) // (2 * max(1, num_workers))))
    start = max((u.unit for u in units), default=-1) + 1
    added = [
        Unit(start + i, tuple(VideoTask(s, video_id_for(s)) for s in new[j : j + videos_per_task]))
        for i, j in enumerate(range(0, len(new), videos_per_task))
    ]
    return units + added


@dataclass
class UnitProgress:
    """What the unit being processed has done so far (read by progress reports, another thread)."""

    unit: int = -1
    videos_done: int = 0
    clips: int = 0
    frames: int = 0  # decoded frames (at the output fps) of the finished videos
    failed: int = 0
    skipped: int = 0
    source: str | None = None  # the video being annotated


def process_unit(unit: Unit, input_dir: Path, layout: OutputLayout, annotator: "Annotator", shard_size: int,
                 give_up: dict[str, str] | None = None, progress: UnitProgress | None = None) -> dict:
    """Annotate every video of the unit into its shards, then commit the unit's index part.

    Videos in `give_up` (source -> reason: workers died on them) get a `failed` row instead.
    Which video is being annotated is recorded in the unit's temporary folder, so the driver can
    tell, when a worker dies, which video it died on.
    """
    give_up = give_up or {}
    progress = progress or UnitProgress(unit.unit)
    times = annotator.times.seconds
    before = dict(times)
    layout.clear_unit(unit.unit)
    sink = ShardSink(layout, unit.unit, shard_size)
    rows: list[dict] = []
    try:
        for i, video in enumerate(unit.videos):
            clip_metas: list[dict] = []
            shards: list[str] = []
            source = video.display_source
            progress.source = source

            def emit(sample: dict) -> None:
                t = time.perf_counter()
                shards.append(sink.add(sample))
                clip_metas.append(json.loads(sample["json"]))
                progress.clips += 1
                times["write"] += time.perf_counter() - t

            dropped, fps, frames = [], 1.0, 0
            if video.source in give_up:
                status, reason = STATUS_FAILED, give_up[video.source]
            else:
                layout.mark_in_flight(unit.unit, i)
                try:
                    outcome = annotator.annotate(input_dir / video.source, video.video_id, source, emit)
                    status, reason, dropped, fps, frames = outcome.status, outcome.reason, outcome.dropped, outcome.fps, outcome.frames
                except Exception as err:  # one broken video must not stop the unit
                    status = STATUS_FAILED
                    reason = f"annotator error: {type(err).__name__}: {err}"
                    traceback.print_exc()
                layout.mark_in_flight(unit.unit, None)
            rows.extend(index.clip_row(m, unit.unit, s) for m, s in zip(clip_metas, shards))
            rows.extend(
                index.dropped_row(video.video_id, source, unit.unit, d.start / fps, d.stop / fps, d.stop - d.start, fps, d.reason)
                for d in dropped
            )
            if status != "ok":
                if clip_metas:
                    reason = f"{reason} (after {len(clip_metas)} clips were written)"
                if Path(source).suffix.lower() not in VIDEO_EXTENSIONS and status == STATUS_FAILED:
                    status, reason = "skipped", f"not a video file ({reason})"
                rows.append(index.video_row(video.video_id, source, unit.unit, status, reason))
                progress.failed += status == STATUS_FAILED
                progress.skipped += status != STATUS_FAILED
            progress.frames += frames
            progress.videos_done += 1
        progress.source = None
        t = time.perf_counter()
        sink.close()
    except BaseException:
        sink.abort()
        raise
    index.write_rows(layout.unit_path(unit.unit), rows)  # the unit's commit marker
    layout.finish_unit(unit.unit)
    times["write"] += time.perf_counter() - t
    return {
        "unit": unit.unit, "videos": len(unit.videos), "clips": progress.clips, "frames": progress.frames,
        "failed": progress.failed, "skipped": progress.skipped,
        "stages": {k: times[k] - before[k] for k in times},
    }
