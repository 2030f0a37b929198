"""6-DoF head pose from 3D landmarks, temporal smoothing and head rotation speed.

Method: per frame, a similarity transform (Umeyama least squares) aligns a rigid subset of
MediaPipe's canonical face model (eye corners, nose, forehead, cheekbones: points that expression
barely moves) to the observed 3D landmarks. Its rotation is the head rotation.

Convention: rotations live in a right-handed camera frame with x to the image right, y up and z
toward the camera (the canonical model's own frame, so a frontal face is the identity). Angles are
intrinsic Y-X'-Z'' Euler angles, in degrees:
- yaw > 0: the face turns toward the image right (the subject's left);
- pitch > 0: the face tilts up (chin up);
- roll > 0: the head tilts counter-clockwise as seen in the image.
Mirroring the image horizontally negates yaw and roll and keeps pitch.

Translation: (x, y) of the face model's origin in the crop, relative to the crop centre, in units
of the crop side (so in [-0.5, 0.5] inside the crop, y down), and z = the face model's scale in
crop sides per canonical cm (larger = closer / bigger face).

Smoothing is zero-phase (cubic Savitzky-Golay on rotation vectors relative to the clip's mean
rotation), so it removes landmark jitter without delaying motion. Speed is the angular speed of
the smoothed rotations at each frame, in degrees per second: the geodesic angle between the
rotations of the frames before and after, over the time between them.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.signal import savgol_filter
from scipy.spatial.transform import Rotation

from .errors import MediaError

# MediaPipe mesh indices of points that facial expression barely moves.
MEDIAPIPE_RIGID = (
    33, 133, 362, 263,  # eye corners: right outer/inner, left inner/outer
    168, 6, 197, 195, 5, 4, 1,  # nose bridge to tip
    98, 327, 2,  # nostrils, subnasale
    10, 151, 9, 8,  # forehead midline
    108, 337, 69, 299,  # forehead sides
    234, 454, 93, 323, 127, 356, 116, 345,  # cheekbones, temples
)
# FAN/iBUG-68 indices with their MediaPipe counterparts.
FAN68_RIGID = (27, 28, 29, 30, 31, 33, 35, 36, 39, 42, 45, 0, 16)
FAN68_TO_MEDIAPIPE = (168, 6, 197, 4, 98, 2, 327, 33, 133, 362, 263, 127, 356)


# Savitzky-Golay polynomial order: inside a clip orders 2 and 3 smooth identically; at the clip's
# first and last half-window the cubic follows a quick nod (2 Hz) where a parabola lags it (the
# speed at the first frame of a clip was off by half the mean speed, now by a fifth).
SMOOTHING_ORDER = 3


@lru_cache(maxsize=1)
def canonical_face_model() -> np.ndarray:
    """(468, 3) MediaPipe canonical face, cm, x right / y up / z toward the camera."""
    text = resources.files("emo_annotate").joinpath("data/canonical_face_model.txt").read_text()
    return np.loadtxt(text.splitlines(), dtype=np.float64)


def rigid_points(backend: str) -> tuple[np.ndarray, np.ndarray]:
    """(landmark indices, template points) of the rigid subset for a landmark backend."""
    model = canonical_face_model()
    if backend == "mediapipe":
        idx = np.array(MEDIAPIPE_RIGID)
        return idx, model[idx]
    if backend == "fan":
        return np.array(FAN68_RIGID), model[np.array(FAN68_TO_MEDIAPIPE)]
    raise ValueError(f"unknown landmark backend {backend!r}")


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity dst ~ s * R @ src + t for (n, 3) point sets; det(R) = +1."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1.0
    rot = u @ np.diag(d) @ vt
    var_s = (xs**2).sum() / len(src)
    scale = float((sig * d).sum() / var_s)
    return scale, rot, mu_d - scale * rot @ mu_s


def fit_pose(landmarks: np.ndarray, backend: str) -> tuple[np.ndarray, float, np.ndarray]:
    """Head rotation (3, 3), scale (pixels per cm) and origin (x, y pixels, image frame).

    `landmarks` (n, 3): pixels, x right, y down, z away from the camera.
    """
    idx, template = rigid_points(backend)
    observed = landmarks[idx].astype(np.float64) * np.array([1.0, -1.0, -1.0])  # to y up, z toward
    scale, rot, t = umeyama(template, observed)
    return rot, scale, np.array([t[0], -t[1]])


def rotations_to_euler(rot: Rotation) -> np.ndarray:
    """(T, 3) yaw, pitch, roll in degrees (see the module docstring for signs)."""
    yxz = rot.as_euler("YXZ", degrees=True)  # intrinsic: R = Ry(a) Rx(b) Rz(c)
    # about x, a positive angle tips the top of the head toward the camera (chin down)
    return np.stack([yxz[:, 0], -yxz[:, 1], yxz[:, 2]], axis=1)


def smoothing_window(fps: float, seconds: float, length: int) -> int:
    """Odd Savitzky-Golay window of about `seconds`, at most the sequence length."""
    window = max(3, int(round(seconds * fps)) | 1)
    if window > length:
        window = length if length % 2 else length - 1
    return window


def smooth_rotations(rot: Rotation, window: int) -> Rotation:
    """Zero-phase smoothing of a rotation sequence in the tangent space of its mean."""
    if window < 5 or len(rot) < window:
        return rot
    mean = rot.mean()
    rel = (mean.inv() * rot).as_rotvec()  # (T, 3), small angles around the clip's mean
    rel = savgol_filter(rel, window, polyorder=SMOOTHING_ORDER, axis=0, mode="interp")
    return mean * Rotation.from_rotvec(rel)


def smooth_series(values: np.ndarray, window: int) -> np.ndarray:
    if window < 5 or len(values) < window:
        return values
    return savgol_filter(values, window, polyorder=SMOOTHING_ORDER, axis=0, mode="interp")


def rotation_speed(rot: Rotation, fps: float) -> np.ndarray:
    """(T,) degrees/second at each frame: the geodesic angle between the rotations of frames t-1
    and t+1 over the 2 / fps between them (a central difference: a backward difference would be
    the speed half a frame earlier, which on a 2 Hz nod is off by a quarter of the mean speed).
    The first and last frames use their one neighbour.
    """
    if len(rot) < 2:
        return np.zeros(len(rot), np.float32)
    step = np.degrees((rot[:-1].inv() * rot[1:]).magnitude()) * fps  # (T-1,) between t and t+1
    if len(rot) == 2:
        return np.repeat(step, 2).astype(np.float32)
    central = np.degrees((rot[:-2].inv() * rot[2:]).magnitude()) * fps / 2
    return np.concatenate([step[:1], central, step[-1:]]).astype(np.float32)


def parse_speed(value: str | None) -> float | Path | None:
    """A CLI's `--speed`: a number (degrees/second) or the path of a per-frame speed file."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return Path(value)


