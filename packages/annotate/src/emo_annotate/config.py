"""Typed configuration of an annotation run.

`AnnotateConfig` holds everything that changes what ends up in the shards; it is stored in the
run's manifest and a rerun into the same output directory must use the same one. `RunConfig`
adds how the work is executed (cluster address, workers), which may change between reruns.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, get_args

from .errors import ConfigError

AudioFeatureKind = Literal["mel", "wav2vec2"]
LandmarkBackend = Literal["mediapipe", "fan"]
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
"""libx264's speed presets, fastest first."""


@dataclass(frozen=True)
class MelConfig:
    """Log-mel features; `frames_per_video_frame` mel frames are concatenated per video frame."""

    n_mels: int = 80
    """Number of mel bands."""
    n_fft: int = 400
    """STFT window length in samples at 16 kHz (25 ms)."""
    frames_per_video_frame: int = 4
    """Mel frames per video frame; the hop is 16000 / fps / this (160 samples = 10 ms at 25 fps)."""


@dataclass(frozen=True)
class Wav2Vec2Config:
    """Hidden states of a `transformers` Wav2Vec2Model, interpolated to the video frame rate."""

    model: str = "facebook/wav2vec2-base-960h"
    """Local path or hub id passed to `from_pretrained` (no download happens in tests)."""
    layers: tuple[int, ...] | None = None
    """Hidden-state indices to keep (0 = CNN feature projection); None keeps all of them."""


@dataclass(frozen=True)
class ClipConfig:
    """How a video is cut into training clips."""

    min_frames: int = 16
    """Shortest clip: 4 motion frames + 12 target frames, as EMO trains on."""
    max_seconds: float = 10.0
    """Longer face tracks are split into near-equal clips no longer than this."""
    scene_cut_threshold: float = 0.35
    """L1 distance (0..2) between consecutive grey-level histograms that counts as a cut."""
    min_track_iou: float = 0.3
    """Consecutive face boxes overlapping less than this break the face track."""
    max_spurious_face_frames: int = 3
    """A second face seen on at most this many consecutive frames inside a one-face track is
    taken for a detector false positive; longer, and the track ends (several faces)."""
    min_audio_coverage: float = 0.9
    """Share of a frame's sound that must be decoded from the source (not the zeros put where
    it has none: before the sound starts, in holes); frames below it end clips ("no audio")."""
    max_still_seconds: float = 0.25
    """Longer stretches without a new picture (stalls, freeze frames) end clips ("frozen
    picture") and are reported as dropped."""
    still_threshold: float = 0.3
    """Mean absolute difference (grey levels, 32x32 face patch) below which a frame shows the
    same picture as the one before (a repeated frame re-encoded differs by less)."""
    min_picture_rate: float = 20.0
    """New pictures per second a clip needs; fewer (sources below 20 fps, stuttering streams)
    and the clip is dropped: its frames repeat while the speech goes on."""
    min_face_fraction: float = 0.3
    """Smallest median face side over crop side (crop_scale 2 gives 0.5 for a still face); a face
    moving across the frame widens the fixed crop, and such clips are halved or dropped."""
    min_frame_face_fraction: float = 0.2
    """Smallest face side over crop side on any frame of a clip (halved or dropped like above).
    It also bounds what the one-pass annotator keeps of each frame while a clip is open: the
    square of `face side / this` around the face, which then always holds the clip's crop."""
    jump_cut_min_step: float = 0.04
    """A jump cut moves the landmarks at least this far between two frames (median over the
    points, in face sides) ..."""
    jump_cut_ratio: float = 4.0
    """... and this many times the median step of the frames around it."""
    jump_cut_context: int = 6
    """Frames on each side that give that median step."""
    crop_scale: float = 2.0
    """Side of the square crop as a multiple of the largest face-box side over the clip."""
    smoothing_seconds: float = 0.28
    """Savitzky-Golay window for pose smoothing (zero-phase, so no lag)."""


