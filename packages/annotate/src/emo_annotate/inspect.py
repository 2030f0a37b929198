"""`emo-annotate inspect`: see what the annotator stored for one clip.

Writes into the output directory:
- `<key>_overlay.mp4`: the clip's frames with the union face mask tinted green (semi-transparent),
  the per-frame face box (yellow), the landmarks as cyan dots, and the head pose axes;
- `<key>_pose.png`: yaw, pitch, roll (degrees) and head rotation speed (deg/s) over time.

Pose axes follow pose.py's convention: the head rotation is R = Ry(yaw) Rx(-pitch) Rz(roll)
(intrinsic Y-X'-Z'' in a camera frame with x right, y up, z toward the camera; pitch is negated
there so that positive pitch means chin up). The head's own axes are R's columns; they are drawn
by orthographic projection (x, y) -> (x, -y) in the image, from the fitted face model's origin
(pose tx, ty), with length half the face box side:
- red: the head's x axis (toward the subject's left, image right for a frontal face);
- green: the head's y axis (up through the forehead); its tilt in the image shows roll;
- blue: the head's z axis (out of the face, where the nose points): a dot for a frontal face,
  pointing image-right for yaw > 0 and image-up for pitch > 0.
"""

from __future__ import annotations

import io
import json
import tarfile
from difflib import get_close_matches
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy.spatial.transform import Rotation

from .layout import OutputLayout
from .media import Mp4Writer, decode_mp4
from .errors import RunError

MASK_TINT = np.array([0, 255, 0], np.float32)
MASK_ALPHA = 0.25
BOX_COLOUR = (255, 220, 0)
LANDMARK_COLOUR = (0, 255, 255)
AXIS_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))  # head x, y, z
OVERLAY_CRF = 20
OVERLAY_PRESET = "veryfast"


