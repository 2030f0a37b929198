"""What the one-pass annotator keeps of a frame while the frame may still go into a clip.

A clip's crop is fixed over the clip and known only when the clip ends, so its frames' pixels must
wait. Each frame keeps a `Window`: the rectangle of the coded (decoded, not yet upright) picture
around its face, of side `face side / min_frame_face_fraction` in display pixels, copied from the
decoder's Y, U, V planes. The segmenter only keeps clips whose smallest face is at least that
fraction of the crop (`ClipConfig.min_frame_face_fraction`); a crop contains every face box of its
clip, so it lies within a crop side of each face centre, hence inside every frame's window
(`holds` checks it before cutting).

A window is stored at the source's resolution, or smaller where that is far more than any crop
around that face can use: the smallest crop is `crop_scale` face sides, resized to `size` pixels,
so a window keeps `size / (crop_scale * face side)` of the source's pixels when that is under 3/4
(a 4K close-up). Otherwise the kept pixels are the decoded ones, and the clip is cut from them
exactly as from the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .crop import coded_rect, crop_rect_yuv420
from .media import Colour, Picture

MARGIN_PX = 8  # display pixels around the window: even-pixel rounding of crops and coded rectangles
DOWNSCALE_BELOW = 0.75  # keep full resolution unless it is this much more than any crop needs


@dataclass(frozen=True)
class Window:
    planes: tuple[np.ndarray, np.ndarray, np.ndarray]  # Y (h, w), U, V (h/2, w/2), in `colour`
    rect: np.ndarray  # (x0, y0, w, h) the coded luma pixels it covers (even, inside the frame)
    scale: float  # stored pixels per coded pixel (1: the decoded pixels themselves)
    colour: Colour

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.planes)


def face_window(planes, colour: Colour, picture: Picture, box: np.ndarray, min_face_fraction: float, size: int,
                crop_scale: float) -> Window:
    """Keep the part of a decoded frame (its coded Y, U, V `planes`) that any clip crop around
    the face `box` (display pixels) can need."""
    side = max(float(box[2] - box[0]), float(box[3] - box[1]), 2.0)
    half = side / min_face_fraction + MARGIN_PX
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    coded_w, coded_h = planes[0].shape[1], planes[0].shape[0]
    x0, y0, w, h = coded_rect(np.array([cx - half, cy - half, 2 * half]), picture.rotation, picture.sample_aspect, (coded_w, coded_h))
    x1, y1 = min(x0 + w, coded_w // 2 * 2), min(y0 + h, coded_h // 2 * 2)
    x0, y0 = max(x0, 0.0), max(y0, 0.0)
    rect = np.array([x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0)])
    sar = float(picture.sample_aspect)
    scale = size * max(sar, 1.0) / (crop_scale * side)
    scale = 1.0 if scale >= DOWNSCALE_BELOW else scale
    ix0, iy0, iw, ih = (int(v) for v in rect)
    kept = []
    for plane, sub in zip(planes, (1, 2, 2)):
        part = plane[iy0 // sub : (iy0 + ih) // sub, ix0 // sub : (ix0 + iw) // sub]
        if scale < 1.0 and part.size:
            # even luma sides keep chroma exactly half
            sw, sh = max(2, int(round(iw * scale / 2)) * 2) // sub, max(2, int(round(ih * scale / 2)) * 2) // sub
            part = cv2.resize(part, (sw, sh), interpolation=cv2.INTER_AREA)
        kept.append(np.array(part, copy=True))
    if scale < 1.0:
        scale = kept[0].shape[1] / max(iw, 1)  # the scale the rounding gave
    return Window(tuple(kept), rect, scale, colour)


def holds(window: Window | None, crop_rect: np.ndarray, coded_size: tuple[int, int]) -> bool:
    """Whether the window has every pixel of the coded rectangle `crop_rect` that lies inside the frame."""
    if window is None:
        return False
    x0, y0, w, h = crop_rect
    cx0, cy0 = max(x0, 0.0), max(y0, 0.0)
    cx1, cy1 = min(x0 + w, coded_size[0] // 2 * 2), min(y0 + h, coded_size[1] // 2 * 2)
    if cx1 <= cx0 or cy1 <= cy0:
        return True  # nothing of the frame in it
    wx0, wy0, ww, wh = window.rect
    return wx0 <= cx0 and wy0 <= cy0 and cx1 <= wx0 + ww and cy1 <= wy0 + wh


def cut(window: Window, crop_rect: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The coded rectangle `crop_rect` (x0, y0, w, h) as size x size Y, U, V planes in the window's
    colour, black outside the frame (what `crop.crop_rect_yuv420` gives on the whole frame)."""
    x0, y0, w, h = crop_rect
    local = np.array([x0 - window.rect[0], y0 - window.rect[1], w, h], np.float64) * window.scale
    if window.scale != 1.0:  # keep luma even so chroma takes exactly half
        local = 2.0 * np.round(local / 2)
    return crop_rect_yuv420(window.planes, local, size, black_luma=0 if window.colour.full_range else 16)


def crop_rect(crop: np.ndarray, picture: Picture, coded_size: tuple[int, int]) -> np.ndarray:
    """A clip's display-pixel crop (x0, y0, side) as a coded rectangle."""
    return coded_rect(crop, picture.rotation, picture.sample_aspect, coded_size)
