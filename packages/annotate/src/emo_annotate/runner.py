"""The driver: plan units of work, run them on Ray actors, resume, merge the index.

Each actor loads the models once and processes units one after another. A unit whose actor dies
is retried by Ray on a restarted actor (`max_retries`); a unit that still fails gets `failed`
rows and stays uncommitted, so the next run retries it. A rerun skips committed units. One run at a time per output directory (an exclusive lock).
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import cv2
from tqdm import tqdm

from . import index
from .config import AnnotateConfig, RunConfig
from .errors import RunError
from .layout import LOCK_NAME, TMP_SUFFIX, OutputLayout, write_json_atomic
from .pipeline import STATUS_FAILED, Annotator, library_versions
from .units import Unit, discover_videos, extend_plan, process_unit


class UnitWorker:
    """Ray actor body: models are loaded once per worker process."""

    def __init__(self, cfg: dict, input_dir: str, output_dir: str):
        self.cfg = AnnotateConfig.from_dict(cfg)
        self.input_dir = Path(input_dir)
        self.layout = OutputLayout(Path(output_dir))
        # one CPU per actor (Ray's accounting): keep FFmpeg and OpenCV to one thread each
        cv2.setNumThreads(1)
        self.annotator = Annotator(self.cfg, threads=1)

    def process(self, unit: dict) -> dict:
        result = process_unit(Unit.from_dict(unit), self.input_dir, self.layout, self.annotator, self.cfg.shard_size)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
        return result

    def pid(self) -> int:
        return os.getpid()


def load_plan(layout: OutputLayout, cfg: AnnotateConfig, input_dir: Path) -> list[Unit]:
    """The units of an earlier run into this directory (none for a new one); RunError when that
    run used another config or another input directory."""
    if not layout.manifest.exists():
        if layout.root.exists() and any(p.name != LOCK_NAME for p in layout.root.iterdir()) and not layout.units.exists():
            raise RunError(f"{layout.root} is not empty and holds no annotation run; choose an empty or new directory")
        return []
    try:
        manifest = json.loads(layout.manifest.read_text())
        previous = AnnotateConfig.from_dict(manifest["config"])
        previous_input = manifest["input_dir"]
    except (ValueError, KeyError, TypeError) as err:
        raise RunError(f"{layout.manifest} is unreadable ({err}); not touching that directory") from None
    if Path(previous_input) != input_dir.resolve():
        raise RunError(f"{layout.root} holds a run over {previous_input}, not {input_dir.resolve()}; "
                       "use a new output directory (or the same input directory to resume)")
    if previous != cfg:
        old, new = _flatten(previous.to_dict()), _flatten(cfg.to_dict())
        diff = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(old) if old.get(k) != new.get(k))
        raise RunError(f"{layout.root} was annotated with another config ({diff}); use a new output directory")
    return [Unit.from_dict(u) for u in manifest["plan"]]


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run(input_dir: Path, output_dir: Path, cfg: AnnotateConfig, run_cfg: RunConfig) -> dict:
    """Annotate every video under `input_dir` into `output_dir`; returns the run summary."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise RunError(f"input directory {input_dir} does not exist or is not a directory")
    if output_dir.exists() and not output_dir.is_dir():
        raise RunError(f"output path {output_dir} exists and is not a directory")
    if output_dir.resolve() == input_dir.resolve() or input_dir.resolve() in output_dir.resolve().parents:
        raise RunError("the output directory must not be inside the input directory")
    if cfg.audio_features == "wav2vec2":
        _check_wav2vec2(cfg.wav2vec2.model)

    layout = OutputLayout(output_dir)
    load_plan(layout, cfg, input_dir)  # refuse a wrong directory before creating anything in it
    sources = discover_videos(input_dir)
    if not sources and not layout.manifest.exists():
        raise RunError(f"no files under {input_dir}")
    with layout.exclusive():
        return _run_locked(layout, input_dir, output_dir, sources, cfg, run_cfg)


