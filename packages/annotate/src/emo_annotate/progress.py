"""What a person follows during a long run: on the progress bar and in `OUTPUT_DIR/progress.json`.

Figures: videos done of the run's total, clips written, hours of video annotated (decoded frames
at the output fps), frames per second, the estimated time left, failed and skipped inputs, worker
deaths and videos given up, and per worker the node, the unit and how far into its video it is.
Finished units count once their result arrives; units in flight count from their workers'
reports (every second), so a unit with one 3-hour video moves the figures while it runs.

The time left is estimated from input bytes (`os.stat`, no probing of 100,000 files up front):
bytes of the videos done, plus the decoded share of each video in flight, against the bytes
still to do, at this run's rate so far.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from tqdm import tqdm

from .layout import OutputLayout, write_json_atomic
from .timing import STAGES
from .units import Unit

REPORT_EVERY_S = 1.0  # progress.json rewrites and worker polls


@dataclass
class _UnitBytes:
    total: int
    per_video: list[int] = field(default_factory=list)


class RunProgress:
    def __init__(self, layout: OutputLayout, units: list[Unit], sizes: dict[str, int], fps: float, units_done_before: int = 0,
                 bar: bool = True):
        self.layout, self.fps = layout, fps
        self.bytes = {u.unit: _UnitBytes(sum(sizes.get(v.source, 0) for v in u.videos), [sizes.get(v.source, 0) for v in u.videos])
                      for u in units}
        self.total_units, self.units_done_before = len(units), units_done_before
        self.total_videos = sum(len(u.videos) for u in units)
        self.total_bytes = sum(b.total for b in self.bytes.values())
        self.done = Counter()  # finished units: videos, clips, frames, failed, skipped, bytes, units
        self.live: dict[object, dict] = {}  # worker key -> its latest report on the unit it holds
        self.workers: dict[object, dict] = {}  # worker key -> node, pid
        self.events = Counter()  # worker_deaths, videos_given_up, units_given_up, unit_errors
        self.stages = dict.fromkeys(STAGES, 0.0)
        self.peak_worker_rss_mb = 0.0
        self.started = time.time()
        self._written = 0.0
        self.bar = tqdm(total=self.total_videos, unit="video", desc="annotating", disable=not bar,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} videos [{elapsed}] {postfix}")

    # -- events from the driver ---------------------------------------------------------------
    def worker_ready(self, key, info: dict) -> None:
        self.workers[key] = info

    def worker_gone(self, key) -> None:
        self.workers.pop(key, None)
        self.live.pop(key, None)

    def report(self, key, report: dict) -> None:
        """A worker's report on the unit it is processing (`UnitWorker.report`)."""
        if key in self.workers:
            self.live[key] = report

    def unit_done(self, key, result: dict) -> None:
        self.live.pop(key, None)
        self.done.update(videos=result["videos"], clips=result["clips"], frames=result["frames"], failed=result["failed"],
                         skipped=result["skipped"], bytes=self.bytes[result["unit"]].total, units=1)
        for stage, seconds in result["stages"].items():
            self.stages[stage] = self.stages.get(stage, 0.0) + seconds
        self.peak_worker_rss_mb = max(self.peak_worker_rss_mb, result.get("peak_rss_mb", 0.0))

    def unit_given_up(self, unit: Unit) -> None:
        self.done.update(videos=len(unit.videos), failed=len(unit.videos), bytes=self.bytes[unit.unit].total, units=1)
        self.events["units_given_up"] += 1

    # -- figures ------------------------------------------------------------------------------
    def snapshot(self, state: str = "running") -> dict:
        live = list(self.live.values())
        videos = self.done["videos"] + sum(r["videos_done"] for r in live)
        clips = self.done["clips"] + sum(r["clips"] for r in live)
        frames = self.done["frames"] + sum(r["frames"] for r in live)
        elapsed = time.time() - self.started
        done_bytes = self.done["bytes"] + sum(self._live_bytes(r) for r in live)
        rate = done_bytes / elapsed if elapsed > 0 else 0.0
        eta = (self.total_bytes - done_bytes) / rate if rate > 0 and done_bytes < self.total_bytes else (0.0 if state == "finished" else None)
        workers = []
        for key, info in self.workers.items():
            r = self.live.get(key)
            workers.append({**info, "unit": r["unit"] if r else None, "video": r["source"] if r else None,
                            "frames_done": r["frames_done"] if r else None, "frames_expected": r["frames_expected"] if r else None})
        return {
            "state": state,
            "started_at": _iso(self.started),
            "updated_at": _iso(time.time()),
            "elapsed_s": round(elapsed, 1),
            "videos": {"done": videos, "total": self.total_videos,
                       "failed": self.done["failed"] + sum(r["failed"] for r in live),
                       "skipped": self.done["skipped"] + sum(r["skipped"] for r in live)},
            "units": {"done": self.done["units"], "total": self.total_units, "in_flight": len(live),
                      "done_before_this_run": self.units_done_before},
            "clips": clips,
            "hours_of_video": round(frames / self.fps / 3600, 4),
            "frames_per_s": round(frames / elapsed, 1) if elapsed > 0 else 0.0,
            "eta_s": None if eta is None else round(eta, 1),
            "bytes": {"done": int(done_bytes), "total": self.total_bytes},
            "events": dict(self.events),
            "workers": workers,
            "worker_stage_seconds": {k: round(v, 2) for k, v in self.stages.items()},
            "peak_worker_rss_mb": round(self.peak_worker_rss_mb, 1),
        }

    def _live_bytes(self, report: dict) -> float:
        sizes = self.bytes[report["unit"]].per_video
        done = sum(sizes[: report["videos_done"]])
        if report["videos_done"] < len(sizes) and report["frames_expected"]:
            done += sizes[report["videos_done"]] * min(1.0, report["frames_done"] / report["frames_expected"])
        return done

    def refresh(self, force: bool = False) -> None:
        """Redraw the bar; rewrite progress.json every REPORT_EVERY_S seconds."""
        now = time.time()
        if not force and now - self._written < REPORT_EVERY_S:
            return
        snap = self.snapshot()
        self._written = now
        self.bar.n = snap["videos"]["done"]
        self.bar.set_postfix_str(describe(snap), refresh=True)
        write_json_atomic(self.layout.progress, snap)

    def close(self, state: str, summary: dict | None = None) -> dict:
        snap = self.snapshot(state)
        if summary is not None:
            snap["summary"] = summary
        self.bar.n = snap["videos"]["done"]
        self.bar.set_postfix_str(describe(snap), refresh=True)
        self.bar.close()
        write_json_atomic(self.layout.progress, snap)
        return snap


def describe(snap: dict) -> str:
    """One line: clips, hours of video, frames/s, time left, failures."""
    eta = snap["eta_s"]
    parts = [f"{snap['clips']} clips", f"{snap['hours_of_video']:.2f} h of video", f"{snap['frames_per_s']:.0f} frames/s",
             "ETA " + ("?" if eta is None else _clock(eta))]
    if snap["videos"]["failed"]:
        parts.append(f"{snap['videos']['failed']} failed")
    if snap["events"].get("worker_deaths"):
        parts.append(f"{snap['events']['worker_deaths']} worker deaths")
    return ", ".join(parts)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
