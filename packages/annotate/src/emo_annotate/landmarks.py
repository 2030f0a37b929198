"""3D face landmark backends.

Both return, per frame, one `Face` per detected face with landmarks in source-image pixels:
x to the right, y down, z away from the camera (same scale as x). MediaPipe's face mesh (468
points, models bundled in the mediapipe 0.10.14 wheel) is the default and also supplies the face
boxes and face count for the FAN backend (face-alignment's 3D FAN, 68 points), which loads its
weights through the library's own loader from the user's torch hub cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .config import LandmarkBackend


@dataclass(frozen=True)
class Face:
    landmarks: np.ndarray  # (n, 3) float32 source pixels, z away from the camera
    box: np.ndarray  # (4,) float32 x0, y0, x1, y1 source pixels


class LandmarkDetector(Protocol):
    name: str
    num_points: int

    def detect(self, rgb: np.ndarray, scale_to_source: float) -> list[Face]:
        """Faces in `rgb` (an image `scale_to_source` times smaller than the source frame)."""


class MediaPipeDetector:
    """MediaPipe face mesh in video mode (tracks between frames, re-detects when lost).

    `max_num_faces=2` so a second face is seen: clips need exactly one.
    """

    name = "mediapipe"
    num_points = 468

    def __init__(self, min_confidence: float = 0.5):
        os.environ.setdefault("GLOG_minloglevel", "2")
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=2,
            refine_landmarks=False,
            min_detection_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
        )

    def detect(self, rgb: np.ndarray, scale_to_source: float = 1.0) -> list[Face]:
        h, w = rgb.shape[:2]
        result = self._mesh.process(rgb)
        faces = []
        for face in result.multi_face_landmarks or []:
            pts = np.array([(p.x * w, p.y * h, p.z * w) for p in face.landmark], np.float32)
            pts *= scale_to_source
            faces.append(Face(landmarks=pts, box=_box_of(pts)))
        return faces

    def reset(self) -> None:
        """Forget the tracked face (call between videos so tracks never leak across files)."""
        self._mesh.reset()

    def close(self) -> None:
        self._mesh.close()


class FanDetector:
    """face-alignment's 3D FAN run on MediaPipe's face boxes.

    Weights come from `face_alignment`'s loader (`$TORCH_HOME/hub/checkpoints`, downloaded there
    on first use where a network is available). Faces are found by MediaPipe, so FAN's own face
    detector is never loaded: the library's `folder` detector needs no weights.
    """

    name = "fan"
    num_points = 68

    def __init__(self, device: str = "cpu"):
        import face_alignment

        self._boxes = MediaPipeDetector()
        self._fan = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.THREE_D,
            device=device,
            face_detector="folder",
            flip_input=False,
            compile=False,
        )

    def detect(self, rgb: np.ndarray, scale_to_source: float = 1.0) -> list[Face]:
        faces = self._boxes.detect(rgb, 1.0)
        if not faces:
            return []
        boxes = [f.box.tolist() for f in faces]
        preds = self._fan.get_landmarks_from_image(rgb, detected_faces=boxes)
        out = []
        for pts in preds or []:
            pts = np.asarray(pts, np.float32).copy()
            # FAN's depth grows toward the camera; our convention is z away from it
            pts[:, 2] *= -1.0
            pts *= scale_to_source
            out.append(Face(landmarks=pts, box=_box_of(pts)))
        return out

    def reset(self) -> None:
        self._boxes.reset()

    def close(self) -> None:
        self._boxes.close()


def _box_of(pts: np.ndarray) -> np.ndarray:
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()], np.float32)


def make_detector(backend: LandmarkBackend) -> MediaPipeDetector | FanDetector:
    if backend == "mediapipe":
        return MediaPipeDetector()
    if backend == "fan":
        return FanDetector()
    raise ValueError(f"unknown landmark backend {backend!r}")
