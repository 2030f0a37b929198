"""From a recording to a mouth opening per video frame: the loudness envelope, mapped in dB.

Frame k covers [k / fps, (k + 1) / fps) (as the annotator's mel features do); its loudness is the
RMS under a Hann window of `window_s` centred on that span, in dBFS. The recording's reference
level is the 95th percentile of its non-silent frames; the opening grows linearly in dB from
closed at `range_db` below the reference to 1 at the reference, and is 0 (closed) wherever the
loudness is under `silence_dbfs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..media import AUDIO_RATE


@dataclass(frozen=True)
class LoudnessConfig:
    window_s: float = 0.08
    """Hann window over which each frame's RMS is taken (two frames at 25 fps: a smooth envelope)."""
    range_db: float = 24.0
    """dB below the reference level at which the mouth is closed."""
    silence_dbfs: float = -50.0
    """Frames quieter than this (dB full scale) are silent: mouth closed."""
    reference_percentile: float = 95.0
    """Percentile of the non-silent frames' loudness that opens the mouth fully."""


def frame_count(audio: np.ndarray, fps: float, rate: int = AUDIO_RATE) -> int:
    """Video frames that the recording spans (at least 1)."""
    return max(1, int(round(len(audio) / rate * fps)))


def loudness_db(audio: np.ndarray, frames: int, fps: float, window_s: float, rate: int = AUDIO_RATE) -> np.ndarray:
    """(frames,) dBFS of the Hann-windowed RMS around each frame's centre (silence: -120)."""
    half = max(1, int(round(window_s * rate / 2)))
    window = np.hanning(2 * half + 1)[1:-1]  # (2 half - 1,) no zero ends
    padded = np.pad(np.asarray(audio, np.float64) ** 2, half)
    centres = np.round((np.arange(frames) + 0.5) / fps * rate).astype(int) + half
    starts = np.clip(centres - half + 1, 0, len(padded) - len(window))
    power = np.array([window @ padded[s : s + len(window)] for s in starts]) / window.sum()
    return 10 * np.log10(np.maximum(power, 1e-12))


def mouth_opening(audio: np.ndarray, frames: int, fps: float, cfg: LoudnessConfig = LoudnessConfig()) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Opening in [0, 1] per frame, the loudness (dBFS) it comes from, and the reference level
    (None for a silent recording)."""
    db = loudness_db(audio, frames, fps, cfg.window_s)
    voiced = db >= cfg.silence_dbfs
    if not voiced.any():
        return np.zeros(frames), db, None
    reference = float(np.percentile(db[voiced], cfg.reference_percentile))
    opening = np.clip((db - reference + cfg.range_db) / cfg.range_db, 0.0, 1.0)
    return np.where(voiced, opening, 0.0), db, reference
