"""Typed configuration of the training data pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

ShardSpec = Union[str, Path, Sequence[Union[str, Path]]]


@dataclass
class DataConfig:
    """What the trainer reads from the annotator's WebDataset shards, and how.

    Samples are streamed from the tar shards (no extracted frame folders); only the frames a
    sample needs are decoded from its `mp4`.
    """

    shards: ShardSpec
    """Where the shards are: an annotator output directory (its committed shards, those with
    stats), a directory of `*.tar` files, one shard path, a brace pattern
    (`shards/{00000..00003}-000.tar`), a local glob, an fsspec / webdataset URL
    (`s3://bucket/run/shards/00000-000.tar`, `pipe:curl -s ...`, an fsspec directory URL of an
    annotator output), or a list of any of these."""
    stage: int = 1
    """Training stage: 1 = images (reference frame + one target frame); 2 and 3 = video
    (`motion_frames` + `frames` consecutive frames, audio features, head speed)."""
    frames: int = 12
    """Target frames per video sample (stages 2-3)."""
    motion_frames: int = 4
    """Motion frames (the frames just before the targets) per video sample (stages 2-3)."""
    size: int = 512
    """Side in pixels the model trains at; frames and masks are resized (antialiased bilinear /
    area) when the shards were written at another size. A multiple of 8 (the VAE factor)."""
    audio_context: int = 2
    """m: audio features of frames f-m..f+m are given for every target frame f."""
    audio_windows: bool = True
    """True: `audio` is `[f, 2m+1, *feature_shape]`, the windows the model's AudioProjection
    takes, built with `emo_train.models.windows.frame_windows` over the whole clip (so windows at
    the sample's edges see the clip's real neighbouring frames). False: raw per-frame features
    `[f, *feature_shape]` of the target frames."""
    audio_feature_shape: tuple[int, ...] | None = None
    """Expected per-frame audio feature shape (`(n_mels*k,)` or `(layers, dim)`); samples with
    another shape are skipped as `bad_shape`. None accepts the first shape seen per batch."""
    shuffle_buffer: int = 64
    """Samples held for shuffling (raw, still encoded: a 10 s 512 px clip is a few MB). 0 turns
    shuffling off (shard order and sample order as stored; frame choices stay random)."""
    seed: int | None = 0
    """Seed of the shard order, the shuffle buffer, frame choices and condition dropout. Each
    epoch / node rank / loader worker derives its own stream from it. None: fresh entropy."""
    repeat: bool = False
    """Loop over the shards forever (reshuffled every pass) for step-based training."""
    drop_audio: float = 0.05
    """Probability that a sample's `drop_audio` flag is set (stages 2-3): train without audio
    conditioning, the unconditional half of inference's audio guidance. The pipeline only draws
    flags; the trainer applies them."""
    drop_motion: float = 0.1
    """Probability of the `drop_motion` flag (stages 2-3): use zero motion frames, as for the
    first clip at inference."""
    drop_speed: float = 0.1
    """Probability of the `drop_speed` flag (stages 2-3; stage 3 trains with speed): train
    without head-speed conditioning, which inference uses when no speed is given."""
    clip_cache_mb: float = 0.0
    """Memory (MB) per loader process for whole decoded clips (`DecodedClipCache`): each clip
    is decoded once and its frames reused while they fit, instead of decoding up to the
    sample's last frame for every sample. For sets drawn from many times that fit in memory
    (a 6 s 256 px clip is 29 MB); 0 turns it off."""

    def __post_init__(self) -> None:
        if self.stage not in (1, 2, 3):
            raise ValueError(f"stage must be 1, 2 or 3, got {self.stage}")
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.motion_frames < 0:
            raise ValueError(f"motion_frames must be >= 0, got {self.motion_frames}")
        if self.size < 8 or self.size % 8:
            raise ValueError(f"size must be a positive multiple of 8, got {self.size}")
        if self.audio_context < 0:
            raise ValueError(f"audio_context must be >= 0, got {self.audio_context}")
        if self.clip_cache_mb < 0:
            raise ValueError(f"clip_cache_mb must be >= 0, got {self.clip_cache_mb}")
        if self.shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {self.shuffle_buffer}")
        for name in ("drop_audio", "drop_motion", "drop_speed"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        if self.audio_feature_shape is not None:
            self.audio_feature_shape = tuple(int(d) for d in self.audio_feature_shape)
        if isinstance(self.shards, (str, Path)):
            pass
        elif isinstance(self.shards, Sequence):
            self.shards = list(self.shards)
            if not self.shards:
                raise ValueError("shards: empty list")
        else:
            raise ValueError(f"shards must be a path, URL, pattern or a list of them, got {type(self.shards).__name__}")

    @property
    def video(self) -> bool:
        """Stages 2-3 read windows of consecutive frames; stage 1 reads single frames."""
        return self.stage >= 2

    @property
    def min_clip_frames(self) -> int:
        """The shortest clip a sample can be drawn from."""
        return self.motion_frames + self.frames if self.video else 2