def inspect_clip(shards_dir: Path, key: str, out_dir: Path) -> list[Path]:
    """Write the overlay video and the pose plot of clip `key`; returns their paths."""
    root = Path(shards_dir)
    if not root.is_dir():
        raise RunError(f"{root} does not exist or is not a directory")
    sample = read_sample(find_shard(OutputLayout(root), key), key)
    meta = json.loads(sample["json"])
    pose = load_npy(sample["pose.npy"])
    speed = load_npy(sample["speed.npy"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / f"{key}_overlay.mp4"
    video.write_bytes(render_overlay(sample, pose, float(meta["fps"])))
    plot = out_dir / f"{key}_pose.png"
    plot_pose(pose, speed, float(meta["fps"]), key, plot)
    return [video, plot]


# -- finding the clip ----------------------------------------------------------------------------
def find_shard(layout: OutputLayout, key: str) -> Path:
    """The committed shard holding `key`, found through the stats files (they list their keys)."""
    known: list[str] = []
    for stats_path in sorted(layout.stats.glob("*.json")) if layout.stats.exists() else []:
        try:
            keys = list(json.loads(stats_path.read_text()).get("keys", []))
        except (ValueError, AttributeError, TypeError):
            continue  # a damaged stats file is `verify`'s business; look in the others
        if key in keys:
            return layout.shard_path(stats_path.stem)
        known += keys
    hint = get_close_matches(key, known, n=1)
    suggestion = f"; did you mean {hint[0]}?" if hint else f" ({len(known)} clips there; keys are in index.parquet)"
    raise RunError(f"no clip {key!r} in {layout.root}{suggestion}")


def read_sample(tar_path: Path, key: str) -> dict[str, bytes]:
    """{extension: bytes} of one sample (the tar's headers are scanned, only its members read)."""
    prefix = key + "."
    with tarfile.open(tar_path) as tar:
        sample = {
            info.name[len(prefix) :]: tar.extractfile(info).read()
            for info in tar.getmembers()
            if info.isfile() and info.name.startswith(prefix)
        }
    missing = [m for m in ("mp4", "json", "pose.npy", "speed.npy", "bbox.npy", "mask.png") if m not in sample]
    if missing:
        raise RunError(f"{tar_path.name}: clip {key} lacks {', '.join(missing)}; run `emo-annotate verify`")
    return sample


def load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


# -- overlay video -------------------------------------------------------------------------------
def render_overlay(sample: dict[str, bytes], pose: np.ndarray, fps: float) -> bytes:
    frames = decode_mp4(sample["mp4"])  # a clip is short (<= max_clip_seconds)
    if not frames:
        raise RunError("the clip's mp4 holds no frames; run `emo-annotate verify`")
    boxes = load_npy(sample["bbox.npy"])
    landmarks = load_npy(sample["lmk.npy"]).astype(np.float32) if "lmk.npy" in sample else None
    mask = np.asarray(Image.open(io.BytesIO(sample["mask.png"])).convert("L")) > 0
    height, width = frames[0].shape[:2]
    writer = Mp4Writer(fps, width, height, OVERLAY_CRF, OVERLAY_PRESET)
    for t, frame in enumerate(frames):
        lmk = landmarks[t] if landmarks is not None and t < len(landmarks) else None
        writer.add(draw_frame(frame, mask, boxes[min(t, len(boxes) - 1)], lmk, pose[min(t, len(pose) - 1)]))
    return writer.finish()


def draw_frame(
    frame: np.ndarray, mask: np.ndarray, box: np.ndarray, landmarks: np.ndarray | None, pose: np.ndarray
) -> np.ndarray:
    """One RGB frame with mask tint, face box, landmarks and pose axes drawn on it."""
    out = frame.astype(np.float32)
    out[mask] = (1 - MASK_ALPHA) * out[mask] + MASK_ALPHA * MASK_TINT
    out = out.round().astype(np.uint8)
    size = out.shape[0]
    thickness = max(1, size // 256)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    cv2.rectangle(out, (x0, y0), (x1, y1), BOX_COLOUR, thickness)
    if landmarks is not None:
        for x, y in landmarks[:, :2]:
            cv2.circle(out, (int(round(x)), int(round(y))), thickness, LANDMARK_COLOUR, -1)
    origin = ((pose[3] + 0.5) * size, (pose[4] + 0.5) * size)  # tx, ty: crop sides from the centre
    length = 0.5 * max(x1 - x0, y1 - y0, 1)
    draw_axes(out, origin, pose_axes_2d(*pose[:3]), length, thickness + 1)
    return out


def pose_axes_2d(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 2): image-plane directions (x right, y down) of the head's x, y, z axes.

    Inverts pose.rotations_to_euler: R = Ry(yaw) Rx(-pitch) Rz(roll), axes = R's columns.
    """
    rot = Rotation.from_euler("YXZ", [yaw, -pitch, roll], degrees=True).as_matrix()
    return np.stack([rot[0, :], -rot[1, :]], axis=1)  # row i: (camera x, -camera y) of axis i


def draw_axes(image: np.ndarray, origin: tuple[float, float], axes: np.ndarray, length: float, thickness: int) -> None:
    start = (int(round(origin[0])), int(round(origin[1])))
    # z last, so the nose direction stays visible over the others
    for direction, colour in zip(axes, AXIS_COLOURS):
        end = (int(round(origin[0] + length * direction[0])), int(round(origin[1] + length * direction[1])))
        cv2.arrowedLine(image, start, end, colour, thickness, tipLength=0.15)
    cv2.circle(image, start, thickness + 1, AXIS_COLOURS[2], -1)


# -- pose plot -----------------------------------------------------------------------------------
def plot_pose(pose: np.ndarray, speed: np.ndarray, fps: float, key: str, path: Path) -> None:
    # Figure + the Agg canvas directly: no pyplot global state, no backend switch in the caller
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = np.arange(len(pose)) / fps
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    angles, speeds = fig.subplots(2, 1, sharex=True)
    for i, (name, colour) in enumerate(zip(("yaw", "pitch", "roll"), ("tab:red", "tab:green", "tab:blue"))):
        angles.plot(t, pose[:, i], label=name, color=colour)
    angles.set_ylabel("degrees")
    angles.set_title(f"{key}: head pose")
    angles.legend(loc="upper right")
    angles.grid(alpha=0.3)
    speeds.plot(np.arange(len(speed)) / fps, speed, color="black")
    speeds.set_ylabel("speed (deg/s)")
    speeds.set_xlabel("time (s)")
    speeds.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
