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
    track_box: np.ndarray | None = None  # (4,) the face mesh's box when `box` comes from other landmarks (FAN)

    @property
    def mesh_box(self) -> np.ndarray:
        """The box the face detector's boxes confirm and a tracker follows."""
        return self.box if self.track_box is None else self.track_box


@dataclass(frozen=True)
class FrameFaces:
    count: int  # human faces the face detector finds in the frame
    face: Face | None  # the landmarked face, when the detector confirms it


# a landmarked face is confirmed when a detector box overlaps its mesh box at least this much
CONFIRM_IOU = 0.3


def confirm(face: Face | None, boxes: list[np.ndarray]) -> FrameFaces:
    """What the face detector's `boxes` say about the landmarked `face` of the same frame."""
    if face is None or not boxes:
        return FrameFaces(len(boxes), None)
    confirmed = max(box_iou(face.mesh_box, b) for b in boxes) >= CONFIRM_IOU
    return FrameFaces(len(boxes), face if confirmed else None)


class LandmarkDetector(Protocol):
    name: str
    num_points: int

    def landmarks(self, rgb: np.ndarray, scale_to_source: float = 1.0) -> Face | None:
        """The face the landmark model tracks in `rgb` (an image `scale_to_source` times smaller
        than the source frame), not yet confirmed by the face detector."""

    def face_boxes(self, rgb: np.ndarray, scale_to_source: float = 1.0) -> list[np.ndarray]:
        """Boxes (source pixels) of the human faces the face detector finds."""

    def detect(self, rgb: np.ndarray, scale_to_source: float = 1.0) -> FrameFaces:
        """Both, and the landmarked face only when the detector confirms it."""

    def reset(self) -> None:
        """Forget tracking state (between videos)."""

    def close(self) -> None: ...


class MediaPipeDetector:
    """MediaPipe's full-range face detector counts faces; the face mesh (video mode: it tracks
    between frames) gives the landmarks of the face it confirms.

    The detector is the arbiter because the mesh's tracker happily follows a drawn smiley once
    it latched on, while the detector does not fire on cartoon faces. `detect` runs both;
    `landmarks` and `face_boxes` run one each, for a tracker that runs the detector only where
    it decides something (`tracking.FaceTracker`).
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

    def landmarks(self, rgb: np.ndarray, scale_to_source: float = 1.0) -> Face | None:
        h, w = rgb.shape[:2]
        meshes = self._mesh.process(rgb).multi_face_landmarks or []
        if not meshes:
            return None
        pts = landmark_array(meshes[0], self.num_points) * np.array([w, h, w], np.float32)  # (n, 3) image pixels
        return Face(landmarks=pts * scale_to_source, box=_box_of(pts) * scale_to_source)

    def face_boxes(self, rgb: np.ndarray, scale_to_source: float = 1.0) -> list[np.ndarray]:
        h, w = rgb.shape[:2]
        detections = self._detector.process(rgb).detections or []
        return [_detection_box(d, w, h) * scale_to_source for d in detections]

    def detect(self, rgb: np.ndarray, scale_to_source: float = 1.0) -> FrameFaces:
        boxes = self.face_boxes(rgb, scale_to_source)
        face = self.landmarks(rgb, scale_to_source)
        return confirm(face, boxes)

    def reset(self) -> None:
        """Forget the tracked face (between videos, so tracks never leak across files)."""
        self._mesh.reset()

    def close(self) -> None:
        self._mesh.close()
        self._detector.close()


def landmark_array(landmark_list, n: int) -> np.ndarray:
    """(n, 3) float32 normalised x, y, z of a MediaPipe NormalizedLandmarkList.

    Read from its protobuf wire format: each point is a 17-byte record (field tag and length,
    then x, y, z as tagged little-endian floats), 10x faster than reading 3n Python attributes.
    Any other layout (optional fields set, another version) falls back to the attributes.
    """
    data = np.frombuffer(landmark_list.SerializeToString(), np.uint8)
    if data.size == 17 * n:
        records = data.reshape(n, 17)
        if (records[:, :3] == (0x0A, 15, 0x0D)).all() and (records[:, 7] == 0x15).all() and (records[:, 12] == 0x1D).all():
            return np.ascontiguousarray(records[:, 2:].reshape(n, 3, 5)[:, :, 1:]).view("<f4").reshape(n, 3).astype(np.float32)
    return np.array([(p.x, p.y, p.z) for p in landmark_list.landmark], np.float32)


class FanDetector:
    """face-alignment's 3D FAN run on the face MediaPipe's mesh tracks (and its detector confirms).

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

    def landmarks(self, rgb: np.ndarray, scale_to_source: float = 1.0) -> Face | None:
        mesh = self._faces.landmarks(rgb, 1.0)
        if mesh is None:
            return None
        preds = self._fan.get_landmarks_from_image(rgb, detected_faces=[mesh.box.tolist()])
        if not preds:
            return None
        pts = np.asarray(preds[0], np.float32).copy()
        # FAN documents no depth sign. For any visible face the nose tip (30) is nearer the camera
        # than the outer eye corners (36, 45); our z grows away from the camera, so make it so.
        if pts[30, 2] > (pts[36, 2] + pts[45, 2]) / 2:
            pts[:, 2] *= -1.0
        pts *= scale_to_source
        return Face(landmarks=pts, box=_box_of(pts), track_box=mesh.box * scale_to_source)

    def face_boxes(self, rgb: np.ndarray, scale_to_source: float = 1.0) -> list[np.ndarray]:
        return self._faces.face_boxes(rgb, scale_to_source)

    def detect(self, rgb: np.ndarray, scale_to_source: float = 1.0) -> FrameFaces:
        boxes = self.face_boxes(rgb, scale_to_source)
        return confirm(self.landmarks(rgb, scale_to_source), boxes)

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
