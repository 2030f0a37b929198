"""`compare`: generated videos against real ones (and their portraits, audio, requested speed)
-> a report dict, and with `out` the report folder (report.json, report.md, plots)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .analysis import Tools, analyze_pair, thumbnail
from .config import EvalConfig
from .errors import EvalError
from .inputs import SpeedSpec, VideoItem, pair_inputs
from .metrics import AUDIO_RATE, Curves, paired_metrics, video_metrics

logger = logging.getLogger(__name__)

REPORT_VERSION = 1


@dataclass
class Conditioning:
    """What one video was generated from, decoded before any heavy work."""

    audio: np.ndarray | None  # 16 kHz mono, or None (no sound anywhere)
    audio_source: str | None  # where it came from
    portrait_rgb: np.ndarray | None  # a small copy, for the frame strip
    portrait_embedding: np.ndarray | None


def read_audio_16k(path: Path, option: str) -> np.ndarray:
    from emo_annotate.errors import MediaError
    from emo_annotate.media import read_audio

    if not Path(path).is_file():
        raise EvalError(f"{option}: no such file: {path}")
    try:
        return read_audio(Path(path))
    except MediaError as err:
        raise EvalError(f"{option}: cannot use {path}: {err}") from None


def _own_sound(*paths: Path | None) -> tuple[np.ndarray | None, str | None]:
    """The first of these videos' sound tracks that exists."""
    from emo_annotate.errors import MediaError
    from emo_annotate.media import read_audio

    for path in paths:
        if path is None:
            continue
        try:
            return read_audio(path), f"sound of {path.name}"
        except MediaError:
            continue
    return None, None


def read_portrait(path: Path) -> np.ndarray:
    from emo_annotate.errors import MediaError
    from emo_annotate.media import read_image

    try:
        return read_image(Path(path))
    except MediaError as err:
        raise EvalError(f"--portraits: {err}") from None


def prepare(item: VideoItem, tools: Tools) -> Conditioning:
    if item.audio is not None:
        audio, source = read_audio_16k(item.audio, "--audio"), item.audio.name
    else:
        audio, source = _own_sound(item.generated, item.real)
    rgb = embedding = None
    if item.portrait is not None:
        rgb = read_portrait(item.portrait)
        tracker = tools.trackers[0]
        tracker.reset()
        landmarks = tracker.track(rgb)
        tracker.reset()
        if landmarks is None:
            raise EvalError(f"--portraits: no face found in {item.portrait}")
        embedding = tools.embedder.embed(rgb, landmarks) if tools.embedder is not None else None
        rgb = thumbnail(rgb)
    return Conditioning(audio, source, rgb, embedding)


