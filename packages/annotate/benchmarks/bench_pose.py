"""Head-pose label accuracy on known trajectories (a script, not a test).

A real face photo (scikit-image's astronaut) is turned in the image plane along known roll
trajectories (sways of different amplitude and frequency, mirrored too, and a still head), written
as real H.264 + AAC videos, and annotated by the real annotator (default config). What a user gets
(`speed.npy`, `pose.npy` of every stored clip) is compared frame by frame with the truth:

- speed: the trajectory's angular speed at each frame's time (|d roll / dt|);
- angles: the photo's own head rotation R0 (estimated as the mean of the estimates with the
  applied roll undone) turned by the applied roll, in the contract's Euler convention (intrinsic
  YXZ: an image roll of a head that is not frontal moves yaw and pitch a little too, so the truth
  is compared angle by angle).

The still head (no motion: the noise floor of speed and angles) is measured with the freeze checks
off, since a still photo is a frozen picture to the annotator. Per trajectory: mean true speed, per-frame speed error (mean and 95th percentile of |est - true|,
as a share of the mean speed), per-frame yaw / pitch / roll error (RMS, degrees), and the spread
of yaw itself on that pure roll (standard deviation, what a reviewer sees without a ground truth).
Clips of 6 s (one per video) and of 3 s (`--max-clip-seconds 3`: clip edges weigh more) are
measured. The reference, computed in the same run from the same clips' smoothed rotations
(`pose.npy`), is the previous speed definition: the angle between consecutive frames (a backward
difference, i.e. the speed half a frame earlier).

    uv run python packages/annotate/benchmarks/bench_pose.py [--out bench_pose.json]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from emo_annotate import samples
from emo_annotate.config import AnnotateConfig, ClipConfig
from emo_annotate.pipeline import Annotator
from emo_annotate.pose import rotations_to_euler

FPS = 25.0
SECONDS = 6.0
# (amplitude deg, frequency Hz): slow sway, nod-like, wide slow turn, quick small nod
TRAJECTORIES = ((15.0, 0.5), (10.0, 1.0), (25.0, 0.3), (5.0, 2.0))


def annotate(annotator: Annotator, path: Path) -> list[dict]:
    out: list[dict] = []
    outcome = annotator.annotate(path, "bench", path.name, out.append)
    if outcome.status != "ok":
        raise RuntimeError(f"{path.name}: {outcome.status} {outcome.reason}")
    return out


def load(sample: dict, name: str) -> np.ndarray:
    return np.load(io.BytesIO(sample[name]), allow_pickle=False)


def truth_angles(pose: np.ndarray, applied_roll: np.ndarray) -> np.ndarray:
    est = Rotation.from_euler("YXZ", np.stack([pose[:, 0], -pose[:, 1], pose[:, 2]], axis=1), degrees=True)
    applied = Rotation.from_euler("z", applied_roll[:, None], degrees=True)
    return rotations_to_euler(applied * (applied.inv() * est).mean())


def backward_speed(pose: np.ndarray) -> np.ndarray:
    """The previous speed definition on a clip's own smoothed rotations (`pose.npy`): the angle
    between consecutive frames, which is the speed half a frame earlier."""
    rot = Rotation.from_euler("YXZ", np.stack([pose[:, 0], -pose[:, 1], pose[:, 2]], axis=1), degrees=True)
    step = np.degrees((rot[:-1].inv() * rot[1:]).magnitude()) * FPS
    return np.concatenate([step[:1], step])


def measure(annotator: Annotator, work: Path, amplitude: float, hz: float, mirror: bool) -> dict:
    n = int(SECONDS * FPS)
    t = np.arange(n) / FPS
    roll = amplitude * np.sin(2 * np.pi * hz * t)
    applied = -roll if mirror else roll
    true_speed = np.abs(amplitude * 2 * np.pi * hz * np.cos(2 * np.pi * hz * t))
    path = samples.make_astronaut_video(work / f"roll_{amplitude:g}_{hz:g}_{int(mirror)}.mp4", roll, FPS, mirror=mirror)
    clips = annotate(annotator, path)
    frames = np.concatenate([np.arange(*json.loads(c["json"])["source_frames"]) for c in clips])
    speed = np.concatenate([load(c, "speed.npy") for c in clips])
    pose = np.concatenate([load(c, "pose.npy") for c in clips])
    before = np.concatenate([backward_speed(load(c, "pose.npy")) for c in clips])
    truth = truth_angles(pose, applied[frames])
    angle_error = pose[:, :3] - truth
    mean_speed = float(true_speed[frames].mean())
    error, error_before = np.abs(speed - true_speed[frames]), np.abs(before - true_speed[frames])
    result = {
        "amplitude_deg": amplitude, "hz": hz, "mirrored": mirror, "clips": len(clips), "frames": int(len(frames)),
        "mean_true_speed": round(mean_speed, 2), "mean_est_speed": round(float(speed.mean()), 2),
        "yaw_rms_error_deg": round(float(np.sqrt((angle_error[:, 0] ** 2).mean())), 3),
        "pitch_rms_error_deg": round(float(np.sqrt((angle_error[:, 1] ** 2).mean())), 3),
        "roll_rms_error_deg": round(float(np.sqrt((angle_error[:, 2] ** 2).mean())), 3),
        "yaw_spread_deg": round(float(pose[:, 0].std()), 3),
        "true_yaw_spread_deg": round(float(truth[:, 0].std()), 3),
    }
    if amplitude > 0:
        result.update(
            speed_error_mean_pct=round(100 * float(error.mean()) / mean_speed, 2),
            speed_error_p95_pct=round(100 * float(np.percentile(error, 95)) / mean_speed, 2),
            previous_speed_error_mean_pct=round(100 * float(error_before.mean()) / mean_speed, 2),
        )
    else:
        result["still_head_speed_mean"] = round(float(speed.mean()), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_pose.json"))
    args = parser.parse_args()
    started = time.time()
    results = {"machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for clip_seconds in (10.0, 3.0):
            cfg = replace(AnnotateConfig(), clip=replace(ClipConfig(), max_seconds=clip_seconds))
            annotator = Annotator(cfg)
            rows = [measure(annotator, work, a, hz, mirror) for a, hz in TRAJECTORIES for mirror in (False, True)]
            annotator.close()
            # a still photo is a frozen picture to the annotator: measured with the freeze checks off
            still = Annotator(replace(cfg, clip=replace(cfg.clip, max_still_seconds=1e9, min_picture_rate=0.0)))
            rows.append(measure(still, work, 0.0, 0.5, False))
            still.close()
            moving = [r for r in rows if r["amplitude_deg"] > 0]
            results[f"clips_up_to_{clip_seconds:g}s"] = {
                "trajectories": rows,
                "speed_error_mean_pct_over_trajectories": round(float(np.mean([r["speed_error_mean_pct"] for r in moving])), 2),
                "speed_error_worst_trajectory_pct": max(r["speed_error_mean_pct"] for r in moving),
                "previous_speed_error_mean_pct_over_trajectories": round(float(np.mean([r["previous_speed_error_mean_pct"] for r in moving])), 2),
                "yaw_rms_error_deg_over_trajectories": round(float(np.mean([r["yaw_rms_error_deg"] for r in rows])), 3),
            }
            for r in rows:
                print(clip_seconds, json.dumps(r))
    results["seconds"] = round(time.time() - started, 1)
    args.out.write_text(json.dumps(results, indent=2))
    for key in ("clips_up_to_10s", "clips_up_to_3s"):
        print(key, {k: v for k, v in results[key].items() if k != "trajectories"})


if __name__ == "__main__":
    main()
