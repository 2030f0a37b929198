"""Rendering a talking head: per frame the mouth rig opens the jaw, the head rig turns the head;
the video (H.264 with the recording as AAC) and its per-frame ground truth (JSON) are written
under temporary names and renamed into place, the JSON last (its presence marks a finished pair).
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from .. import __version__
from ..media import AUDIO_RATE, VideoWriter
from ..pose import fit_pose, rotations_to_euler
from .head import HeadRig, applied_rotation
from .identities import Identity
from .loudness import LoudnessConfig, frame_count, mouth_opening
from .motion import SPEED_LEVELS, FigureEight, SpeedProfile, follow, trajectory_speed
from .mouth import MouthRig


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides how a (photo, recording) pair is rendered."""

    size: int = 256
    """Side of the square output frame in pixels."""
    face_fraction: float = 0.4
    """Face (landmark box side) as a fraction of the frame side."""
    fps: float = 25.0
    """Frame rate of the video."""
    max_gap: float = 0.10
    """Gap between the lips at the mouth's centre at opening 1, in face heights (forehead to chin)."""
    mouth_levels: int = 65
    """Openings precomputed between closed and open; a frame draws the nearest (steps of 1/64)."""
    loudness: LoudnessConfig = field(default_factory=LoudnessConfig)
    """How the recording's loudness becomes the opening."""
    yaw_amplitude: float = 12.0
    """Degrees of yaw at the ends of the figure-eight path (relative to the photo)."""
    roll_amplitude: float = 12.0
    """Degrees of roll at the ends of the path."""
    pitch_amplitude: float = 0.0
    """Degrees of pitch along the path (0: the photo's own pitch throughout)."""
    speed_levels: dict[str, float] = field(default_factory=lambda: dict(SPEED_LEVELS))
    """Head speeds (deg/s) the segments of a varied profile cycle through."""
    segment_seconds: tuple[float, float] = (1.2, 2.4)
    """Shortest and longest segment of a varied speed profile."""
    ramp_seconds: float = 0.3
    """Raised-cosine change of speed between segments."""
    crf: int = 18
    """H.264 constant rate factor."""
    grain: float = 3.0
    """Sensor noise, sigma in grey levels, new in every frame (seeded by the file name), in blocks
    of size / 128 pixels: a camera never shows one picture twice, and the annotator takes a
    repeated picture for a stall."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def varied_profile(self, seconds: float, seed: int) -> SpeedProfile:
        return SpeedProfile.varied(seconds, seed, self.speed_levels, self.segment_seconds, self.ramp_seconds)

    @property
    def path(self) -> FigureEight:
        return FigureEight(yaw=self.yaw_amplitude, roll=self.roll_amplitude, pitch=self.pitch_amplitude)


class TalkingHead:
    """One identity, ready to render frames: `frame(opening, angles)`."""

    def __init__(self, identity: Identity, cfg: SynthConfig):
        self.identity = identity
        self.cfg = cfg
        self.mouth = MouthRig(identity, cfg.max_gap, cfg.mouth_levels)
        self.head = HeadRig(identity)
        # the photo's own head pose as the annotator's fit sees its landmarks
        self.photo_rotation = Rotation.from_matrix(fit_pose(identity.landmarks, "mediapipe")[0])
        self._face = identity.image.copy()  # the frame before the head turns; the mouth rig owns its lower face
        self._angles: tuple | None = None
        self._map: np.ndarray | None = None

    def frame(self, opening: float, angles: np.ndarray) -> tuple[np.ndarray, float]:
        """(S, S, 3) uint8 RGB with the mouth at `opening` and the head turned by `angles` (yaw,
        pitch, roll in degrees, relative to the photo); and the opening drawn."""
        drawn = self.mouth.apply(self._face, opening)
        key = tuple(float(a) for a in angles)
        if not any(key):
            return self._face.copy(), drawn
        if key != self._angles:  # a still head reuses its map
            self._map = self.head.backward_map(applied_rotation(*key), key[2])
            self._angles = key
        return cv2.remap(self._face, self._map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), drawn


def render_video(
    head: TalkingHead,
    audio: np.ndarray,
    out: Path,
    profile: SpeedProfile | None = None,
    phase: float = 0.0,
    direction: int = 1,
    recording: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """Render `audio` (float32 mono, 16 kHz) spoken by `head` into `out` (.mp4) and its ground
    truth into `out` with suffix .json; returns the ground truth.

    `profile` (default: still) sets the head speed; the head starts at `phase` of the path and
    runs along it in `direction` (+1 / -1). `recording` describes the audio, `extra` is stored as is.
    """
    cfg = head.cfg
    fps = cfg.fps
    frames = frame_count(audio, fps)
    profile = profile or SpeedProfile.constant(0.0, frames / fps)
    opening, loudness, reference = mouth_opening(audio, frames, fps, cfg.loudness)
    phases, angles = follow(cfg.path, profile.step_speeds(frames, fps), fps, phase, direction)
    speed = trajectory_speed(angles, fps)
    pose = rotations_to_euler(applied_rotation(*angles.T) * head.photo_rotation)

    out = Path(out)
    video_tmp = out.with_name(f".{out.stem}.partial.mp4")
    json_out = out.with_suffix(".json")
    json_tmp = out.with_name(f".{out.stem}.partial.json")
    drawn = np.zeros(frames)
    grain = np.random.default_rng(zlib.crc32(out.name.encode()))
    try:
        # x264's own settings (macroblock tree on): at the set's sizes (256, 512 px) they give the
        # same bytes every time, and they are what LEARNING.md's recorded runs trained on. The
        # same set encoded without the tree trains a model that misses the speed margin (27.7 /
        # 41.9 / 45.5 deg/s), so the set keeps them
        with VideoWriter(video_tmp, fps, audio=audio, audio_rate=AUDIO_RATE, crf=cfg.crf, x264_params=None) as writer:
            for t in range(frames):
                rgb, drawn[t] = head.frame(opening[t], angles[t])
                writer.add(_with_grain(rgb, grain, cfg.grain))
        truth = {
            "format": "emo-annotate synth ground truth v1",
            "annotator_version": __version__,
            "video": out.name,
            "identity": {"name": head.identity.name, "source": head.identity.source,
                         "frame_box_photo_px": list(head.identity.frame_box),
                         "photo_pose": [round(float(a), 4) for a in rotations_to_euler(Rotation.concatenate([head.photo_rotation]))[0]]},
            "recording": recording or {},
            "fps": fps,
            "frames": frames,
            "size": cfg.size,
            "seconds": frames / fps,
            "audio_rate": AUDIO_RATE,
            "config": cfg.to_dict(),
            "speed_profile": {**profile.to_dict(), "start_phase": phase, "direction": direction},
            "mouth": {"gap_px_at_opening_1": round(head.mouth.jaw_drop, 4), "reference_dbfs": reference},
            "pose_convention": "yaw, pitch, roll in degrees as emo_annotate.pose (intrinsic YXZ; +yaw face to "
            "image right, +pitch chin up, +roll counter-clockwise); absolute = applied rotation after the photo's "
            "own pose (the annotator's fit on the photo's landmarks); speed = geodesic angle between the "
            "rotations of frames t-1 and t+1 over 2 / fps (deg/s), the first and last frames use their one neighbour",
            **(extra or {}),
            "per_frame": {
                "opening": _rounded(drawn, 6),
                "opening_target": _rounded(opening, 6),
                "loudness_dbfs": _rounded(loudness, 3),
                "yaw": _rounded(pose[:, 0], 4),
                "pitch": _rounded(pose[:, 1], 4),
                "roll": _rounded(pose[:, 2], 4),
                "applied_yaw": _rounded(angles[:, 0], 4),
                "applied_pitch": _rounded(angles[:, 1], 4),
                "applied_roll": _rounded(angles[:, 2], 4),
                "speed": _rounded(speed, 4),
                "segment": profile.segment_index(frames, fps).tolist(),
            },
        }
        json_tmp.write_text(json.dumps(truth))
        os.replace(video_tmp, out)
        os.replace(json_tmp, json_out)
    finally:
        for tmp in (video_tmp, json_tmp):
            tmp.unlink(missing_ok=True)
    return truth


def _rounded(values: np.ndarray, digits: int) -> list[float]:
    return [round(float(v), digits) for v in values]


def load_truth(path: Path) -> dict:
    """The ground truth of a rendered video (`.mp4` or `.json` path), per-frame lists as arrays."""
    truth = json.loads(Path(path).with_suffix(".json").read_text())
    truth["per_frame"] = {k: np.asarray(v) for k, v in truth["per_frame"].items()}
    return truth


def _with_grain(rgb: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """(h, w, 3) uint8 with grey sensor noise of `sigma` grey levels added (see SynthConfig.grain)."""
    if sigma <= 0:
        return rgb
    h, w = rgb.shape[:2]
    # in blocks, as a camera's noise after demosaicing: H.264 keeps it, where it smooths away
    # most pixel-wise noise of this strength
    block = max(1, round(h / 128))
    noise = rng.normal(0.0, sigma, (-(-h // block), -(-w // block), 1)).astype(np.float32)
    noise = noise.repeat(block, 0).repeat(block, 1)[:h, :w]
    return np.clip(rgb + noise, 0, 255).astype(np.uint8)
