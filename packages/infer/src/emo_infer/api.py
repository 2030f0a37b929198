"""`generate`: portrait + audio -> mp4. Every input is checked before the model is loaded."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import InferConfig
from .errors import InferError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from .audio import DrivingAudio
    from .checkpoint import CheckpointInfo
    from .portrait import Portrait

logger = logging.getLogger(__name__)

CONTAINERS = {".mp4", ".mov", ".m4v", ".mkv"}  # containers that hold H.264 with AAC


@dataclass(frozen=True)
class GenerationResult:
    out: Path
    frames: int
    fps: float
    size: int
    clips: int
    audio_seconds: float
    seconds: dict[str, float]  # wall time by part: load, features, vae_encode, reference_net, denoise, vae_decode, ...


def open_video_writer(path: Path, fps: float, driving: "DrivingAudio", crf: int):
    """The output's writer: H.264 with the input's sound; the stream depends on the frames alone
    (`emo_annotate.media.VideoWriter`'s default encoder settings)."""
    from emo_annotate.media import VideoWriter

    return VideoWriter(path, fps, audio=driving.track, audio_rate=driving.track_rate, crf=crf)


def check_output(out: Path) -> Path:
    """Create the output's folder and prove it writable now (not after minutes of generation);
    returns the temporary path the video is written to before it replaces `out`."""
    if out.is_dir():
        raise InferError(f"--out: {out} is a directory; give a file name such as {out / 'video.mp4'}")
    if out.suffix.lower() not in CONTAINERS:
        raise InferError(f"--out: {out.name}: write an H.264 + AAC video as {', '.join(sorted(CONTAINERS))}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.stem}.partial{out.suffix}")
        partial.touch()
        partial.unlink()
    except OSError as err:
        raise InferError(f"--out: cannot write {out}: {err.strerror or err}") from None
    return partial


@dataclass
class PreparedInputs:
    """Every input, checked and decoded; nothing heavy loaded yet."""

    info: "CheckpointInfo"
    partial: Path  # where the video is written before it replaces --out
    device: "torch.device"
    dtype: "torch.dtype"
    size: int
    driving: "DrivingAudio"
    speed: "np.ndarray | None"  # (frames,) deg/s
    portrait: "Portrait"


def prepare_inputs(cfg: InferConfig) -> PreparedInputs:
    """The cheap checks, in order of cost: a bad input fails in seconds, before weights load."""
    from .audio import load_audio
    from .checkpoint import open_checkpoint
    from .pipeline import resolve_device
    from .portrait import prepare_portrait
    from .speed import speed_track

    info = open_checkpoint(cfg.checkpoint)
    if cfg.motion_frames + cfg.frames_per_clip > info.temporal_positions:
        raise InferError(
            f"--motion-frames + --frames-per-clip = {cfg.motion_frames + cfg.frames_per_clip} exceed the "
            f"model's {info.temporal_positions} temporal positions"
        )
    if cfg.steps > info.train_timesteps:
        raise InferError(f"--steps must be at most {info.train_timesteps} (the training noise schedule)")
    partial = check_output(cfg.out)
    device, dtype = resolve_device(cfg.device, cfg.dtype)
    size = cfg.size or info.train_size
    driving = load_audio(cfg.audio, info.fps)
    speed = speed_track(cfg.speed, driving.num_frames)
    landmarks = info.annotation.get("landmarks") or "mediapipe"  # boxes as the training data's detector drew them
    portrait = prepare_portrait(cfg.image, size, info.crop_scale, cfg.mask_scale, landmarks)
    _check_conditioning(cfg, info, speed is not None)
    return PreparedInputs(info, partial, device, dtype, size, driving, speed, portrait)


def _check_conditioning(cfg: InferConfig, info, has_speed: bool) -> None:
    if info.stage < 2:
        logger.warning("a stage-%d checkpoint: its temporal layers and audio attention are untrained, "
                       "the video will not follow the audio (use the stage-3 run)", info.stage)
    if has_speed and info.stage < 3:
        logger.warning("the checkpoint is from stage %d: its speed layers are untrained, --speed has no learnt effect", info.stage)
    if cfg.speed_guidance != 1.0:
        if not has_speed:
            logger.warning("--speed-guidance has no effect without --speed")
        elif info.stage == 3 and info.drop_speed == 0:
            raise InferError("--speed-guidance needs a stage-3 checkpoint trained with speed dropout (its speed-free "
                             "prediction); this one was trained with a speed on every clip")
    if not has_speed and info.stage == 3 and info.drop_speed == 0:
        # its temporal layers never ran without speed tokens: that input is out of distribution
        raise InferError("this stage-3 checkpoint was trained with a head speed on every clip: pass --speed "
                         "(deg/s, e.g. 15; emo-annotate stats shows the training range)")
    if cfg.audio_encoder is not None and info.audio_features.get("kind") != "wav2vec2":
        logger.warning("--audio-encoder ignored: the checkpoint was trained on %s features", info.audio_features.get("kind"))


def generate(cfg: InferConfig | None = None, **options) -> GenerationResult:
    """Animate `image` with `audio` into `out` (see `InferConfig` for the options).

        generate(checkpoint="runs/s3", image="me.jpg", audio="song.m4a", out="me.mp4", speed=15)
    """
    import torch

    from .audio import audio_features, make_featurizer
    from .checkpoint import load_weights
    from .pipeline import EMOPipeline, clip_count

    if cfg is not None and options:
        raise TypeError("generate() takes an InferConfig or keyword options, not both")
    cfg = cfg if cfg is not None else InferConfig(**options)

    started = time.perf_counter()
    inputs = prepare_inputs(cfg)
    info, device = inputs.info, inputs.device
    prepared = time.perf_counter()

    featurizer = make_featurizer(info.audio_features, cfg.audio_encoder, str(device))
    features = audio_features(featurizer, inputs.driving.samples, inputs.driving.num_frames, info.fps)
    featurized = time.perf_counter()
    model, vae, scheduler = load_weights(info, device, inputs.dtype)
    if cfg.channels_last:
        from emo_train.models import use_channels_last

        for module in (model.backbone, model.reference_net, model.face_locator, vae):
            use_channels_last(module)
    if cfg.compile:
        model.compile_blocks()
    expected = tuple(model.audio_projection.config.feature_shape)
    if tuple(features.shape[1:]) != expected:
        raise InferError(f"the audio features are {list(features.shape[1:])}, the model expects {list(expected)}")
    pipeline = EMOPipeline(model, vae, scheduler, device, inputs.dtype)
    loaded = time.perf_counter()

    frames = pipeline.generate(
        inputs.portrait.pixels, inputs.portrait.mask, features, inputs.speed, inputs.driving.num_frames,
        steps=cfg.steps, guidance=cfg.guidance, speed_guidance=cfg.speed_guidance, init_strength=cfg.init_strength,
        seed=cfg.seed, frames_per_clip=cfg.frames_per_clip,
        motion_frames=cfg.motion_frames, progress=cfg.progress,
    )
    driving = inputs.driving
    try:
        with open_video_writer(inputs.partial, info.fps, driving, cfg.crf) as writer:
            for rgb in frames:
                writer.add(rgb)
        os.replace(inputs.partial, cfg.out)  # a failed or interrupted run never leaves a half-written video at --out
    except torch.OutOfMemoryError:
        raise InferError(f"out of {device.type} memory at {inputs.size}x{inputs.size}: lower --size or "
                         "--frames-per-clip, or use --dtype float16/bfloat16") from None
    finally:
        inputs.partial.unlink(missing_ok=True)
    finished = time.perf_counter()

    parts = dict(pipeline.timings.seconds)
    seconds = {
        "inputs": prepared - started,
        "features": featurized - prepared,
        "load": loaded - featurized,
        **parts,
        "write_and_other": (finished - loaded) - sum(parts.values()),
        "total": finished - started,
    }
    clips = clip_count(driving.num_frames, cfg.frames_per_clip)
    return GenerationResult(cfg.out, writer.frames, info.fps, inputs.size, clips, driving.seconds, seconds)
