"""Head speed for the speed layers: a constant or one value per output frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InferError


def read_speed_file(path: Path) -> np.ndarray:
    """Per-frame speeds of a `.npy` or text file (`emo_annotate.pose.read_speed_file`)."""
    from emo_annotate.errors import MediaError
    from emo_annotate.pose import read_speed_file as read

    try:
        return read(path)
    except MediaError as err:
        raise InferError(f"--speed: {err}") from None


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
