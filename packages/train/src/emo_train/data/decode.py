"""Decoding shard members: numpy arrays (never pickles), the face mask, and selected mp4 frames."""

from __future__ import annotations

import io
import json
from typing import Iterable

import av
import numpy as np
from emo_annotate.media import to_rgb
from PIL import Image


class SampleError(Exception):
    """A sample that cannot be used; `reason` is one of `counter.REASONS`."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def member(sample: dict, name: str) -> bytes:
    value = sample.get(name)
    if value is None:
        raise SampleError("missing_member", f"no '{name}' member")
    return value


def decode_json(data: bytes) -> dict:
    try:
        meta = json.loads(data)
        frames, fps = int(meta["frames"]), float(meta["fps"])
    except (ValueError, KeyError, TypeError) as err:
        raise SampleError("bad_json", f"json: {type(err).__name__}: {err}") from None
    if frames < 1 or fps <= 0:
        raise SampleError("bad_json", f"json: frames={frames}, fps={fps}")
    return meta


def decode_npy(data: bytes, name: str) -> np.ndarray:
    """`np.load` without pickles; a numeric array or SampleError('bad_npy')."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:  # ValueError, EOFError, OSError, ... from a garbage header
        raise SampleError("bad_npy", f"{name}: {type(err).__name__}: {err}") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise SampleError("bad_npy", f"{name}: not a numeric array")
    return array


def check_shape(array: np.ndarray, name: str, frames: int, trailing: tuple | None, min_ndim: int = 1) -> None:
    """`array` must be `[frames, *trailing]` (trailing None: any, with at least `min_ndim` dims)."""
    ok = array.ndim >= min_ndim and array.shape[0] == frames
    if trailing is not None:
        ok = ok and tuple(array.shape[1:]) == tuple(trailing)
    if not ok:
        want = f"[{frames}, {', '.join(map(str, trailing))}]" if trailing is not None else f"[{frames}, ...]"
        raise SampleError("bad_shape", f"{name}: shape {list(array.shape)}, expected {want}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise SampleError("bad_shape", f"{name}: non-finite values")


def decode_mask(data: bytes) -> np.ndarray:
    """mask.png -> (H, W) uint8."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            mask = np.asarray(image.convert("L"))
    except Exception as err:
        raise SampleError("bad_mask", f"mask.png: {type(err).__name__}: {err}") from None
    return mask


def decode_frames(data: bytes, indices: Iterable[int]) -> dict[int, np.ndarray]:
    """RGB (H, W, 3) uint8 of the frames `indices` (0-based, in presentation order) of an
    in-memory mp4, converted by the clip's colour tags (BT.709 limited range for annotator
    output; `emo_annotate.media.to_rgb`, which emo-infer uses too). Decoding stops after the last wanted frame; frames not wanted are decoded
    (H.264 needs them) but never converted to RGB."""
    wanted = set(int(i) for i in indices)
    last = max(wanted)
    out: dict[int, np.ndarray] = {}
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise SampleError("bad_mp4", "mp4: no video stream")
            for k, frame in enumerate(container.decode(container.streams.video[0])):
                if k in wanted:
                    out[k] = to_rgb(frame)  # by the clip's colour tags, as the annotator wrote them
                if k >= last:
                    break
    except SampleError:
        raise
    except (av.FFmpegError, ValueError, UnicodeDecodeError, OSError) as err:
        raise SampleError("bad_mp4", f"mp4: {type(err).__name__}: {err}") from None
    if len(out) != len(wanted):
        raise SampleError("bad_mp4", f"mp4: decoded {len(out)} of the {len(wanted)} frames wanted (up to frame {last})")
    shapes = {a.shape for a in out.values()}
    if len(shapes) != 1:
        raise SampleError("bad_mp4", f"mp4: frames of different sizes {sorted(shapes)}")
    return out
