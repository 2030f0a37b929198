"""Units of work: a few input videos whose clips go into the unit's own shards.

The unit is what Ray schedules, retries and commits. Processing a unit is deterministic (same
inputs and config give byte-identical shards), so redoing an interrupted unit reproduces exactly
what an uninterrupted run writes.
"""

from __future__ import annotations

import hashlib
import json
import re
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from . import index
from .layout import OutputLayout
from .pipeline import STATUS_FAILED, Annotator
from .shards import ShardSink

VIDEO_EXTENSIONS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".flv", ".mpg", ".mpeg", ".ts", ".wmv", ".3gp"}


@dataclass(frozen=True)
class VideoTask:
    source: str  # path relative to the input directory, POSIX separators
    video_id: str  # [A-Za-z0-9-]+, unique within the run


@dataclass(frozen=True)
class Unit:
    unit: int
    videos: tuple[VideoTask, ...]

    def to_dict(self) -> dict:
        return {"unit": self.unit, "videos": [asdict(v) for v in self.videos]}

    @classmethod
    def from_dict(cls, data: dict) -> "Unit":
        return cls(data["unit"], tuple(VideoTask(**v) for v in data["videos"]))


def video_id_for(source: str) -> str:
    """A readable, dot-free id: the sanitised file stem plus a hash of the relative path."""
    stem = Path(source).stem
    readable = re.sub(r"[^A-Za-z0-9]+", "-", stem).strip("-")[:48] or "video"
    digest = hashlib.sha1(source.encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


def discover_videos(input_dir: Path) -> list[str]:
    """Relative paths of files with a video extension under `input_dir`, sorted."""
    found = [
        p.relative_to(input_dir).as_posix()
        for p in input_dir.rglob("*")
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
    ]
    return sorted(found)


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


def process_unit(unit: Unit, input_dir: Path, layout: OutputLayout, annotator: Annotator, shard_size: int) -> dict:
    """Annotate every video of the unit into its shards, then commit the unit's index part."""
    layout.clear_unit(unit.unit)
    sink = ShardSink(layout, unit.unit, shard_size)
    rows: list[dict] = []
    try:
        for video in unit.videos:
            clip_metas: list[dict] = []
            shards: list[str] = []

            def emit(sample: dict) -> None:
                shards.append(sink.add(sample))
                clip_metas.append(json.loads(sample["json"]))

            try:
                outcome = annotator.annotate(input_dir / video.source, video.video_id, video.source, emit)
                status, reason = outcome.status, outcome.reason
            except Exception as err:  # one broken video must not stop the unit
                status = STATUS_FAILED
                reason = f"annotator error: {type(err).__name__}: {err}"
                traceback.print_exc()
            rows.extend(index.clip_row(m, unit.unit, s) for m, s in zip(clip_metas, shards))
            if status != "ok":
                if clip_metas:
                    reason = f"{reason} (after {len(clip_metas)} clips were written)"
                rows.append(index.video_row(video.video_id, video.source, unit.unit, status, reason))
        sink.close()
    except BaseException:
        sink.abort()
        raise
    index.write_rows(layout.unit_path(unit.unit), rows)  # the unit's commit marker
    return {"unit": unit.unit, "videos": len(unit.videos), "clips": sum(1 for r in rows if r.get("key"))}