def _run_locked(layout: OutputLayout, input_dir: Path, output_dir: Path, sources: list[str], cfg: AnnotateConfig,
                run_cfg: RunConfig) -> dict:
    units = extend_plan(load_plan(layout, cfg, input_dir), sources, cfg.videos_per_task, run_cfg.num_workers)
    layout.create()
    for leftover in layout.root.rglob("*" + TMP_SUFFIX):  # only dead writers' files: we hold the lock
        leftover.unlink(missing_ok=True)
    write_json_atomic(
        layout.manifest,
        {
            "config": cfg.to_dict(),
            "input_dir": str(input_dir.resolve()),
            "plan": [u.to_dict() for u in units],
            "versions": library_versions(),
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )

    done = layout.committed_units()
    pending = [u for u in units if u.unit not in done]
    failures, peak_rss_mb = _run_units(pending, input_dir, layout, cfg, run_cfg) if pending else ([], 0.0)

    planned = {u.unit for u in units}
    parts = [layout.unit_path(u) for u in sorted(layout.committed_units() & planned)]
    table = index.merge(parts, failures, layout.index)
    summary = index.summarize(table)
    summary.update(
        units=len(units),
        units_skipped_as_done=len(units) - len(pending),
        worker_peak_rss_mb=round(peak_rss_mb, 1),
        output=str(output_dir),
    )
    return summary


def _check_wav2vec2(model: str) -> None:
    path = Path(model)
    looks_local = model.startswith((".", "/", "~")) or path.exists()
    if looks_local and not (path.expanduser() / "config.json").exists():
        raise RunError(f"--audio-encoder {model}: no wav2vec2 model there (config.json missing)")


def _run_units(
    pending: list[Unit], input_dir: Path, layout: OutputLayout, cfg: AnnotateConfig, run_cfg: RunConfig
) -> tuple[list[dict], float]:
    """Process units on Ray actors; returns index rows for units that failed for good and the
    largest peak memory (MB) a worker reported."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        _init_ray(run_cfg)
    try:
        worker_cls = ray.remote(num_cpus=1, max_restarts=run_cfg.max_retries, max_task_retries=run_cfg.max_retries)(UnitWorker)
        n_workers = max(1, min(run_cfg.num_workers, len(pending)))
        args = (cfg.to_dict(), str(input_dir.resolve()), str(layout.root.resolve()))
        workers = [worker_cls.remote(*args) for _ in range(n_workers)]
        queue = list(pending)
        in_flight: dict = {}  # ObjectRef -> (worker, unit)
        failures: list[dict] = []
        bar = tqdm(total=sum(len(u.videos) for u in pending), unit="video", desc="annotating", disable=not run_cfg.progress)
        clips, peak_rss_mb = 0, 0.0

        def submit(worker) -> None:
            if queue:
                unit = queue.pop(0)
                in_flight[worker.process.remote(unit.to_dict())] = (worker, unit)

        for worker in workers:
            submit(worker)
        while in_flight:
            [ref], _ = ray.wait(list(in_flight), num_returns=1)
            worker, unit = in_flight.pop(ref)
            try:
                result = ray.get(ref)
                clips += result["clips"]
                peak_rss_mb = max(peak_rss_mb, result["peak_rss_mb"])
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.RayTaskError) as err:
                reason = f"worker failed {run_cfg.max_retries + 1} times on this unit: {_one_line(err)}"
                failures += [index.video_row(v.video_id, v.source, unit.unit, STATUS_FAILED, reason) for v in unit.videos]
                if isinstance(err, ray.exceptions.RayActorError):
                    worker = worker_cls.remote(*args)  # the actor is gone for good: replace it
            bar.update(len(unit.videos))
            bar.set_postfix(clips=clips, failed_units=len({r["unit"] for r in failures}))
            submit(worker)
        bar.close()
        return failures, peak_rss_mb
    finally:
        if started_here:
            ray.shutdown()


def _init_ray(run_cfg: RunConfig) -> None:
    import ray

    # `uv run` would otherwise make Ray start every worker through `uv run` with the working dir
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if run_cfg.address:
        ray.init(address=run_cfg.address, log_to_driver=False, logging_level="ERROR")
    else:
        ray.init(
            num_cpus=max(1, run_cfg.num_workers),
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            object_store_memory=256 * 1024 * 1024,
        )


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(err).__name__
