"""The face-centred square crop and the face mask, shared by the annotator and inference.

A crop is `(x0, y0, side)` in source pixels: fixed over a clip, centred on the union of the
clip's face boxes, `crop_scale` times the largest face side, slid inside the frame where the
frame is large enough and padded with black where it is not.
"""

from __future__ import annotations

import cv2
import numpy as np


def face_sides(boxes: np.ndarray) -> np.ndarray:
    """(T,) larger side of each (x0, y0, x1, y1) box."""
    return np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def crop_box(boxes: np.ndarray, width: int, height: int, crop_scale: float) -> np.ndarray:
    """Square `(x0, y0, side)` in source pixels around the face boxes `(T, 4)` of a clip (T = 1
    for a photo); x0, y0 and side are even, so chroma planes crop exactly half of it."""
    union = np.array([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()])
    face_side = face_sides(boxes).max()
    side = max(crop_scale * face_side, 1.1 * (union[2:] - union[:2]).max())
    side = 2.0 * np.ceil(side / 2)
    cx, cy = (union[0] + union[2]) / 2, (union[1] + union[3]) / 2
    x0, y0 = cx - side / 2, cy - side / 2
    width, height = width // 2 * 2, height // 2 * 2
    if side <= width:
        x0 = min(max(x0, 0.0), width - side)
    if side <= height:
        y0 = min(max(y0, 0.0), height - side)
    return np.array([2 * np.floor(x0 / 2), 2 * np.floor(y0 / 2), side], np.float64)


def crop_square(image: np.ndarray, crop: np.ndarray, size: int, fill: int = 0) -> np.ndarray:
    """The square `crop` = (x0, y0, side) of an (h, w) or (h, w, c) image, `fill` outside the
    image, resized to size x size (area filter when shrinking, cubic when enlarging)."""
    x0, y0, side = crop
    return _crop_resize(image, np.array([x0, y0, side, side], np.float64), size, fill)


def coded_rect(crop: np.ndarray, rotation: int, sample_aspect, coded_size: tuple[int, int]) -> np.ndarray:
    """The square display-pixel `crop` (x0, y0, side) of an upright, square-pixel picture as the
    rectangle (x0, y0, w, h) of the coded frame it comes from (luma pixels, all even, so chroma
    takes exactly half): undo the quarter turn `rotation` (counter-clockwise, as in `np.rot90`)
    and the pixel aspect `sample_aspect` (coded pixel width / height)."""
    x0, y0, side = (float(v) for v in crop)
    sar = float(sample_aspect)
    wu, hu = coded_size[0] * sar, coded_size[1]  # square-pixel size before the turn
    k = (rotation // 90) % 4
    # the display square's top-left corner in the unrotated picture; rot90 maps (xu, yu) as
    # k=1: (wu - yd, xd), k=2: (wu - xd, hu - yd), k=3: (yd, hu - xd)
    ux0, uy0 = [(x0, y0), (wu - y0 - side, x0), (wu - x0 - side, hu - y0 - side), (y0, hu - x0 - side)][k]
    even = lambda v: 2.0 * np.floor(v / 2)  # noqa: E731
    width = max(2.0, 2.0 * round(side / sar / 2))
    return np.array([even(ux0 / sar), even(uy0), width, even(side) or 2.0], np.float64)


def crop_rect_yuv420(planes, rect: np.ndarray, size: int, black_luma: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rectangle `rect` = (x0, y0, w, h) (even, luma pixels) of Y, U, V planes, black outside
    the frame, resized to size x size luma (area filter when shrinking, cubic when enlarging)."""
    return tuple(
        _crop_resize(plane, rect / scale, size // scale, fill)
        for plane, scale, fill in zip(planes, (1, 2, 2), (black_luma, 128, 128))
    )


def _crop_resize(image: np.ndarray, rect: np.ndarray, size: int, fill: int) -> np.ndarray:
    x0, y0, w, h = (int(round(v)) for v in rect)
    ih, iw = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + w, iw), min(y0 + h, ih)
    patch = image[sy0:sy1, sx0:sx1]
    if patch.shape[:2] != (h, w):
        canvas = np.full((h, w, *image.shape[2:]), fill, image.dtype)
        if sx1 > sx0 and sy1 > sy0:
            canvas[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = patch
        patch = canvas
    interp = cv2.INTER_AREA if w * h > size * size else cv2.INTER_CUBIC
    return cv2.resize(patch, (size, size), interpolation=interp)


def to_crop_pixels(boxes: np.ndarray, crop: np.ndarray, size: int) -> np.ndarray:
    """Boxes `(T, 4)` from source pixels into the size x size crop's pixels, clipped to it."""
    x0, y0, side = crop
    boxes = (boxes - np.array([x0, y0, x0, y0])) * (size / side)
    return np.clip(boxes, 0, size).astype(np.float32)


def union_mask(boxes: np.ndarray, size: int) -> np.ndarray:
    """uint8 (size, size): 255 inside any of the face boxes `(T, 4)` (crop pixels)."""
    mask = np.zeros((size, size), np.uint8)
    for x0, y0, x1, y1 in boxes:
        mask[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = 255
    return mask