def compare(
    generated: str | Path,
    real: str | Path | None = None,
    portraits: str | Path | None = None,
    audio: str | Path | None = None,
    out: str | Path | None = None,
    speed: SpeedSpec = None,
    cfg: EvalConfig | None = None,
    **options,
) -> dict:
    """Measure `generated` (an mp4 or a folder of them) against `real` (same, paired by file
    stem), with optional `portraits` (the generation's reference images), driving `audio` (default:
    each generated video's own sound) and requested head `speed` (deg/s: a number, a per-frame
    array or file, a folder of STEM.npy/.txt, or {stem: value}). `options` are `EvalConfig`
    fields (e.g. `syncnet=`, `i3d=`, `arcface=`, `clip_frames=`, `progress=`).

    Returns the report (the content of report.json, see the README); with `out`, also writes
    report.json, report.md and the plots there.
    """
    from tqdm import tqdm

    from .report import ReportWriter, clean, describe_metrics, overall

    if cfg is not None and options:
        raise TypeError("compare() takes an EvalConfig or keyword options, not both")
    cfg = cfg if cfg is not None else EvalConfig(**options)
    to_path = lambda p: None if p is None else Path(p)  # noqa: E731
    items = pair_inputs(Path(generated), to_path(real), to_path(portraits), to_path(audio),
                        Path(speed) if isinstance(speed, str) else speed)
    writer = ReportWriter(Path(out)) if out is not None else None  # proves the folder writable now

    started = time.perf_counter()
    try:
        tools = Tools.load(cfg)
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
    try:
        conditioning = {item.name: prepare(item, tools) for item in items}  # bad portraits / audio fail here, early
        videos: dict[str, dict] = {}
        pools: dict[str, list] = {"fid": [[], []], "fvd": [[], []], "efid": [[], []]}
        timings: dict[str, float] = {}
        frames_seen = 0
        for item in tqdm(items, desc="videos", unit="video", disable=not cfg.progress):
            cond = conditioning[item.name]
            pair = analyze_pair(item.generated, item.real, tools)
            for key, value in pair.timings.items():
                timings[key] = timings.get(key, 0.0) + value
            frames_seen += pair.generated.frames + (pair.real.frames if pair.real else 0)
            entry, curves = _video_entry(item, cond, pair, tools, timings, pools)
            videos[item.name] = entry
            if writer is not None:
                writer.plots(item.name, curves, cond, pair, item.speed)
        report = {
            "version": REPORT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "inputs": {"generated": str(generated), "real": None if real is None else str(real),
                       "portraits": None if portraits is None else str(portraits),
                       "audio": None if audio is None else str(audio), "videos": len(items)},
            "settings": {"analysis_size": cfg.analysis_size, "clip_frames": cfg.clip_frames, "max_offset": cfg.max_offset,
                         "identity": cfg.identity, "fvd_frames": cfg.fvd_frames, "device": cfg.device},
            "metrics": describe_metrics(tools, items, any(c.audio is not None for c in conditioning.values())),
            "overall": overall(videos, pools),
            "videos": videos,
            "timings": {"seconds": {k: round(v, 3) for k, v in sorted(timings.items())},
                        "total_seconds": round(time.perf_counter() - started, 3), "frames": frames_seen},
        }
        report = clean(report)
        if writer is not None:
            writer.finish(report)
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
    finally:
        tools.close()
    return report


def _video_entry(item: VideoItem, cond: Conditioning, pair, tools: Tools, timings: dict, pools: dict) -> tuple[dict, dict[str, Curves]]:
    from .frechet import expression_features

    gen_metrics, gen_curves = video_metrics(pair.generated, tools, cond.audio, cond.portrait_embedding, item.speed, timings)
    entry = {
        "generated": str(item.generated), "real": None if item.real is None else str(item.real),
        "portrait": None if item.portrait is None else str(item.portrait), "audio": cond.audio_source,
        "metrics": {"generated": gen_metrics},
    }
    curves = {"generated": gen_curves}
    t = time.perf_counter()
    gen_expr = expression_features(pair.generated.landmark_array())
    timings["expression"] = timings.get("expression", 0.0) + time.perf_counter() - t
    if pair.real is not None:
        real_metrics, real_curves = video_metrics(pair.real, tools, cond.audio, cond.portrait_embedding, None, timings)
        paired, csim_curve = paired_metrics(pair)
        entry["metrics"]["real"] = real_metrics
        entry["metrics"]["paired"] = paired
        curves["real"] = real_curves
        curves["generated"].extra["csim"] = csim_curve
        t = time.perf_counter()
        real_expr = expression_features(pair.real.landmark_array())
        timings["expression"] += time.perf_counter() - t
        if tools.inception is not None:
            pools["fid"][0].append(pair.generated.inception_array())
            pools["fid"][1].append(pair.real.inception_array())
        pools["fvd"][0].extend(pair.generated.i3d)
        pools["fvd"][1].extend(pair.real.i3d)
        pools["efid"][0].append(gen_expr[np.isfinite(gen_expr).all(1)])
        pools["efid"][1].append(real_expr[np.isfinite(real_expr).all(1)])
    return entry, curves
