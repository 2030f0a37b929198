"""What the real annotator measures on a rendering, against the rendering's ground truth.

`annotate_rendering` runs the annotator in-process (no Ray) on one video and keeps its per-frame
pose, speed and landmarks; `agreement` compares them with the JSON frame by frame: the mouth
opening MediaPipe sees (inner-lip gap 13-14 over the face height 10-152), the angles (after the
median offset: the photo's own pose is fit once on the still photo) and the speed per segment
away from the speed ramps.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import AnnotateConfig
from ..pipeline import Annotator


@dataclass(frozen=True)
class Measured:
    frames: np.ndarray  # (n,) indices of the annotated frames (clips may skip some)
    pose: np.ndarray  # (n, 6) yaw, pitch, roll, translation
    speed: np.ndarray  # (n,) deg/s
    landmarks: np.ndarray  # (n, 468, 3) crop pixels


def annotate_rendering(path: Path, size: int = 256, annotator: Annotator | None = None) -> Measured:
    """Annotate `path` with the real annotator (MediaPipe, clips of `size` px)."""
    own = annotator is None
    annotator = annotator or Annotator(AnnotateConfig(size=size))
    clips: list[dict] = []
    try:
        outcome = annotator.annotate(Path(path), "synth", Path(path).name, clips.append)
    finally:
        if own:
            annotator.close()
    if not clips:
        raise ValueError(f"the annotator kept no clip of {path} ({outcome.reason})")

    def stacked(member: str) -> np.ndarray:
        return np.concatenate([np.load(io.BytesIO(c[member]), allow_pickle=False) for c in clips]).astype(np.float64)

    frames = np.concatenate([np.arange(*json.loads(c["json"])["source_frames"]) for c in clips])
    return Measured(frames, stacked("pose.npy"), stacked("speed.npy"), stacked("lmk.npy"))


def mouth_seen(landmarks: np.ndarray) -> np.ndarray:
    """(n,) inner-lip gap over face height from MediaPipe landmarks (n, 468, 3)."""
    lips = np.linalg.norm(landmarks[:, 13, :2] - landmarks[:, 14, :2], axis=1)
    return lips / np.linalg.norm(landmarks[:, 10, :2] - landmarks[:, 152, :2], axis=1)


def agreement(truth: dict, measured: Measured, ramp_margin_s: float = 0.3) -> dict:
    """Figures (see the module docstring): `mouth_r`, per angle `offset` / `rms` / `p95` / `max`
    (degrees), and per speed level the measured and true mean speed (deg/s)."""
    per_frame, frames = truth["per_frame"], measured.frames
    figures = {
        "frames_annotated": int(len(frames)),
        "frames": int(truth["frames"]),
        "mouth_r": float(np.corrcoef(mouth_seen(measured.landmarks), np.asarray(per_frame["opening"])[frames])[0, 1]),
    }
    for axis, name in enumerate(("yaw", "pitch", "roll")):
        error = measured.pose[:, axis] - np.asarray(per_frame[name])[frames]
        offset = float(np.median(error))
        centred = np.abs(error - offset)
        figures[name] = {"offset": offset, "rms": float(np.sqrt(np.mean(centred**2))),
                         "p95": float(np.percentile(centred, 95)), "max": float(centred.max())}
    segment = np.asarray(per_frame["segment"])[frames]
    times = frames / truth["fps"]
    true_speed = np.asarray(per_frame["speed"])[frames]
    levels: dict[str, list] = {}
    for i, seg in enumerate(truth["speed_profile"]["segments"]):
        inner = (segment == i) & (times > seg["start"] + ramp_margin_s) & (times < seg["end"] - ramp_margin_s)
        if inner.sum() >= 3:
            levels.setdefault(seg["label"], []).append((measured.speed[inner], true_speed[inner]))
    figures["speed"] = {label: {"measured": float(np.concatenate([m for m, _ in parts]).mean()),
                                "true": float(np.concatenate([t for _, t in parts]).mean())}
                        for label, parts in levels.items()}
    return figures
