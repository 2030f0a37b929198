"""Cutting a video into clips: exactly one face, a continuous face track, no scene cut.

Works on per-frame observations only (face count, box, a tiny grey histogram), so the first
pass over a video keeps no frames.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np

from .config import ClipConfig
from .landmarks import box_iou

NO_FACE = "no face"
SEVERAL_FACES = "several faces"


@dataclass(frozen=True)
class Span:
    start: int  # first frame index
    stop: int  # one past the last frame index

    def __len__(self) -> int:
        return self.stop - self.start


def grey_histogram(rgb: np.ndarray, bins: int = 32) -> np.ndarray:
    """Normalised grey-level histogram of a small copy of the frame (scene-cut detection)."""
    small = cv2.resize(rgb, (64, 36), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    hist = np.bincount((grey // (256 // bins)).ravel(), minlength=bins).astype(np.float32)
    return hist / hist.sum()


def find_clips(
    face_counts: np.ndarray,
    boxes: np.ndarray,
    histograms: np.ndarray,
    fps: float,
    cfg: ClipConfig,
) -> tuple[list[Span], str | None]:
    """Clip spans, and when there are none the main reason why.

    face_counts (T,), boxes (T, 4) (rows of frames without exactly one face are ignored),
    histograms (T, bins).
    """
    n = len(face_counts)
    usable = (face_counts == 1) | _transient(face_counts >= 2, cfg.max_spurious_face_frames)
    # a track breaks where a frame is unusable, at a scene cut, or where the face jumps
    breaks = ~usable.copy()
    for t in range(1, n):
        if not (usable[t] and usable[t - 1]):
            continue
        cut = np.abs(histograms[t] - histograms[t - 1]).sum() > cfg.scene_cut_threshold
        jump = box_iou(boxes[t], boxes[t - 1]) < cfg.min_track_iou
        if cut or jump:
            breaks[t] = True  # frame t starts a new track (it is still usable)

    runs: list[Span] = []
    start = None
    for t in range(n + 1):
        if t == n or not usable[t] or (breaks[t] and start is not None):
            if start is not None:
                runs.append(Span(start, t))
            start = t if (t < n and usable[t]) else None
        elif start is None:
            start = t

    max_frames = max(cfg.min_frames, int(cfg.max_seconds * fps))
    spans = [piece for run in runs if len(run) >= cfg.min_frames for piece in split_span(run, max_frames)]
    if spans:
        return spans, None
    return [], _reason(face_counts, runs, cfg.min_frames)


def _transient(flags: np.ndarray, max_len: int) -> np.ndarray:
    """True on runs of `flags` no longer than max_len frames that have a one-face frame on both
    sides: a face detector's brief false positive, not a second person."""
    out = np.zeros_like(flags)
    t, n = 0, len(flags)
    while t < n:
        if not flags[t]:
            t += 1
            continue
        end = t
        while end < n and flags[end]:
            end += 1
        if end - t <= max_len and t > 0 and end < n:
            out[t:end] = True
        t = end
    return out


def split_span(run: Span, max_frames: int) -> list[Span]:
    """Near-equal pieces of at most max_frames frames."""
    pieces = math.ceil(len(run) / max_frames)
    edges = np.linspace(run.start, run.stop, pieces + 1).round().astype(int)
    return [Span(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _reason(face_counts: np.ndarray, runs: list[Span], min_frames: int) -> str:
    if len(face_counts) == 0:
        return "no frames decoded"
    if len(face_counts) < min_frames:
        return f"too short: {len(face_counts)} frames, a clip needs {min_frames}"
    counts = Counter(np.minimum(face_counts, 2).tolist())
    dominant = SEVERAL_FACES if counts[2] > counts[0] else NO_FACE
    if counts[1] < 0.1 * len(face_counts):  # a stray detection is not a face track
        return dominant
    longest = max((len(r) for r in runs), default=0)
    return f"no single-face track of {min_frames} frames (longest {longest}; other frames mostly: {dominant})"
