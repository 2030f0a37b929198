"""Head motion of a video through the annotator's own pose code: 6-DoF pose per frame
(`emo_annotate.pose.clip_pose`: Umeyama fit of the canonical face, zero-phase smoothing) and head
rotation speed in deg/s, the quantity EMO's speed layers are conditioned on."""

from __future__ import annotations

import numpy as np


def fill_gaps(landmarks: np.ndarray) -> np.ndarray | None:
    """Landmarks (T, n, 3) with NaN frames linearly interpolated in time (held at the ends);
    None with fewer than 2 face frames."""
    found = np.isfinite(landmarks).all(axis=(1, 2))
    if found.sum() < 2:
        return None
    if found.all():
        return landmarks
    t = np.arange(len(landmarks))
    flat = landmarks.reshape(len(landmarks), -1)
    filled = np.stack([np.interp(t, t[found], flat[found, j]) for j in range(flat.shape[1])], axis=1)
    return filled.reshape(landmarks.shape).astype(np.float32)


def head_motion(landmarks: np.ndarray, fps: float, frame_side: float,
                requested: float | np.ndarray | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """Summary, pose (T, 6) and speed (T,) deg/s (NaN where no face) of MediaPipe landmarks
    (T, 468, 3) in frame pixels. `requested`: the head speed the video was generated with.

    Summary keys: head_speed_mean / _median (deg/s over face frames), pose_std_yaw / _pitch /
    _roll (deg), and with `requested`: head_speed_requested (its mean), head_speed_error
    (|measured mean - requested mean|), head_speed_frame_mae (mean |measured - requested| per
    frame) and head_speed_correlation (per-frame requested speeds that vary only).
    """
    from emo_annotate.config import ClipConfig
    from emo_annotate.pose import clip_pose

    n = len(landmarks)
    empty = {"head_speed_mean": None, "head_speed_median": None, "pose_std_yaw": None, "pose_std_pitch": None, "pose_std_roll": None}
    pose, speed = np.full((n, 6), np.nan, np.float32), np.full(n, np.nan, np.float32)
    filled = fill_gaps(landmarks)
    summary = dict(empty)
    if filled is not None:
        found = np.isfinite(landmarks).all(axis=(1, 2))
        pose, speed = clip_pose(filled, "mediapipe", np.array([0.0, 0.0, frame_side]), fps, ClipConfig().smoothing_seconds)
        pose[~found], speed[~found] = np.nan, np.nan
        measured = speed[found]
        summary = {
            "head_speed_mean": float(measured.mean()),
            "head_speed_median": float(np.median(measured)),
            **{f"pose_std_{name}": float(np.std(pose[found, i])) for i, name in enumerate(("yaw", "pitch", "roll"))},
        }
    if requested is not None:
        wanted = np.broadcast_to(np.asarray(requested, np.float32), (n,)) if np.ndim(requested) == 0 else np.asarray(requested, np.float32)[:n]
        wanted = np.pad(wanted, (0, n - len(wanted)), mode="edge") if 0 < len(wanted) < n else wanted
        summary["head_speed_requested"] = float(wanted.mean())
        both = np.isfinite(speed)
        summary["head_speed_error"] = None if summary["head_speed_mean"] is None else abs(summary["head_speed_mean"] - float(wanted.mean()))
        summary["head_speed_frame_mae"] = float(np.abs(speed[both] - wanted[both]).mean()) if both.any() else None
        varies = both.sum() >= 3 and wanted[both].std() > 1e-6 and speed[both].std() > 1e-6
        summary["head_speed_correlation"] = float(np.corrcoef(speed[both], wanted[both])[0, 1]) if varies else None
    return summary, pose, speed