@dataclass(frozen=True)
class AnnotateConfig:
    """Everything that determines the content of the shards."""

    fps: float = 25.0
    """Constant output frame rate; source frames are dropped or repeated to reach it."""
    size: int = 512
    """Side in pixels of the square face-centred crop stored in `mp4`."""
    audio_features: AudioFeatureKind = "mel"
    """Kind of `audio.npy`: log-mel (no weights needed) or wav2vec2 hidden states."""
    landmarks: LandmarkBackend = "mediapipe"
    """3D landmark backend: MediaPipe face mesh (468 points) or face-alignment's 3D FAN (68)."""
    detect_max_side: int = 1280
    """Frames are downscaled to this long side before face detection (speed; 0 = off). 720p
    sources are not scaled: converting them to RGB costs less than converting a smaller copy."""
    detect_every: int = 4
    """Inside a steady face track the full-range face detector checks one frame in this many (and
    every frame where the face mesh loses or finds a face or jumps); 1 = every frame. 4 =
    `clip.max_spurious_face_frames` + 1: a second face long enough to end a clip is always seen
    (`tracking.FaceTracker`)."""
    crf: int = 18
    """H.264 constant rate factor of the stored clips."""
    x264_preset: str = "veryfast"
    """libx264 speed preset of the stored clips."""
    store_landmarks: bool = True
    """Write `lmk.npy` (float16 landmarks in crop pixels)."""
    shard_size: int = 100
    """Maximum clips per shard."""
    videos_per_task: int = 4
    """At most this many input videos per unit of work (fewer when workers would idle); each
    unit writes its own shards and commits atomically. The plan is fixed at the first run."""
    clip: ClipConfig = field(default_factory=ClipConfig)
    mel: MelConfig = field(default_factory=MelConfig)
    wav2vec2: Wav2Vec2Config = field(default_factory=Wav2Vec2Config)

    def __post_init__(self) -> None:
        """Values the encoder, the detectors or the planner cannot take are refused here, so a
        Python caller gets the same one-line error as the CLI, not a failure deep in a worker."""
        checks = (
            (self.size >= 16 and self.size % 16 == 0, f"--size must be a multiple of 16 (H.264 macroblocks), not {self.size}"),
            (self.fps > 0, f"--fps must be > 0, not {self.fps}"),
            (self.audio_features in get_args(AudioFeatureKind),
             f"--audio-features must be mel or wav2vec2, not {self.audio_features!r}"),
            (self.landmarks in get_args(LandmarkBackend), f"--landmarks must be mediapipe or fan, not {self.landmarks!r}"),
            (self.x264_preset in X264_PRESETS,
             f"--x264-preset must be one of {', '.join(X264_PRESETS)}, not {self.x264_preset!r}"),
            (0 <= self.crf <= 51, f"crf must be in 0..51 (libx264), not {self.crf}"),
            (self.shard_size >= 1 and self.videos_per_task >= 1 and self.detect_every >= 1,
             "--shard-size, --videos-per-task and detect_every must be >= 1"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AnnotateConfig":
        data = dict(data)
        clip = ClipConfig(**data.pop("clip", {}))
        mel = MelConfig(**data.pop("mel", {}))
        w2v = dict(data.pop("wav2vec2", {}))
        if w2v.get("layers") is not None:
            w2v["layers"] = tuple(w2v["layers"])
        return cls(clip=clip, mel=mel, wav2vec2=Wav2Vec2Config(**w2v), **data)


@dataclass(frozen=True)
class RunConfig:
    """How a run executes; may differ between a run and its resumption."""

    address: str | None = None
    """Ray cluster address; None starts a local Ray instance."""
    num_workers: int = 2
    """Annotator actors (each holds its own models)."""
    max_retries: int = 2
    """Times a video is annotated again after its worker died on it (a crash, out of memory, a
    lost node); then it gets a `failed` row and its unit goes on without it. A unit whose worker
    died between videos, or whose own code failed, is retried as often before it is given up."""
    progress: bool = True
    """Show a progress bar."""
