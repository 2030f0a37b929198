"""Faces in every frame, found the annotator's way (MediaPipe face detector + face mesh) on a
frame scaled to a fixed analysis size with a black border, so small generated face crops (64-128
px, the face filling the frame) are found as reliably as 512 px ones.

Landmark index sets below are MediaPipe face-mesh indices (468 points).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

NUM_POINTS = 468
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
EYE_OUTER = (33, 263)  # the subject's right (image left) and left outer eye corners
# ArcFace's five points, in image order: left eye, right eye, nose tip, left / right mouth corner
EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT = (33, 133), (362, 263)
NOSE_TIP, MOUTH_IMAGE_LEFT, MOUTH_IMAGE_RIGHT = 1, 61, 291


@lru_cache(maxsize=1)
def lip_points() -> np.ndarray:
    """The 40 lip contour points (outer and inner) of MediaPipe's FACEMESH_LIPS."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LIPS

    return np.array(sorted({i for edge in FACEMESH_LIPS for i in edge}))


@lru_cache(maxsize=1)
def expression_points() -> np.ndarray:
    """Lips, eyes and eyebrows: the points expression moves (92 of them)."""
    from mediapipe.python.solutions import face_mesh_connections as c

    sets = (c.FACEMESH_LIPS, c.FACEMESH_LEFT_EYE, c.FACEMESH_RIGHT_EYE, c.FACEMESH_LEFT_EYEBROW, c.FACEMESH_RIGHT_EYEBROW)
    return np.array(sorted({i for edges in sets for edge in edges for i in edge}))


class FaceTracker:
    """MediaPipe landmarks of one video's frames (video mode: call `reset` between videos).

    Each frame is scaled so its long side is `analysis_size` and padded by a quarter of that on
    every side; `track` returns the landmarks in the frame's own pixels.
    """

    def __init__(self, analysis_size: int = 256):
        from emo_annotate.landmarks import MediaPipeDetector

        self.analysis_size = analysis_size
        self.pad = analysis_size // 4
        self._detector = MediaPipeDetector()

    def analysis_image(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """The padded analysis image and its scale (analysis pixels per frame pixel)."""
        h, w = rgb.shape[:2]
        scale = self.analysis_size / max(h, w)
        if scale != 1.0:
            interp = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
            rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
        p = self.pad
        return cv2.copyMakeBorder(rgb, p, p, p, p, cv2.BORDER_CONSTANT, value=(0, 0, 0)), scale

    def track(self, rgb: np.ndarray) -> np.ndarray | None:
        """(468, 3) float32 landmarks in frame pixels (z in the same scale), or None: no face."""
        image, scale = self.analysis_image(rgb)
        found = self._detector.detect(image)
        if found.face is None:
            return None
        points = found.face.landmarks.copy()
        points[:, :2] -= self.pad
        return points / scale

    def reset(self) -> None:
        self._detector.reset()

    def close(self) -> None:
        self._detector.close()


def face_box(landmarks: np.ndarray) -> np.ndarray:
    """A square (x0, y0, x1, y1) like dlib's frontal face detector draws: 0.96 x the geometric
    mean side of the landmarks' box, centred on their mean (measured against dlib's HOG detector
    on the carphone, astronaut and Grace Hopper faces: centre within 0.04, size within 0.05 of a
    face side)."""
    x, y = landmarks[:, 0], landmarks[:, 1]
    side = 0.96 * np.sqrt((x.max() - x.min()) * (y.max() - y.min()))
    cx, cy = x.mean(), y.mean()
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """(5, 2): left eye centre, right eye centre, nose tip, left and right mouth corner (image sides)."""
    pts = landmarks[:, :2]
    return np.stack([
        pts[list(EYE_IMAGE_LEFT)].mean(0), pts[list(EYE_IMAGE_RIGHT)].mean(0), pts[NOSE_TIP],
        pts[MOUTH_IMAGE_LEFT], pts[MOUTH_IMAGE_RIGHT],
    ]).astype(np.float32)
