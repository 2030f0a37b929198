"""Running units of work on Ray actors: scheduling, retries, workers that die, progress.

Each worker is an actor (`UnitWorker`) with its own models, one CPU, spread over the cluster's
nodes. The driver hands a unit to a worker once the worker is ready and idle, never to one still
starting: a replacement for a dead worker that cannot be placed (its node is gone and the other
CPUs are taken) simply never gets work, and the run ends when the queue is empty and no unit is
in flight. Ray itself retries nothing (`max_restarts=0`, `max_task_retries=0`); the driver does:

- a worker that dies (a crash, the OOM killer, its node removed) gives its unit back to the queue,
  to be redone from scratch by another worker, and is replaced;
- the video it was annotating (recorded in the unit's temporary folder) is blamed; once workers
  died on the same video more than `max_retries` times, the unit is redone without it and the
  video gets a `failed` row: one poison video does not fail the other videos of its unit;
- a death between videos, or an error in the unit's own code, counts against the unit, which is
  given up (its videos `failed`, left uncommitted for the next run) after `max_retries` more.

Workers are polled every second for how far they are (`progress.RunProgress`); a poll also
notices a dead worker early.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

from . import index
from .config import AnnotateConfig, RunConfig
from .errors import RunError
from .index import STATUS_FAILED
from .layout import OutputLayout
from .memory import peak_rss_mb
from .progress import REPORT_EVERY_S, RunProgress
from .units import Unit, UnitProgress, process_unit

START_TIMEOUT_S = 900.0  # no worker ready for this long while work waits: the cluster cannot host one
MAX_FAILED_STARTS = 3  # workers whose start fails in a row (their __init__ raises) before the run stops


class UnitWorker:
    """Ray actor body: models are loaded once per worker process."""

    def __init__(self, cfg: dict, input_dir: str, output_dir: str):
        import cv2  # the annotator's libraries load in the workers only, not in the driver

        from .pipeline import Annotator

        self.cfg = AnnotateConfig.from_dict(cfg)
        self.input_dir = Path(input_dir)
        self.layout = OutputLayout(Path(output_dir))
        # one CPU per actor (Ray's accounting): keep FFmpeg and OpenCV to one thread each
        cv2.setNumThreads(1)
        self.annotator = Annotator(self.cfg, threads=1)
        self.progress = UnitProgress()

    def ready(self) -> dict:
        """Where this worker runs (answers once the models are loaded)."""
        import ray

        return {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(), "pid": os.getpid()}

    def process(self, unit: dict, give_up: dict[str, str]) -> dict:
        self.progress = UnitProgress(unit["unit"])
        result = process_unit(Unit.from_dict(unit), self.input_dir, self.layout, self.annotator, self.cfg.shard_size,
                              give_up=give_up, progress=self.progress)
        result["peak_rss_mb"] = peak_rss_mb()
        result["peak_kept_frames"] = self.annotator.peak_kept_frames
        return result

    def report(self) -> dict:
        """How far the unit in hand is (called from another thread while `process` runs)."""
        p, a = self.progress, self.annotator
        current = p.source is not None
        return {"unit": p.unit, "videos_done": p.videos_done, "clips": p.clips, "failed": p.failed, "skipped": p.skipped,
                "source": p.source, "frames": p.frames + (a.frames_done if current else 0),
                "frames_done": a.frames_done if current else 0, "frames_expected": a.frames_expected if current else 0}


@dataclass
class _Worker:
    actor: object
    ready_ref: object | None  # pending until the actor has loaded its models
    key: int
    unit: Unit | None = None
    ref: object | None = None  # the unit's result
    poll: object | None = None  # a pending `report` call
    polled_at: float = 0.0


class Driver:
    def __init__(self, layout: OutputLayout, input_dir: Path, cfg: AnnotateConfig, run_cfg: RunConfig, units: list[Unit],
                 progress: RunProgress):
        import ray

        self.ray = ray
        self.layout, self.cfg, self.run_cfg, self.progress = layout, cfg, run_cfg, progress
        self.queue: deque[Unit] = deque(units)
        self.actor_cls = ray.remote(UnitWorker).options(
            num_cpus=1, max_restarts=0, max_task_retries=0, max_concurrency=2, scheduling_strategy="SPREAD")
        self.args = (cfg.to_dict(), str(input_dir.resolve()), str(layout.root.resolve()))
        self.workers: dict[int, _Worker] = {}
        self._keys = 0
        self.video_deaths: Counter = Counter()  # source -> workers that died annotating it
        self.unit_troubles: Counter = Counter()  # unit -> deaths between videos and errors
        self.give_up: dict[int, dict[str, str]] = {}  # unit -> {source: reason}
        self.failures: list[dict] = []  # index rows of units given up
        self._failed_starts = 0
        self._last_ready = time.time()

    def run(self) -> list[dict]:
        """Process every queued unit; returns the index rows of units given up."""
        ray = self.ray
        try:
            for _ in range(max(1, min(self.run_cfg.num_workers, len(self.queue)))):
                self._start_worker()
            while self.queue or any(w.unit is not None for w in self.workers.values()):
                self._assign()
                refs = self._waitables()
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=REPORT_EVERY_S / 2)
                if ready:  # take everything that is ready now, not just the first
                    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
                for ref in ready:
                    kind, worker = refs[ref]
                    getattr(self, f"_on_{kind}")(worker, ref)
                self._poll()
                self.progress.refresh()
                self._check_starvation()
            return self.failures
        finally:
            for worker in self.workers.values():
                ray.kill(worker.actor, no_restart=True)

    # -- workers ------------------------------------------------------------------------------
    def _start_worker(self) -> None:
        actor = self.actor_cls.remote(*self.args)
        self._keys += 1
        self.workers[self._keys] = _Worker(actor, actor.ready.remote(), self._keys)

    def _assign(self) -> None:
        for worker in self.workers.values():
            if worker.ready_ref is None and worker.unit is None and self.queue:
                unit = self.queue.popleft()
                worker.unit, worker.polled_at = unit, time.time() - REPORT_EVERY_S / 2  # first report soon
                worker.ref = worker.actor.process.remote(unit.to_dict(), self.give_up.get(unit.unit, {}))

    def _waitables(self) -> dict:
        refs = {}
        for worker in self.workers.values():
            if worker.ready_ref is not None:
                refs[worker.ready_ref] = ("ready", worker)
            if worker.ref is not None:
                refs[worker.ref] = ("result", worker)
            if worker.poll is not None:
                refs[worker.poll] = ("report", worker)
        return refs

    def _on_ready(self, worker: _Worker, ref) -> None:
        worker.ready_ref = None
        try:
            info = self.ray.get(ref)
        except self.ray.exceptions.RayError as err:  # the worker could not start (its models, its node)
            self._failed_starts += 1
            if self._failed_starts >= MAX_FAILED_STARTS:
                raise RunError(f"annotation workers cannot start: {_one_line(err)}") from None
            self._replace(worker)
            return
        self._failed_starts = 0
        self._last_ready = time.time()
        self.progress.worker_ready(worker.key, info)

    def _on_report(self, worker: _Worker, ref) -> None:
        worker.poll = None
        try:
            self.progress.report(worker.key, self.ray.get(ref))
        except self.ray.exceptions.RayError:
            pass  # a dead worker: its unit's result says so

    def _on_result(self, worker: _Worker, ref) -> None:
        unit, worker.unit, worker.ref = worker.unit, None, None
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as err:  # the unit's own code raised
            self._trouble(unit, f"error: {_one_line(err)}")
            return
        except self.ray.exceptions.RayError as err:  # the worker died: crash, OOM kill, node gone
            self.progress.events["worker_deaths"] += 1
            self._replace(worker)
            self._died_on(unit, err)
            return
        self.progress.unit_done(worker.key, result)

    def _replace(self, worker: _Worker) -> None:
        self.ray.kill(worker.actor, no_restart=True)
        del self.workers[worker.key]
        self.progress.worker_gone(worker.key)
        self._start_worker()

    def _poll(self) -> None:
        now = time.time()
        for worker in self.workers.values():
            if worker.unit is not None and worker.poll is None and now - worker.polled_at >= REPORT_EVERY_S:
                worker.poll, worker.polled_at = worker.actor.report.remote(), now

    def _check_starvation(self) -> None:
        busy = any(w.unit is not None for w in self.workers.values())
        idle = any(w.ready_ref is None and w.unit is None for w in self.workers.values())
        if busy or idle:
            self._last_ready = time.time()
        elif self.queue and time.time() - self._last_ready > START_TIMEOUT_S:
            raise RunError(f"no annotation worker could start for {START_TIMEOUT_S:.0f} s (does the Ray cluster have a free CPU?); "
                           "rerun the same command to resume")

    # -- what a death or an error costs -------------------------------------------------------
    def _died_on(self, unit: Unit, err: BaseException) -> None:
        video = self.layout.in_flight(unit.unit)
        if video is None:
            self._trouble(unit, f"the worker died between videos: {_one_line(err)}")
            return
        source = unit.videos[video].source
        self.video_deaths[source] += 1
        deaths = self.video_deaths[source]
        if deaths > self.run_cfg.max_retries:
            self.give_up.setdefault(unit.unit, {})[source] = (
                f"the worker died {deaths} times annotating this video (a crash or out of memory): {_one_line(err)}")
            self.progress.events["videos_given_up"] += 1
        self.queue.appendleft(unit)

    def _trouble(self, unit: Unit, reason: str) -> None:
        self.unit_troubles[unit.unit] += 1
        if self.unit_troubles[unit.unit] <= self.run_cfg.max_retries:
            self.queue.appendleft(unit)
            return
        reason = f"unit failed {self.unit_troubles[unit.unit]} times: {reason}"
        self.failures += [index.video_row(v.video_id, v.display_source, unit.unit, STATUS_FAILED, reason) for v in unit.videos]
        self.progress.unit_given_up(unit)


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(err).__name__
