"""The head rig: turns the head of a still photo by a smooth dense warp driven by 3D landmarks.

The photo's MediaPipe landmarks (x, y, z in frame pixels) are rotated in 3D by the applied head
rotation, about the head's centre (between the ears, at their depth) for yaw and pitch and about
the neck for roll, and projected orthographically; a ring of points around the face (hair, ears,
the head's outline, at the depth of the head's centre, so that yaw leaves the outline where it
is) rotates with them; points further out and along the frame border stay still (background,
shoulders). A smoothing thin-plate spline through these displacements gives the forward
displacement on a coarse grid (one precomputed linear operator: a matrix product per frame), a
fixed-point iteration inverts it there, and it is upsampled into the backward map of one
`cv2.remap`.

The landmarks move exactly as a rigid 3D head would (near parallax: the nose shifts more than
the cheeks under yaw), so a landmark tracker on the warped frames sees the applied rotation
composed with the photo's own pose.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from ..pose import MEDIAPIPE_RIGID
from .identities import Identity

FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
FACE_POINTS = 96  # landmarks (spread out by farthest-point sampling) that steer the warp
HEAD_RING = 1.35  # face-oval scale (about the face centre) of the ring of hair and ears
STILL_RING = 2.3  # scale of the ring beyond which nothing moves
NECK_BELOW_CHIN = 0.3  # face heights: the roll pivot
FLIP = np.diag([1.0, -1.0, -1.0])  # camera frame (y up, z toward) <-> image frame (y down, z away)


def applied_rotation(yaw, pitch, roll) -> Rotation:
    """The rotation(s) (camera frame) whose annotator angles (`emo_annotate.pose`) are these
    (degrees; scalars, or arrays for a sequence)."""
    return Rotation.from_euler("YXZ", np.stack([yaw, np.negative(pitch), roll], -1), degrees=True)


class HeadRig:
    def __init__(self, identity: Identity, grid_step: int = 8):
        size = identity.size
        lm = identity.landmarks
        oval = lm[list(FACE_OVAL)]
        centre_xy = (oval[:, :2].min(0) + oval[:, :2].max(0)) / 2
        depth = lm[[234, 454], 2].mean()  # the face's outline at the ears: the head's centre depth
        self.head_centre = np.array([centre_xy[0], lm[[234, 454], 1].mean(), depth])
        self.neck = np.array([centre_xy[0], lm[152, 1] + NECK_BELOW_CHIN * identity.face_height, depth])

        chosen = _farthest_points(lm[:, :2], FACE_POINTS, start=4)
        chosen = np.union1d(chosen, np.array(MEDIAPIPE_RIGID + FACE_OVAL))
        ring = np.column_stack([centre_xy + HEAD_RING * (oval[:, :2] - centre_xy), np.full(len(oval), depth)])
        self.moving = np.concatenate([lm[chosen], ring])  # (n, 3) image frame
        still = [centre_xy + STILL_RING * (oval[:, :2] - centre_xy)]
        edge = np.linspace(0, size - 1, 9)
        still.append(np.array([(x, y) for x in edge for y in edge if x in (0, size - 1) or y in (0, size - 1)]))
        still = np.concatenate(still)

        self.size, self.step = size, grid_step
        cells = size // grid_step
        centres = (np.arange(cells) + 0.5) * grid_step - 0.5  # cv2.resize maps cell i to this pixel
        gx, gy = np.meshgrid(centres, centres)
        self.grid = np.stack([gx, gy], -1).astype(np.float32)  # (c, c, 2) pixels
        operator = _tps_operator(np.concatenate([self.moving[:, :2], still]), self.grid.reshape(-1, 2), size)
        self.operator = operator[:, : len(self.moving)].astype(np.float32)  # still points add nothing
        ident = np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1)
        self.identity_map = ident.astype(np.float32)  # (S, S, 2)

    def landmarks_after(self, rotation: Rotation, roll: float, points: np.ndarray | None = None) -> np.ndarray:
        """Image-frame positions `(n, 3)` of `points` (default: the warp's moving points) after
        the head turns by `rotation` (camera frame, its roll angle `roll` in degrees)."""
        pts = self.moving if points is None else points
        turn = FLIP @ rotation.as_matrix() @ FLIP
        swing = FLIP @ Rotation.from_euler("Z", roll, degrees=True).as_matrix() @ FLIP
        # rotate about the head's centre, then swing that centre about the neck by the roll
        centre = self.neck + swing @ (self.head_centre - self.neck)
        return (pts - self.head_centre) @ turn.T + centre

    def backward_map(self, rotation: Rotation, roll: float, iterations: int = 8) -> np.ndarray:
        """(S, S, 2) float32 for `cv2.remap`: where each output pixel comes from in the unturned
        frame."""
        shift = (self.landmarks_after(rotation, roll) - self.moving)[:, :2].astype(np.float32)  # (n, 2)
        cells = self.grid.shape[0]
        forward = (self.operator @ shift).reshape(cells, cells, 2)  # displacement at grid sources
        back = -forward
        for _ in range(iterations):  # back(x) = -forward(x + back(x)), sampled bilinearly on the grid
            at = (self.grid + back + 0.5) / self.step - 0.5
            back = -cv2.remap(forward, at, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return self.identity_map + cv2.resize(back, (self.size, self.size), interpolation=cv2.INTER_LINEAR)


def _farthest_points(points: np.ndarray, count: int, start: int) -> np.ndarray:
    """Indices of `count` points spread over `points` (n, 2), greedily farthest from those chosen."""
    chosen = [start]
    dist = np.linalg.norm(points - points[start], axis=1)
    for _ in range(count - 1):
        chosen.append(int(dist.argmax()))
        dist = np.minimum(dist, np.linalg.norm(points - points[chosen[-1]], axis=1))
    return np.array(chosen)


def _tps_operator(controls: np.ndarray, targets: np.ndarray, scale: float, smoothing: float = 3e-3) -> np.ndarray:
    """(m, n) matrix mapping values at `controls` (n, 2) to a smoothing thin-plate spline's values
    at `targets` (m, 2). Smoothing (in units of the frame side) keeps the warp from folding where
    the face's depth changes steeply (its outline) and costs under a degree of measured rotation."""
    c, t = controls / scale, targets / scale  # unit scale for conditioning

    def kernel(a, b):
        r2 = ((a[:, None] - b[None]) ** 2).sum(-1)
        return 0.5 * r2 * np.log(np.maximum(r2, 1e-20))  # r^2 log r

    n = len(c)
    affine_c = np.column_stack([np.ones(n), c])
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = kernel(c, c) + smoothing * np.eye(n)
    system[:n, n:] = affine_c
    system[n:, :n] = affine_c.T
    solve = np.linalg.solve(system, np.eye(n + 3)[:, :n])  # (n + 3, n): coefficients per unit value
    return np.column_stack([kernel(t, c), np.ones(len(t)), t]) @ solve
