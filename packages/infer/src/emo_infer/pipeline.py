"""Clip-by-clip generation: the reference through the ReferenceNet once per video, each clip's
motion frames once per clip, DDIM with classifier-free guidance on the audio (and optionally the
head speed), VAE decoding per clip.

    portrait (S, S, 3) --VAE--> reference latent --ReferenceNet--> reference attention features
    for each clip of f frames:
        motion = the previous clip's last n frames --VAE--> latents --ReferenceNet--> motion features
                 (zeros for the first clip)
        noise (1, 4, f, S/8, S/8) --DDIM x steps: EMOModel.denoise [uncond | cond (| no speed)]--> latents --VAE--> frames

Motion frames are re-encoded from the decoded pixels, as training encodes real frames, rather
than taken as the previous clip's raw final latents (BENCHMARKS.md has the measurement).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from emo_train.models.reference_net import ReferenceFeatures

from .errors import InferError

logger = logging.getLogger(__name__)


def resolve_device(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """`auto` device: the first GPU if any; `auto` dtype: float16 on a GPU, float32 on the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise InferError(f"--device: unknown device {device!r} (cpu, cuda, cuda:1, ...)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InferError(f"--device {device}: no CUDA device available")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise InferError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise InferError(f"--device {device}: MPS is not available")
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise InferError(f"--device {device}: use cpu, cuda[:N] or mps")
    if dtype == "auto":
        dtype = "float16" if resolved.type == "cuda" else "float32"
    if dtype == "float16" and resolved.type == "cpu":
        raise InferError("--dtype float16 needs a GPU; use bfloat16 or float32 on the CPU")
    return resolved, getattr(torch, dtype)


@dataclass
class Timings:
    """Seconds spent per part of the generation (GPU work synchronised before reading the clock)."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def measure(self, part: str, device: torch.device):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        yield
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.seconds[part] += time.perf_counter() - start


class EMOPipeline:
    """An EMO model with its VAE and DDIM scheduler, ready to animate portraits."""

    def __init__(self, model, vae, scheduler, device: torch.device, dtype: torch.dtype):
        self.model, self.vae, self.scheduler = model, vae, scheduler
        self.device, self.dtype = device, dtype
        self.timings = Timings()

    @torch.inference_mode()
    def encode_frames(self, rgb: np.ndarray) -> torch.Tensor:
        """(k, S, S, 3) uint8 -> (1, 4, k, S/8, S/8) latents (the posterior means, scaled as in training)."""
        pixels = torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).to(self.device, self.dtype) / 127.5 - 1.0
        latents = self.vae.encode(pixels).latent_dist.mode() * self.vae.config.scaling_factor  # (k, 4, h, w)
        return latents.transpose(0, 1)[None]

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """(1, 4, f, h, w) -> (f, H, W, 3) uint8."""
        flat = latents[0].transpose(0, 1) / self.vae.config.scaling_factor  # (f, 4, h, w)
        pixels = self.vae.decode(flat.to(self.dtype)).sample.float()  # (f, 3, H, W) in [-1, 1]
        return ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    @torch.inference_mode()
    def generate(
        self,
        reference: np.ndarray,  # (S, S, 3) uint8 portrait crop
        mask: np.ndarray,  # (S, S) uint8 face mask
        audio_features: np.ndarray,  # (N, *feature_shape) per output frame (at least N; more are ignored)
        speed: np.ndarray | None,  # (N,) deg/s, or None
        num_frames: int,  # N: frames to output
        steps: int = 40,
        guidance: float = 3.5,
        speed_guidance: float = 1.0,
        init_strength: float = 1.0,
        seed: int = 0,
        frames_per_clip: int = 12,
        motion_frames: int = 4,
        progress: bool = True,
    ) -> Iterator[np.ndarray]:
        """Yield the video's frames, (S, S, 3) uint8, one clip at a time."""
        from tqdm.auto import tqdm

        model, device, dtype, timings = self.model, self.device, self.dtype, self.timings
        f, n = frames_per_clip, motion_frames
        if n + f > model.temporal.config.max_seq_length:
            raise ValueError(f"{n} motion + {f} frames exceed the model's {model.temporal.config.max_seq_length} temporal positions")
        clips = clip_count(num_frames, f)
        total = clips * f  # the last clip is generated whole and cut
        audio_features = _pad_frames(audio_features, total)
        speed = None if speed is None else _pad_frames(speed, total)
        context = model.audio_projection.config.context_frames

        size = reference.shape[0]
        latent_shape = (1, model.backbone.config.in_channels, f, size // 8, size // 8)
        face_mask = torch.from_numpy(mask.astype(np.float32) / 255.0)[None, None].to(device, dtype)  # (1, 1, S, S)
        halves = guidance_halves(guidance, speed_guidance, speed is not None)
        generator = torch.Generator("cpu").manual_seed(seed)

        with timings.measure("vae_encode", device):
            reference_latent = self.encode_frames(reference[None])[:, :, 0]  # (1, 4, h, w)
        # image-to-image: every clip starts from the portrait's latents on each of its frames
        init = reference_latent[:, :, None].expand(latent_shape) if init_strength < 1.0 else None  # (1, 4, f, h, w)
        with timings.measure("reference_net", device):
            features = model.encode_reference(reference_latent)  # zero motion features: the first clip
        if n != model.temporal.config.num_motion_frames:
            features = _zero_motion(features, n)
        # the guidance halves share the reference: repeated once per video, motion per clip
        batch_attention = _repeated(features.attention, halves) if halves > 1 else None

        steps_per_clip = len(denoising_timesteps(self.scheduler, steps, init_strength))
        bar = tqdm(total=clips * steps_per_clip, desc="generating", unit="step", disable=not progress)
        try:
            for clip in range(clips):
                bar.set_postfix(clip=f"{clip + 1}/{clips}")
                frames = slice(clip * f, (clip + 1) * f)
                if clip > 0:  # the previous clip's last frames, as the viewer sees them
                    with timings.measure("vae_encode", device):
                        motion_latents = self.encode_frames(pixels[-n:])  # (1, 4, n, h, w)
                    with timings.measure("reference_net", device):
                        features = model.encode_motion(features, motion_latents)
                audio = _clip_windows(audio_features, frames, context).to(device, dtype)  # (1, f, 2m+1, *shape)
                clip_speed = None if speed is None else torch.from_numpy(speed[frames])[None].to(device)
                noise = torch.randn(latent_shape, generator=generator)
                latents = self.denoise_clip(noise, features, batch_attention, audio, face_mask, clip_speed, steps, guidance,
                                            speed_guidance, bar, init, init_strength)
                with timings.measure("vae_decode", device):
                    pixels = self.decode(latents)  # (f, S, S, 3)
                keep = min(f, num_frames - clip * f)
                yield from pixels[:keep]
        finally:
            bar.close()

    @torch.inference_mode()
    def denoise_clip(
        self,
        noise: torch.Tensor,  # (1, 4, f, h, w) initial noise
        features: ReferenceFeatures,  # the reference's and this clip's motion features
        batch_attention: dict[str, torch.Tensor] | None,  # reference features twice (guidance), else None
        audio: torch.Tensor,  # (1, f, 2m+1, *shape)
        face_mask: torch.Tensor,  # (1, 1, S, S)
        speed: torch.Tensor | None,  # (1, f)
        steps: int,
        guidance: float,
        speed_guidance: float = 1.0,
        bar=None,
        init: torch.Tensor | None = None,  # (1, 4, f, h, w) latents to start from (image-to-image), or None
        init_strength: float = 1.0,  # share of the schedule run from `init`; 1 starts from pure noise
    ) -> torch.Tensor:
        """DDIM over one clip. With guidance each step is one batch [no audio, audio] and the
        prediction is uncond + guidance * (cond - uncond); with speed guidance too, a third half
        [audio, no speed] adds (speed_guidance - 1) * (cond - no_speed), which pushes the head
        further towards the requested speed than the model alone does. With `init` and
        `init_strength` below 1, only the last `init_strength` share of the steps runs, from
        `init` noised to the first of them (diffusers' image-to-image). Returns the clean latents
        (1, 4, f, h, w)."""
        model, device, dtype = self.model, self.device, self.dtype
        halves = guidance_halves(guidance, speed_guidance, speed is not None)
        keep_speed = None
        if halves > 1:  # one batch: [no audio, audio] (+ [audio, no speed])
            features = ReferenceFeatures(batch_attention, _repeated(features.motion, halves))
            audio = torch.cat([torch.zeros_like(audio), audio, audio][:halves])
            speed = None if speed is None else speed.repeat(halves, 1)
            face_mask = face_mask.repeat(halves, 1, 1, 1)
            if halves == 3:
                keep_speed = torch.tensor([1.0, 1.0, 0.0], device=device)
        timesteps = denoising_timesteps(self.scheduler, steps, init_strength, device)
        if init is not None and init_strength < 1.0:
            latents = self.scheduler.add_noise(init.to(device, dtype), noise.to(device, dtype), timesteps[:1])
        else:
            latents = noise.to(device, dtype) * self.scheduler.init_noise_sigma
        for t in timesteps:
            model_input = torch.cat([latents] * halves) if halves > 1 else latents
            with self.timings.measure("denoise", device):
                prediction = model.denoise(model_input, t, features, audio, face_mask, speed, keep_speed=keep_speed)
            if halves > 1:
                unconditional, conditional, *no_speed = prediction.chunk(halves)
                prediction = unconditional + guidance * (conditional - unconditional)
                if no_speed:
                    prediction = prediction + (speed_guidance - 1.0) * (conditional - no_speed[0])
            latents = self.scheduler.step(prediction, t, latents).prev_sample
            if bar is not None:
                bar.update(1)
        return latents


def denoising_timesteps(scheduler, steps: int, init_strength: float = 1.0, device=None) -> torch.Tensor:
    """The timesteps one clip is denoised through: the schedule of `steps` DDIM steps, less its
    first (noisiest) ones below strength 1; at least one step."""
    scheduler.set_timesteps(steps, device=device)
    kept = max(1, min(steps, round(steps * init_strength)))
    return scheduler.timesteps[steps - kept:]


def _pad_frames(values: np.ndarray, total: int) -> np.ndarray:
    """Cut the first axis to `total`, or extend it by repeating the last frame: the frames after
    the audio's end (the rest of the last clip, cut from the video) see what a training clip's
    end sees, its edge frame repeated."""
    if len(values) >= total:
        return values[:total]
    return np.concatenate([values, np.repeat(values[-1:], total - len(values), axis=0)])


def _clip_windows(features: np.ndarray, frames: slice, context: int) -> torch.Tensor:
    """Audio windows of one clip's frames, `(1, f, 2m+1, *shape)`, cut from the whole video's
    features (clip edges see their real neighbours; only the video's own ends repeat the edge
    frame). Built per clip: whole-video windows would hold 2m+1 copies of a long song's features."""
    from emo_train.models.windows import frame_windows

    lo, hi = max(0, frames.start - context), min(len(features), frames.stop + context)
    part = torch.from_numpy(np.ascontiguousarray(features[lo:hi], np.float32))[None]
    return frame_windows(part, context)[:, frames.start - lo : frames.stop - lo]


def clip_count(num_frames: int, frames_per_clip: int) -> int:
    return -(-num_frames // frames_per_clip)


def repeat_batch(features: ReferenceFeatures, times: int) -> ReferenceFeatures:
    """The features `times` over along the batch axis (for batched guidance)."""
    return ReferenceFeatures(_repeated(features.attention, times), _repeated(features.motion, times))


def guidance_halves(guidance: float, speed_guidance: float, has_speed: bool) -> int:
    """Batch entries per denoising step: 1 without guidance, 2 with the audio's ([no audio,
    audio]), 3 with speed guidance on a given speed ([no audio, audio, audio without speed])."""
    if speed_guidance != 1.0 and has_speed:
        return 3
    return 2 if guidance != 1.0 else 1


def _repeated(tensors: dict[str, torch.Tensor], times: int) -> dict[str, torch.Tensor]:
    return {k: v.repeat(times, *[1] * (v.ndim - 1)) for k, v in tensors.items()}


def _zero_motion(features: ReferenceFeatures, frames: int) -> ReferenceFeatures:
    """First-clip features with `frames` zero motion frames."""
    return ReferenceFeatures(
        features.attention,
        {k: v.new_zeros(v.shape[0], frames, *v.shape[2:]) for k, v in features.motion.items()},
    )
