"""The mouth rig: opens the jaw of a still face with a vertical warp and paints the mouth cavity.

Model, in the identity's frame pixels before any head rotation: the face tears along the lip
line (midway between MediaPipe's upper and lower inner-lip contours); what lies below moves down
by `opening * jaw_drop * weight(x, y)`. The weight is 1 at the centre of the lower lip and on
the chin, tapers to 0 at the mouth corners (an elliptical opening) and along the jaw toward the
ears, and fades out down the neck: a thin-plate spline through landmark values. Beside the mouth
corners the tear closes into a smooth stretch of the cheek. The gap that opens between the lips
shows a dark cavity with a band of upper teeth, so a face tracker sees an open mouth.

Everything is precomputed at `levels` openings (backward row maps for `cv2.remap`, cavity colour
and coverage) inside the lower-face box; a frame costs one small remap and one blend.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.interpolate import RBFInterpolator

from .identities import Identity

# MediaPipe face-mesh indices, corner to corner (78 / 61 on the image left)
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
LOWER_OUTER_LIP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
CHIN_MIDLINE = (18, 200, 199, 175)  # between the lower lip and the chin tip
# face-oval points along the jaw, ear to chin to ear, with the share of the chin's drop they take
JAW_SHARE = {234: 0.0, 93: 0.03, 132: 0.15, 58: 0.35, 172: 0.55, 136: 0.72, 150: 0.85, 149: 0.93, 176: 0.98,
             148: 1.0, 152: 1.0, 377: 1.0, 400: 0.98, 378: 0.93, 379: 0.85, 365: 0.72, 397: 0.55, 288: 0.35,
             361: 0.15, 323: 0.03, 454: 0.0}
NECK_FADE = 0.35  # face heights below the jaw where the warp has faded out
TEETH = np.array([222, 216, 200], np.float32)
CAVITY_EDGE = np.array([78, 28, 30], np.float32)
CAVITY_CORE = np.array([24, 6, 8], np.float32)


class MouthRig:
    """`apply(head, opening)` writes the face with its mouth opened by `opening` in [0, 1] into
    `head` (a copy of the identity's image that the rig owns the lower-face box of)."""

    def __init__(self, identity: Identity, max_gap: float = 0.12, levels: int = 65):
        self.base = identity.image
        self.levels = levels
        face_height = identity.face_height
        self.jaw_drop = max_gap * face_height  # pixels between the lips at the widest, opening 1
        lm = identity.landmarks[:, :2]
        line = (lm[list(UPPER_INNER_LIP)] + lm[list(LOWER_INNER_LIP)]) / 2  # (11, 2) the lip line
        line = line[np.argsort(line[:, 0])]
        weight = _jaw_weight(lm, face_height)

        size = identity.size
        jaw = lm[list(JAW_SHARE)]
        x0 = int(max(0, np.floor(jaw[:, 0].min()) - 2))
        x1 = int(min(size, np.ceil(jaw[:, 0].max()) + 3))
        y0 = int(max(0, np.floor(line[:, 1].min()) - 2))
        y1 = int(min(size, np.ceil(jaw[:, 1].max() + NECK_FADE * face_height) + 3))
        self.box = (x0, y0, x1, y1)
        xs = np.arange(x0, x1, dtype=np.float64)
        ys = np.arange(y0, y1, dtype=np.float64)

        # where the face tears: sharp between the mouth corners, a widening ramp beside them
        lip_y = np.interp(xs, line[:, 0], line[:, 1])  # (w,)
        beside = np.maximum(0.0, np.maximum(line[0, 0] - xs, xs - line[-1, 0]))
        ramp = np.clip((ys[:, None] - lip_y[None]) / (1.0 + 0.9 * beside[None]), 0.0, 1.0)
        below = ramp * ramp * (3 - 2 * ramp)  # (h, w) 0 above the lip line, 1 under it
        grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
        share = np.clip(weight(grid).reshape(len(ys), len(xs)), 0.0, 1.0) * below  # (h, w)
        in_mouth = (xs > line[0, 0]) & (xs < line[-1, 0])
        lip_share = np.where(in_mouth, np.clip(weight(np.column_stack([xs, lip_y + 1.0])), 0.0, 1.0), 0.0)  # (w,)
        half = (line[-1, 0] - line[0, 0]) / 2
        across = np.clip(np.abs(xs - (line[0, 0] + half)) / max(half, 1.0), 0.0, 1.0)  # 0 centre, 1 corners

        h, w = len(ys), len(xs)
        self.map_x = np.broadcast_to(xs.astype(np.float32)[None], (h, w)).copy()
        self.map_y = np.empty((levels, h, w), np.float32)
        self.alpha = np.zeros((levels, h, w), np.float32)
        self.colour = np.zeros((levels, h, w, 3), np.uint8)
        for k, opening in enumerate(np.linspace(0.0, 1.0, levels)):
            drop = opening * self.jaw_drop
            forward = ys[:, None] + drop * share  # (h, w) where each source row lands, monotone per column
            for j in range(w):
                self.map_y[k, :, j] = np.interp(ys, forward[:, j], ys)
            if drop > 0:
                self.alpha[k], self.colour[k] = _cavity(ys, lip_y, drop * lip_share, across, face_height)

    def apply(self, head: np.ndarray, opening: float) -> float:
        """Open the mouth in `head` (h, w, 3) uint8 in place; returns the opening drawn (the
        nearest precomputed level)."""
        k = int(round(float(np.clip(opening, 0.0, 1.0)) * (self.levels - 1)))
        x0, y0, x1, y1 = self.box
        roi = cv2.remap(self.base, self.map_x, self.map_y[k], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if k:
            roi = cv2.blendLinear(roi, self.colour[k], 1.0 - self.alpha[k], self.alpha[k])
        head[y0:y1, x0:x1] = roi
        return k / (self.levels - 1)

    def gap_px(self, opening: float) -> float:
        """Pixels between the lips at the mouth's centre for an opening (before head rotation)."""
        return float(np.clip(opening, 0.0, 1.0)) * self.jaw_drop


def _jaw_weight(lm: np.ndarray, face_height: float) -> RBFInterpolator:
    """Share of the chin's drop at any (x, y): thin-plate spline through landmark values."""
    points, values = [], []
    for contour in (LOWER_INNER_LIP, LOWER_OUTER_LIP):
        pts = lm[list(contour)]
        centre, half = (pts[0, 0] + pts[-1, 0]) / 2, abs(pts[-1, 0] - pts[0, 0]) / 2
        u = np.clip((pts[:, 0] - centre) / max(half, 1.0), -1.0, 1.0)
        points.append(pts)
        values.append(np.sqrt(1.0 - u * u))  # elliptical opening, closed at the corners
    points.append(lm[list(CHIN_MIDLINE)])
    values.append(np.ones(len(CHIN_MIDLINE)))
    jaw = lm[list(JAW_SHARE)]
    share = np.array(list(JAW_SHARE.values()))
    points.append(jaw)
    values.append(share)
    neck = jaw[share > 0] + np.array([0.0, NECK_FADE * face_height])  # the drop has faded out here
    points.append(neck)
    values.append(np.zeros(len(neck)))
    return RBFInterpolator(np.concatenate(points), np.concatenate(values), kernel="thin_plate_spline", smoothing=1e-3)


def _cavity(ys, top, gap, across, face_height) -> tuple[np.ndarray, np.ndarray]:
    """Coverage (h, w) float32 and colour (h, w, 3) uint8 of the open mouth: rows `top` to
    `top + gap` per column, anti-aliased; a dark cavity, darkest mid-depth, and the upper teeth
    along the top of its middle part."""
    y = ys[:, None]
    bottom = top + gap
    alpha = np.clip(np.minimum(y + 0.5, bottom[None]) - np.maximum(y - 0.5, top[None]), 0.0, 1.0)
    depth = np.clip((y - top[None]) / np.maximum(gap[None], 1e-6), 0.0, 1.0)  # 0 top .. 1 bottom
    colour = CAVITY_EDGE + (CAVITY_CORE - CAVITY_EDGE) * np.sin(np.pi * depth)[..., None]
    teeth_h = np.minimum(0.3 * gap, 0.03 * face_height) * np.clip((0.7 - across) / 0.3, 0.0, 1.0)  # (w,)
    teeth = np.clip(teeth_h[None] - (y - top[None]), 0.0, 1.0)  # coverage within the row
    shade = 1.0 - 0.35 * across[None, :, None]  # teeth further from the centre lie in shadow
    colour = colour + (TEETH * shade - colour) * teeth[..., None]
    return alpha.astype(np.float32), np.clip(colour, 0, 255).astype(np.uint8)
