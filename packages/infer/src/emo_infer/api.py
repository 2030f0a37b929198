"""`generate`: portrait + audio -> mp4. Every input is checked before the model is loaded."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .config import InferConfig
from .errors import InferError

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


def generate(cfg: InferConfig | None = None, **options) -> GenerationResult:
    """Animate `image` with `audio` into `out` (see `InferConfig` for the options).

        generate(checkpoint="runs/s3", image="me.jpg", audio="song.m4a", out="me.mp4", speed=15)
    """
    import time

    import torch

    if cfg is not None and options:
        raise TypeError("generate() takes an InferConfig or keyword options, not both")
    cfg = cfg if cfg is not None else InferConfig(**options)
    from emo_annotate.media import VideoWriter

    from .audio import audio_features, clip_count, load_audio, make_featurizer
    from .checkpoint import load_weights, open_checkpoint
    from .pipeline import EMOPipeline, resolve_device
    from .portrait import prepare_portrait
    from .speed import speed_track

    # --- cheap checks first: a bad input fails in seconds, before any weights are loaded
    started = time.perf_counter()
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
    portrait = prepare_portrait(cfg.image, size, info.crop_scale, cfg.mask_scale, info.annotation.get("landmarks") or "mediapipe")
    if info.stage < 2:
        logger.warning("a stage-%d checkpoint: its temporal layers and audio attention are untrained, "
                       "the video will not follow the audio (use the stage-3 run)", info.stage)
    if speed is not None and info.stage < 3:
        logger.warning("the checkpoint is from stage %d: its speed layers are untrained, --speed has no learnt effect", info.stage)
    if cfg.audio_encoder is not None and info.audio_features.get("kind") != "wav2vec2":
        logger.warning("--audio-encoder ignored: the checkpoint was trained on %s features", info.audio_features.get("kind"))
    if speed is None and info.stage == 3:
        logger.warning("stage-3 checkpoint without --speed: no head-speed conditioning (try --speed 10..20)")
    prepared = time.perf_counter()

    # --- heavy work
    featurizer = make_featurizer(info.audio_features, cfg.audio_encoder, str(device))
    clips = clip_count(driving.num_frames, cfg.frames_per_clip)
    features = audio_features(featurizer, driving.samples, driving.num_frames, info.fps)
    featurized = time.perf_counter()
    model, vae, scheduler = load_weights(info, device, dtype)
    expected = tuple(model.audio_projection.config.feature_shape)
    if tuple(features.shape[1:]) != expected:
        raise InferError(f"the audio features are {list(features.shape[1:])}, the model expects {list(expected)}")
    pipeline = EMOPipeline(model, vae, scheduler, device, dtype)
    loaded = time.perf_counter()

    frames = pipeline.generate(
        portrait.pixels, portrait.mask, features, speed, driving.num_frames, steps=cfg.steps, guidance=cfg.guidance,
        seed=cfg.seed, frames_per_clip=cfg.frames_per_clip, motion_frames=cfg.motion_frames, progress=cfg.progress,
    )
    try:
        with VideoWriter(partial, info.fps, audio=driving.track, audio_rate=driving.track_rate, crf=cfg.crf) as writer:
            for rgb in frames:
                writer.add(rgb)
        os.replace(partial, cfg.out)  # a failed or interrupted run never leaves a half-written video at --out
    except torch.OutOfMemoryError:
        raise InferError(f"out of {device.type} memory at {size}x{size}: lower --size or --frames-per-clip, "
                         "or use --dtype float16/bfloat16") from None
    finally:
        partial.unlink(missing_ok=True)
    finished = time.perf_counter()

    seconds = {
        "inputs": prepared - started,
        "features": featurized - prepared,
        "load": loaded - featurized,
        **pipeline.timings.seconds,
        "total": finished - started,
    }
    seconds["write_and_other"] = (finished - loaded) - sum(pipeline.timings.seconds.values())
    return GenerationResult(cfg.out, writer.frames, info.fps, size, clips, driving.seconds, dict(seconds))
