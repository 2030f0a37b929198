"""Head speed for the speed layers: a constant or one value per output frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InferError


def parse_speed(value: str | None) -> float | Path | None:
    """The CLI's `--speed`: a number (degrees/second) or a file path."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return Path(value)


def read_speed_file(path: Path) -> np.ndarray:
    """Per-frame speeds from `.npy` (1-D) or text (numbers separated by spaces, commas, newlines)."""
    if not path.is_file():
        raise InferError(f"--speed: no such file: {path}")
    try:
        if path.suffix == ".npy":
            values = np.load(path, allow_pickle=False)
        else:
            values = np.array([float(v) for v in path.read_text().replace(",", " ").split()])
    except (ValueError, OSError) as err:
        raise InferError(f"--speed: cannot read {path}: {err}") from None
    values = np.asarray(values, np.float32)
    if values.ndim != 1 or values.size == 0:
        raise InferError(f"--speed: {path} must hold a non-empty list of numbers, got shape {list(values.shape)}")
    if not np.isfinite(values).all() or (values < 0).any():
        raise InferError(f"--speed: {path} holds negative or non-finite speeds")
    return values


def speed_track(speed: float | Path | None, num_frames: int) -> np.ndarray | None:
    """`(num_frames,)` float32 degrees/second, or None (no speed conditioning).

    A file needs at least `num_frames` values (extra values are ignored): one per output frame.
    """
    if speed is None:
        return None
    if isinstance(speed, Path):
        values = read_speed_file(speed)
        if values.size < num_frames:
            raise InferError(f"--speed: {speed} has {values.size} values, the audio needs one per frame: {num_frames}")
        return values[:num_frames]
    return np.full(num_frames, speed, np.float32)
