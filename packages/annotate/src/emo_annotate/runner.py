"""A run: plan units of work, run them on Ray actors (`driver`), resume, merge the index.

Each actor loads the models once and processes units one after another. A unit whose actor dies
is redone by another one, without the video it died on once that happened too often (`driver`);
a unit that still fails gets `failed` rows and stays uncommitted, so the next run retries it. A
rerun skips committed units. One run at a time per output directory (an exclusive lock). The
run's progress is on the progress bar and in `progress.json` (`progress`).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

from . import index
from .config import AnnotateConfig, RunConfig
from .driver import Driver
from .errors import RunError
from .layout import LOCK_NAME, TMP_SUFFIX, OutputLayout, write_json_atomic
from .memory import peak_rss_mb
from . import __version__
from .progress import RunProgress
from .ray_env import init_ray
from .units import Unit, discover_videos, extend_plan


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
    # only dead writers' files: we hold the lock
    shutil.rmtree(layout.tmp, ignore_errors=True)
    for leftover in layout.root.rglob("*" + TMP_SUFFIX):
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
    progress = RunProgress(layout, pending, input_sizes(input_dir, pending), cfg.fps, len(units) - len(pending), bar=run_cfg.progress)
    state = "interrupted"
    try:
        failures = _run_units(pending, input_dir, layout, cfg, run_cfg, progress) if pending else []
        state = "finished"
    finally:
        if state != "finished":
            progress.close(state)

    planned = {u.unit for u in units}
    parts = [layout.unit_path(u) for u in sorted(layout.committed_units() & planned)]
    table = index.merge(parts, failures, layout.index)
    summary = index.summarize(table)
    summary.update(
        units=len(units),
        units_skipped_as_done=len(units) - len(pending),
        worker_peak_rss_mb=progress.peak_worker_rss_mb,
        driver_peak_rss_mb=round(peak_rss_mb(), 1),
        output=str(output_dir),
    )
    if layout.tmp.exists() and not any(layout.tmp.iterdir()):
        layout.tmp.rmdir()  # every unit committed or given up: nothing is being written
    snap = progress.close("finished", summary)
    summary.update(worker_stage_seconds=snap["worker_stage_seconds"], events=snap["events"], elapsed_s=snap["elapsed_s"])
    return summary


def input_sizes(input_dir: Path, units: list[Unit]) -> dict[str, int]:
    """Bytes of each input (what the time left is estimated from); 0 for a file gone meanwhile."""
    sizes = {}
    for unit in units:
        for video in unit.videos:
            try:
                sizes[video.source] = os.stat(input_dir / video.source).st_size
            except OSError:
                sizes[video.source] = 0
    return sizes


def _check_wav2vec2(model: str) -> None:
    path = Path(model)
    looks_local = model.startswith((".", "/", "~")) or path.exists()
    if looks_local and not (path.expanduser() / "config.json").exists():
        raise RunError(f"--audio-encoder {model}: no wav2vec2 model there (config.json missing)")


def _run_units(pending: list[Unit], input_dir: Path, layout: OutputLayout, cfg: AnnotateConfig, run_cfg: RunConfig,
               progress: RunProgress) -> list[dict]:
    """Process units on Ray actors; returns index rows for units that failed for good."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        init_ray(run_cfg.address, run_cfg.num_workers)
    try:
        return Driver(layout, input_dir, cfg, run_cfg, pending, progress).run()
    finally:
        if started_here:
            ray.shutdown()


def library_versions() -> dict:
    import importlib.metadata as md

    names = ["av", "numpy", "scipy", "mediapipe", "face-alignment", "torch", "transformers", "ray",
             "webdataset", "pyarrow", "opencv-contrib-python"]
    versions = {"python": platform.python_version(), "emo-annotate": __version__}
    for name in names:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return versions
