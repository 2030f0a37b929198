"""3D face landmark backends.

Both return, per frame, one `Face` per detected face with landmarks in source-image pixels:
x to the right, y down, z away from the camera (same scale as x). MediaPipe's face mesh (468
points, models bundled in the mediapipe 0.10.14 wheel) is the default and also supplies the face
boxes and face count for the FAN backend (face-alignment's 3D FAN, 68 points), which loads its
weights through the library's own loader from the user's torch hub cache.
"""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .config import LandmarkBackend


@dataclass(frozen=True)
class Face:
    landmarks: np.ndarray  # (n, 3) float32 source pixels, z away from the camera
    box: np.ndarray  # (4,) float32 x0, y0, x1, y1 source pixels


@dataclass(frozen=True)
class FrameFaces:
    count: int  # human faces the face detector finds in the frame
    face: Face | None  # the landmarked face, when the detector confirms it


class LandmarkDetector(Protocol):
    name: str
    num_points: int

    def detect(self, rgb: np.ndarray, scale_to_source: float) -> FrameFaces:
        """Faces in `rgb` (an image `scale_to_source` times smaller than the source frame)."""

    def reset(self) -> None:
        """Forget tracking state (between videos)."""

    def close(self) -> None: ...


class MediaPipeDetector:
    """MediaPipe's full-range face detector counts faces; the face mesh (video mode: it tracks
    between frames) gives the landmarks of the face it confirms.

    The detector is the arbiter because the mesh's tracker happily follows a drawn smiley once
    it latched on, while the detector does not fire on cartoon faces.
    """

    name = "mediapipe"
    num_points = 468

    def __init__(self, min_confidence: float = 0.5):
        os.environ.setdefault("GLOG_minloglevel", "2")
        import mediapipe as mp

        self._detector = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_confidence)
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=1,
            refine_landmarks=False,
            min_detection_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
        )

    def detect(self, rgb: np.ndarray, scale_to_source: float = 1.0) -> FrameFaces:
        h, w = rgb.shape[:2]
        detections = self._detector.process(rgb).detections or []
        meshes = self._mesh.process(rgb).multi_face_landmarks or []
        if not detections or not meshes:
            return FrameFaces(len(detections), None)
        pts = np.array([(p.x * w, p.y * h, p.z * w) for p in meshes[0].landmark], np.float32)
        face = Face(landmarks=pts * scale_to_source, box=_box_of(pts) * scale_to_source)
        boxes = [_detection_box(d, w, h) * scale_to_source for d in detections]
        confirmed = max(box_iou(face.box, b) for b in boxes) >= 0.3
        return FrameFaces(len(detections), face if confirmed else None)

    def reset(self) -> None:
        """Forget the tracked face (between videos, so tracks never leak across files)."""
        self._mesh.reset()

    def close(self) -> None:
        self._mesh.close()
        self._detector.close()


class FanDetector:
    """face-alignment's 3D FAN run on the face MediaPipe found and confirmed.

    Weights come from `face_alignment`'s loader (`$TORCH_HOME/hub/checkpoints`, downloaded there
    on first use where a network is available). Faces are found by MediaPipe, so FAN's own face
    detector is never loaded: the library's `folder` detector needs no weights.
    """

    name = "fan"
    num_points = 68

    def __init__(self, device: str = "cpu"):
        import face_alignment

        self._faces = MediaPipeDetector()
        self._fan = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.THREE_D,
            device=device,
            face_detector="folder",
            flip_input=False,
            compile=False,
        )

    def detect(self, rgb: np.ndarray, scale_to_source: float = 1.0) -> FrameFaces:
        found = self._faces.detect(rgb, 1.0)
        if found.face is None:
            return found
        preds = self._fan.get_landmarks_from_image(rgb, detected_faces=[found.face.box.tolist()])
        if not preds:
            return FrameFaces(found.count, None)
        pts = np.asarray(preds[0], np.float32).copy()
        # FAN documents no depth sign. For any visible face the nose tip (30) is nearer the camera
        # than the outer eye corners (36, 45); our z grows away from the camera, so make it so.
        if pts[30, 2] > (pts[36, 2] + pts[45, 2]) / 2:
            pts[:, 2] *= -1.0
        pts *= scale_to_source
        return FrameFaces(found.count, Face(landmarks=pts, box=_box_of(pts)))

    def reset(self) -> None:
        self._faces.reset()

    def close(self) -> None:
        self._faces.close()


def _box_of(pts: np.ndarray) -> np.ndarray:
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()], np.float32)


def _detection_box(detection, w: int, h: int) -> np.ndarray:
    rel = detection.location_data.relative_bounding_box
    return np.array([rel.xmin * w, rel.ymin * h, (rel.xmin + rel.width) * w, (rel.ymin + rel.height) * h], np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@contextmanager
def native_logs_silenced():
    """Hide MediaPipe's start-up chatter (TFLite and absl write to file descriptor 2 from C++,
    protobuf warns from Python) around a detector's creation and first use, for CLIs whose
    stderr should hold only their own messages. Exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype")
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def make_detector(backend: LandmarkBackend) -> MediaPipeDetector | FanDetector:
    if backend == "mediapipe":
        return MediaPipeDetector()
    if backend == "fan":
        return FanDetector()
    raise ValueError(f"unknown landmark backend {backend!r}")
