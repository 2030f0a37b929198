"""Head motion and pixel known answers: the astronaut swayed along a known roll trajectory, as a
small face crop, measures that trajectory's speed; PSNR and seam flicker of known inputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from eval_media import FPS
from emo_annotate.samples import roll_trajectory, rotated_astronaut_frames
from emo_eval import FaceTracker, head_motion, psnr, seam_flicker


def test_head_speed_of_a_known_sway():
    roll = roll_trajectory(50, FPS, amplitude=12.0, hz=0.5)
    frames = [cv2.resize(f[24:224, 124:324], (128, 128), interpolation=cv2.INTER_AREA) for f in rotated_astronaut_frames(roll)]
    tracker = FaceTracker()
    try:
        landmarks = np.stack([tracker.track(f) for f in frames])
    finally:
        tracker.close()
    truth = np.abs(np.gradient(roll)) * FPS  # deg/s
    summary, pose, speed = head_motion(landmarks, FPS, 128, requested=float(truth.mean()))
    assert summary["head_speed_mean"] == pytest.approx(truth.mean(), rel=0.25)
    assert summary["head_speed_error"] < 0.25 * truth.mean()
    assert summary["pose_std_roll"] == pytest.approx(np.std(roll), rel=0.2)
    assert summary["pose_std_roll"] > 3 * max(summary["pose_std_yaw"], summary["pose_std_pitch"])
    # a face missing in some frames: their speed is unknown, the rest still measured
    landmarks[10:14] = np.nan
    summary, _, speed = head_motion(landmarks, FPS, 128, requested=np.full(50, 5.0, np.float32))
    assert np.isnan(speed[10:14]).all() and np.isfinite(speed[:10]).all()
    assert summary["head_speed_requested"] == pytest.approx(5.0)


def test_psnr_and_seam_flicker_known_values():
    a = np.full((32, 32, 3), 100, np.uint8)
    b = a.copy()
    b[::2] += 10  # half the pixels off by 10: MSE 50
    assert psnr(a, a) == 100.0
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 50), rel=1e-6)
    changes = np.ones(35)
    changes[[11, 23]] = 4.0  # the changes into frames 12 and 24: clip seams of 12-frame clips
    result = seam_flicker(changes, 12)
    assert result["seam_flicker"] == pytest.approx(4.0) and seam_flicker(np.ones(5), 12)["seam_flicker"] is None