def read_speed_file(path: Path) -> np.ndarray:
    """(n,) float32 per-frame head speeds (deg/s) from `.npy` (1-D) or text (numbers separated by
    spaces, commas, newlines); MediaError when missing, unreadable, empty, negative or not finite."""
    if not path.is_file():
        raise MediaError(f"no such file: {path}")
    try:
        if path.suffix == ".npy":
            values = np.load(path, allow_pickle=False)
        else:
            values = np.array([float(v) for v in path.read_text().replace(",", " ").split()])
    except (ValueError, OSError) as err:
        raise MediaError(f"cannot read {path}: {err}") from None
    values = np.asarray(values, np.float32)
    if values.ndim != 1 or values.size == 0:
        raise MediaError(f"{path} must hold a non-empty list of numbers, got shape {list(values.shape)}")
    if not np.isfinite(values).all() or (values < 0).any():
        raise MediaError(f"{path} holds negative or non-finite speeds")
    return values


def clip_pose(
    landmarks: np.ndarray, backend: str, crop_box: np.ndarray, fps: float, smoothing_seconds: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pose `[T, 6]` and speed `[T]` of a clip from its source-pixel landmarks `[T, n, 3]`.

    `crop_box` (x0, y0, side) is the clip's square crop in source pixels.
    """
    fits = [fit_pose(lmk, backend) for lmk in landmarks]
    rot = Rotation.from_matrix(np.stack([f[0] for f in fits]))
    window = smoothing_window(fps, smoothing_seconds, len(fits))
    rot = smooth_rotations(rot, window)
    x0, y0, side = crop_box
    origin = np.stack([f[2] for f in fits])  # (T, 2) source pixels
    trans = np.column_stack(
        [
            (origin[:, 0] - x0) / side - 0.5,
            (origin[:, 1] - y0) / side - 0.5,
            np.array([f[1] for f in fits]) / side,
        ]
    )
    trans = smooth_series(trans, window)
    pose = np.concatenate([rotations_to_euler(rot), trans], axis=1).astype(np.float32)
    return pose, rotation_speed(rot, fps)
