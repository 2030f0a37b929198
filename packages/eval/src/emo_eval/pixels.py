"""Pixel metrics: PSNR / SSIM of generated against real frames, the mouth landmark distance, and
frame-to-frame change for the seam flicker."""

from __future__ import annotations

import cv2
import numpy as np

SSIM_SETTINGS = "skimage.metrics.structural_similarity on RGB (channel_axis=2, data_range=255, 7x7 uniform window)"


def same_size(generated: np.ndarray, real: np.ndarray) -> np.ndarray:
    """The generated frame at the real frame's size (area filter down, cubic up)."""
    h, w = real.shape[:2]
    if generated.shape[:2] == (h, w):
        return generated
    interp = cv2.INTER_AREA if generated.shape[0] > h else cv2.INTER_CUBIC
    return cv2.resize(generated, (w, h), interpolation=interp)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """dB between two uint8 images of one size (100 for identical images)."""
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 100.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def landmark_distance(a: np.ndarray, b: np.ndarray, points: np.ndarray, scale: float) -> float:
    """Mean 2D distance of landmark subset `points` of a and b (468, 3), times `scale`."""
    return float(np.linalg.norm(a[points, :2] - b[points, :2], axis=1).mean() * scale)


def frame_change(previous: np.ndarray, current: np.ndarray, side: int = 128) -> float:
    """Mean absolute grey-level change (0..255) between consecutive frames, on frames scaled to
    `side` (so the figure does not depend on resolution)."""
    def grey(rgb: np.ndarray) -> np.ndarray:
        return cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)

    return float(np.abs(grey(current) - grey(previous)).mean())


def seam_flicker(changes: np.ndarray, clip_frames: int) -> dict[str, float | None]:
    """Frame change (T-1,) at clip seams (into frame k * clip_frames) against inside clips.

    seam_flicker = mean change at seams / mean change inside clips: about 1 for seamless clips,
    above 1 when each new clip jumps. None with fewer than two clips.
    """
    into = np.arange(1, len(changes) + 1)  # changes[i] is the change into frame i + 1
    seams = into % clip_frames == 0
    if not seams.any() or seams.all():
        return {"seam_change": None, "inside_change": None, "seam_flicker": None}
    seam, inside = float(changes[seams].mean()), float(changes[~seams].mean())
    return {"seam_change": seam, "inside_change": inside, "seam_flicker": seam / inside if inside > 0 else None}
