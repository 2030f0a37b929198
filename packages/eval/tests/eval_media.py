"""Media helpers of the emo-eval tests (a uniquely named module: every package's tests share one
pytest run): real faces from the wheels, small face crops like generated videos, audio whose
loudness follows a given envelope."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from emo_annotate.media import AUDIO_RATE, iter_frames, to_rgb, write_video
from emo_annotate.samples import carphone_path, package_file

FPS = 25.0


def grace_hopper() -> np.ndarray:
    """matplotlib's real photo of Grace Hopper, RGB."""
    path = package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def carphone_crops(side: int = 96) -> list[np.ndarray]:
    """The real carphone talking head at 25 fps, its centre square scaled to `side` (a face crop
    as small as a CPU-trained model generates)."""
    frames = []
    for _, frame in iter_frames(carphone_path(), FPS):
        rgb = to_rgb(frame)
        h, w = rgb.shape[:2]
        x0 = (w - h) // 2
        frames.append(cv2.resize(rgb[:, x0 : x0 + h], (side, side), interpolation=cv2.INTER_AREA))
    return frames


def audio_following(envelope: np.ndarray, seed: int = 0, floor: float = 0.01) -> np.ndarray:
    """16 kHz noise whose RMS over video frame t is proportional to floor + envelope[t]."""
    per_frame = int(AUDIO_RATE / FPS)
    rng = np.random.default_rng(seed)
    level = floor + np.asarray(envelope, np.float64) / max(float(np.nanmax(envelope)), 1e-9) * 0.2
    return (rng.standard_normal(len(envelope) * per_frame) * np.repeat(level, per_frame)).astype(np.float32)


def write_talking(path: Path, frames: list[np.ndarray], audio: np.ndarray | None) -> Path:
    write_video(path, frames, FPS, audio=audio)
    return path
