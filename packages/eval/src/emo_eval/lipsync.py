"""Weight-free lip sync: mouth opening from MediaPipe landmarks against the audio's loudness.

- mouth opening: distance between the inner lips (points 13, 14) over the outer eye-corner
  distance (points 33, 263), per frame; NaN where no face was found. Scale-free, so it compares
  across resolutions and head distances. A closed mouth is about 0-0.05, speech about 0.1-0.4.
- audio envelope: RMS of the 16 kHz audio over each frame's time span [t/fps, (t+1)/fps).
- landmark sync: the Pearson correlation of the two series at each offset within +-max_offset
  frames; the best offset and the correlation there. Offset k > 0: the mouth follows the audio k
  frames late (mouth[t] goes with envelope[t - k]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .faces import EYE_OUTER, LOWER_LIP_INNER, UPPER_LIP_INNER

MIN_OVERLAP = 8  # frames both series need in common for a correlation
SILENCE_RMS = 1e-3  # below -60 dBFS a frame is silent whatever the recording
SILENCE_RELATIVE = 0.05  # ... and below 5% of the recording's loud (95th percentile) RMS


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """(T,) inner-lip gap / outer eye-corner distance of landmarks (T, 468, >=2); NaN rows stay NaN."""
    pts = landmarks[..., :2].astype(np.float64)
    gap = np.linalg.norm(pts[:, UPPER_LIP_INNER] - pts[:, LOWER_LIP_INNER], axis=-1)
    eyes = np.linalg.norm(pts[:, EYE_OUTER[0]] - pts[:, EYE_OUTER[1]], axis=-1)
    return (gap / np.where(eyes > 0, eyes, np.nan)).astype(np.float32)


def audio_envelope(audio: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """(num_frames,) RMS of mono `audio` over each video frame's span (zeros past its end)."""
    bounds = np.round(np.arange(num_frames + 1) * sample_rate / fps).astype(np.int64)
    squared = np.concatenate([[0.0], np.cumsum(np.asarray(audio, np.float64) ** 2)])
    lo, hi = np.minimum(bounds[:-1], len(audio)), np.minimum(bounds[1:], len(audio))
    count = np.maximum(bounds[1:] - bounds[:-1], 1)
    return np.sqrt((squared[hi] - squared[lo]) / count).astype(np.float32)


def silent_frames(envelope: np.ndarray) -> np.ndarray:
    """(T,) bool: frames quieter than -60 dBFS or 5% of the recording's loud level."""
    loud = float(np.percentile(envelope, 95)) if envelope.size else 0.0
    return envelope < max(SILENCE_RMS, SILENCE_RELATIVE * loud)


def correlation_by_offset(opening: np.ndarray, envelope: np.ndarray, max_offset: int) -> np.ndarray:
    """(2 * max_offset + 1,) Pearson correlation of opening[t] with envelope[t - k] for k =
    -max_offset..max_offset; NaN where fewer than MIN_OVERLAP frames overlap or a side is flat."""
    n = min(len(opening), len(envelope))
    opening, envelope = np.asarray(opening[:n], np.float64), np.asarray(envelope[:n], np.float64)
    out = np.full(2 * max_offset + 1, np.nan)
    for i, k in enumerate(range(-max_offset, max_offset + 1)):
        a = opening[max(k, 0) : n + min(k, 0)]
        b = envelope[max(-k, 0) : n - max(k, 0)]
        valid = np.isfinite(a) & np.isfinite(b)
        if valid.sum() < MIN_OVERLAP:
            continue
        a, b = a[valid], b[valid]
        if a.std() < 1e-9 or b.std() < 1e-9:
            continue
        out[i] = np.corrcoef(a, b)[0, 1]
    return out


@dataclass(frozen=True)
class LandmarkSync:
    offset: int | None  # best offset in frames (mouth late > 0), None when no correlation exists
    correlation: float | None  # Pearson correlation at that offset (-1..1)
    correlation_at_zero: float | None  # ... at offset 0 (what a listener sees)
    curve: np.ndarray  # (2 * max_offset + 1,) correlation by offset


def landmark_sync(opening: np.ndarray, envelope: np.ndarray, max_offset: int = 15) -> LandmarkSync:
    """Best offset within +-max_offset frames and the correlation there (see the module doc)."""
    curve = correlation_by_offset(opening, envelope, max_offset)
    zero = curve[max_offset]
    if np.isnan(curve).all():
        return LandmarkSync(None, None, None, curve)
    best = int(np.nanargmax(curve))
    return LandmarkSync(best - max_offset, float(curve[best]), None if np.isnan(zero) else float(zero), curve)


def mouth_summary(opening: np.ndarray, envelope: np.ndarray) -> dict[str, float | None]:
    """Mean mouth opening over face frames, over voiced and over silent frames (None: no such frames)."""
    n = min(len(opening), len(envelope))
    silent = silent_frames(envelope[:n])

    def mean(values: np.ndarray) -> float | None:
        values = values[np.isfinite(values)]
        return float(values.mean()) if values.size else None

    return {
        "mouth_open_mean": mean(opening),
        "mouth_open_voiced": mean(opening[:n][~silent]),
        "mouth_open_silent": mean(opening[:n][silent]),
        "silent_fraction": float(silent.mean()) if n else None,
    }
