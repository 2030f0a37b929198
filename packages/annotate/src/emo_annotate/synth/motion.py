"""Head motion with a known speed: speed profiles and the rotation trajectory that follows them.

Speed is the annotator's (`emo_annotate.pose.rotation_speed`): the geodesic angle between the
rotations of consecutive frames times fps, in deg/s. The head moves along a closed figure-eight in
angle space (yaw = A_yaw sin p, roll = A_roll sin 2p, pitch = A_pitch sin 3p): it never stops or
reverses, so the annotator's smoothing keeps the speed. Each step advances the phase p so that the
geodesic angle of the step equals the profile's speed / fps (solved per step, to 1e-9 relative).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from ..pose import rotation_speed
from .head import applied_rotation

SPEED_LEVELS = {"still": 0.0, "slow": 15.0, "medium": 30.0, "fast": 50.0}  # deg/s


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float  # seconds
    speed: float  # deg/s
    label: str  # still, slow, medium, fast or constant


@dataclass(frozen=True)
class SpeedProfile:
    """Piecewise-constant head speed with raised-cosine changes of `ramp` seconds at the joins."""

    segments: tuple[Segment, ...]
    ramp: float = 0.3

    @classmethod
    def constant(cls, speed: float, seconds: float) -> "SpeedProfile":
        label = "still" if speed == 0 else "constant"
        return cls((Segment(0.0, seconds, float(speed), label),), ramp=0.0)

    @classmethod
    def varied(cls, seconds: float, seed: int, levels: dict[str, float] = SPEED_LEVELS,
               segment_seconds: tuple[float, float] = (1.2, 2.4), ramp: float = 0.3) -> "SpeedProfile":
        """Segments of random length cycling through every level in a random order (no level
        twice in a row), so each video goes from still to fast."""
        rng = np.random.default_rng(seed)
        names = list(levels)
        segments, t, order = [], 0.0, []
        while t < seconds - 1e-9:
            if not order:
                order = [names[i] for i in rng.permutation(len(names))]
                if segments and order[0] == segments[-1].label:
                    order.append(order.pop(0))
            label = order.pop(0)
            end = min(seconds, t + rng.uniform(*segment_seconds))
            if seconds - end < segment_seconds[0] / 2:
                end = seconds  # no stub at the end
            segments.append(Segment(t, end, float(levels[label]), label))
            t = end
        return cls(tuple(segments), ramp)

    def step_speeds(self, frames: int, fps: float) -> np.ndarray:
        """(frames - 1,) deg/s of each step from frame t to t + 1 (taken at time (t + 0.5) / fps)."""
        times = (np.arange(frames - 1) + 0.5) / fps
        speeds = np.full(len(times), self.segments[0].speed)
        for before, after in zip(self.segments, self.segments[1:]):
            if self.ramp > 0:
                u = np.clip((times - (after.start - self.ramp / 2)) / self.ramp, 0.0, 1.0)
                blend = 0.5 - 0.5 * np.cos(np.pi * u)
            else:
                blend = (times >= after.start).astype(float)
            speeds = speeds + (after.speed - before.speed) * blend
        return speeds

    def segment_index(self, frames: int, fps: float) -> np.ndarray:
        """(frames,) index of the segment each frame's time falls in."""
        starts = np.array([s.start for s in self.segments])
        return np.searchsorted(starts, np.arange(frames) / fps, side="right") - 1

    def to_dict(self) -> dict:
        return {"ramp_s": self.ramp, "segments": [asdict(s) for s in self.segments]}


@dataclass(frozen=True)
class FigureEight:
    """Angles (yaw, pitch, roll) in degrees, relative to the photo, at phase p."""

    yaw: float = 12.0
    roll: float = 12.0
    pitch: float = 0.0

    def angles(self, phase: float) -> np.ndarray:
        return np.array([self.yaw * np.sin(phase), self.pitch * np.sin(3 * phase), self.roll * np.sin(2 * phase)])

    def rotation(self, phase: float) -> Rotation:
        return applied_rotation(*self.angles(phase))


def follow(path: FigureEight, step_speeds: np.ndarray, fps: float, phase: float = 0.0, direction: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Phases (T,) and angles (T, 3) of a trajectory along `path` from `phase` whose step t turns
    the head by exactly `step_speeds[t] / fps` degrees (geodesic)."""
    phases = [phase]
    for speed in step_speeds:
        target = np.radians(speed) / fps
        if target <= 0:
            phases.append(phases[-1])
            continue
        here = path.rotation(phases[-1])

        def turned(d: float) -> float:
            return (here.inv() * path.rotation(phases[-1] + direction * d)).magnitude()

        # the turned angle grows almost linearly with the phase step: secant from a linear guess
        d0, a0 = 0.0, 0.0
        d1 = target / max(turned(1e-4) / 1e-4, 1e-9)
        a1 = turned(d1)
        for _ in range(20):
            if abs(a1 - target) <= 1e-9 * target + 1e-14 or a1 == a0:
                break
            d0, a0, d1 = d1, a1, d1 + (target - a1) * (d1 - d0) / (a1 - a0)
            a1 = turned(d1)
        phases.append(phases[-1] + direction * d1)
    phases = np.array(phases)
    return phases, np.stack([path.angles(p) for p in phases])


def trajectory_speed(angles: np.ndarray, fps: float) -> np.ndarray:
    """(T,) deg/s of applied angles (T, 3), by the annotator's own definition."""
    return rotation_speed(applied_rotation(*np.asarray(angles, np.float64).T), fps)
