"""The training loop of one EMO stage (single process, or one Ray Train worker of several).

One optimizer step = `grad_accum` micro-batches of `batch_size` clips per worker:

    uint8 frames (b, 3, f, S, S) --to the device, [-1, 1]--frozen VAE (or the latent cache)-->
        latents (b, 4, f, S/8, S/8) * scaling_factor
    noise ~ N(0, 1), t ~ U{0..999}, noisy = DDPM.add_noise(latents, noise, t)
    loss = MSE(EMOModel(noisy, t, reference, motion, audio, mask, speed), noise)   (epsilon prediction)

Stage 1 trains images (f = 1, temporal layers off, no audio); stages 2-3 train 12-frame clips
with 4 motion frames and audio, stage 3 also with head speed. Condition dropout flags drawn by
the data pipeline are applied here: zero audio features, zero motion features (exactly what a
first clip gets at inference), no speed (what inference does without --speed). The reference is
never dropped: inference's guidance is on the audio only, with the reference in both halves, so
a reference-free mode would be trained for nothing.

With `mixed_precision` the forward passes (VAE encoding included) run under autocast; weights,
gradients and AdamW's state stay float32 (fused AdamW on CUDA).

Reproducibility: weights of new layers, the data stream (`DataConfig.seed`), and noise /
timesteps (a dedicated generator per worker) are seeded. A checkpoint stores the generator
states and the number of micro-batches consumed; a resumed run rebuilds the (deterministic)
data stream and skips that many batches, so k steps + resume to N equals N steps straight.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel

from .checkpoint import (
    checkpoint_stage,
    holds_model,
    last_checkpoint,
    load_raw_weights,
    load_training_state,
    resolve_checkpoint,
    save_checkpoint,
)
from .config import VAE_STAGE, OptimOptions, TrainConfig, TrainError, stage_name
from .data import DataConfig, annotation_settings, make_dataloader, resolve_shards, shard_sample_metadata
from .latent_cache import LatentCache
from .models import STAGE_GROUPS, EMOModel, get_preset, load_motion_adapter, use_channels_last

logger = logging.getLogger(__name__)

METRICS = "metrics.jsonl"
SUMMARY = "summary.json"


# ---------------------------------------------------------------------------- construction


def check_inputs(cfg: TrainConfig) -> None:
    """Fail early, with one readable line, on inputs that would only break later (or inside Ray workers)."""
    shards = cfg.data.shards
    if "://" not in shards and not shards.startswith("pipe:") and not any(c in shards for c in "*?[{"):
        if not Path(shards).exists():
            raise TrainError(f"--shards: no such file or directory: {shards}")
    try:
        resolve_shards(shards)
    except ValueError as err:
        raise TrainError(f"--shards: {err}") from None
    if cfg.model.init_from is not None and not cfg.run.resume:
        init = resolve_checkpoint(cfg.model.init_from)
        if cfg.stage >= 2 and not holds_model(init):
            raise TrainError(f"--init-from {cfg.model.init_from}: a VAE-only checkpoint; stage {cfg.stage} "
                             f"starts from a stage-{cfg.stage - 1} run")
        check_motion_adapter_start(cfg, init)
    if cfg.run.resume and last_checkpoint(cfg.run.out) is None:
        raise TrainError(f"--resume: no checkpoint in {cfg.run.out}/checkpoints (no 'last' pointer)")
    if not cfg.run.resume and last_checkpoint(cfg.run.out) is not None:
        raise TrainError(f"{cfg.run.out} already holds checkpoints: pass --resume to continue it, or another --out")


def check_motion_adapter_start(cfg: TrainConfig, start: Path) -> None:
    """`--motion-adapter` over a checkpoint whose temporal layers were trained (stage 2 or 3) would
    silently replace them with AnimateDiff's: refuse."""
    stage = checkpoint_stage(start)
    if cfg.model.motion_adapter is not None and stage is not None and stage >= 2:
        raise TrainError(
            f"--motion-adapter would replace the trained temporal layers of the stage-{stage} checkpoint "
            f"{start}: leave it out (it only initialises them, before stage 2)"
        )


def preset_vae(preset: str, seed: int = 0) -> AutoencoderKL:
    """The preset's own VAE, randomly initialised (trained by `--stage vae`; SD's interface:
    4 latent channels, factor 8)."""
    config = get_preset(preset).vae
    if config is None:
        raise TrainError(f"the {preset} preset has no VAE of its own: pass --base-model (SD1.5 folder or hub id with vae/)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(**config)


def sd15_noise_scheduler() -> DDPMScheduler:
    """SD1.5's training noise schedule (scaled-linear betas, 1000 steps, epsilon prediction)."""
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        clip_sample=False,
    )


def _pretrained(loader, *args, what: str, **kwargs):
    """`from_pretrained` with a missing path / unknown hub id turned into a TrainError."""
    try:
        return loader(*args, **kwargs)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrainError(f"cannot load {what} from {args[0]}: {first}") from None


def build_model(cfg: TrainConfig, audio_feature_shape: tuple[int, ...], resume_from: Path | None) -> EMOModel:
    """The EMOModel to train: a resumed checkpoint, `init_from` (when it holds a model, not only a
    VAE), SD1.5 `base_model`, or a random preset."""
    options = cfg.model
    if resume_from is not None:
        return EMOModel.from_pretrained(resume_from)
    init = resolve_checkpoint(options.init_from) if options.init_from is not None else None
    if init is not None and holds_model(init):
        check_motion_adapter_start(cfg, init)
        model = _pretrained(EMOModel.from_pretrained, init, what="--init-from checkpoint")
    elif options.base_model is not None:
        preset = get_preset(options.preset, audio_feature_shape=audio_feature_shape)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.run.seed)  # new layers identical on every worker and every run
            model, _ = _pretrained(
                EMOModel.from_pretrained_base, options.base_model, options.motion_adapter, preset, what="--base-model"
            )
        return model
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.run.seed)
            return EMOModel.from_preset(get_preset(options.preset, audio_feature_shape=audio_feature_shape))
    if options.motion_adapter is not None:
        from diffusers import MotionAdapter

        adapter = _pretrained(MotionAdapter.from_pretrained, options.motion_adapter, what="--motion-adapter")
        load_motion_adapter(model.temporal, adapter)
    return model


def build_vae(cfg: TrainConfig, resume_from: Path | None) -> AutoencoderKL:
    """The VAE: `base_model`'s `vae/`, else the one stored with the checkpoint we start from (a
    `--stage vae` run, or any later stage), else the preset's own, randomly initialised."""
    if cfg.model.base_model is not None:
        return _pretrained(AutoencoderKL.from_pretrained, cfg.model.base_model, subfolder="vae", what="the VAE")
    init = resolve_checkpoint(cfg.model.init_from) if cfg.model.init_from else None
    for start in (resume_from, init):
        if start is not None and (start / "vae").is_dir():
            return _pretrained(AutoencoderKL.from_pretrained, start / "vae", what="the VAE")
    if cfg.stage != VAE_STAGE and cfg.model.preset != "tiny":
        # an untrained VAE makes latents a diffusion model cannot learn faces from
        raise TrainError(f"the {cfg.model.preset} preset needs a trained VAE: --init-from a --stage vae run, "
                         "or --base-model (SD1.5 folder or hub id with vae/)")
    return preset_vae(cfg.model.preset, cfg.run.seed)


def denoising_loss(
    prediction: torch.Tensor,  # (b, c, f, h, w) predicted noise
    noise: torch.Tensor,  # (b, c, f, h, w)
    timesteps: torch.Tensor,  # (b,)
    scheduler: DDPMScheduler,
    snr_gamma: float | None,
) -> torch.Tensor:
    """Epsilon MSE; with `snr_gamma`, each sample weighted by min(SNR(t), gamma) / SNR(t) (Min-SNR
    weighting, Hang et al. 2023: the many easy low-noise timesteps stop dominating the gradient,
    and training converges several times faster)."""
    if snr_gamma is None:
        return F.mse_loss(prediction, noise)
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]  # (b,)
    snr = alphas / (1 - alphas)
    weights = torch.clamp(snr, max=snr_gamma) / snr
    per_sample = (prediction - noise).pow(2).flatten(1).mean(1)  # (b,)
    return (weights * per_sample).mean()


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of all parameters, to check that data-parallel workers hold the same weights."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(parameter.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------------- trainer


def to_unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (any layout, on any device) -> float32 in [-1, 1] on the same device."""
    return pixels.to(torch.float32).div_(127.5).sub_(1.0)


def make_optimizer(parameters: list[torch.nn.Parameter], options: OptimOptions, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the stage's trainable parameters: one fused kernel per step on CUDA."""
    return torch.optim.AdamW(parameters, lr=options.lr, weight_decay=options.weight_decay, fused=device.type == "cuda")


class TrainingForward(torch.nn.Module):
    """The training step's model call as one module call (what DDP wraps).

    Motion dropout must look like a first clip at inference, where the temporal layers get *zero
    motion features* (not the ReferenceNet's features of black frames): so the ReferenceNet runs
    on the real motion latents and the dropped samples' motion features are zeroed afterwards.
    """

    def __init__(self, model: EMOModel):
        super().__init__()
        self.model = model

    def forward(
        self,
        noisy_latents: torch.Tensor,  # (b, c, f, h, w)
        timesteps: torch.Tensor,  # (b,)
        reference_latents: torch.Tensor,  # (b, c, h, w)
        motion_latents: torch.Tensor | None,  # (b, c, n, h, w)
        keep_motion: torch.Tensor | None,  # (b,) 1 = keep, 0 = dropped (zero features)
        audio_features: torch.Tensor | None,  # (b, f, 2m+1, *feature_shape)
        face_mask: torch.Tensor,  # (b, 1, H, W)
        speed: torch.Tensor | None,  # (b, f)
        keep_speed: torch.Tensor | None,  # (b,) 1 = keep, 0 = dropped (as if no speed)
        use_temporal: bool,
    ) -> torch.Tensor:
        reference = self.model.encode_reference(reference_latents, motion_latents)
        if keep_motion is not None:
            for position, features in reference.motion.items():  # (b, n, c, h, w)
                reference.motion[position] = features * keep_motion.view(-1, 1, 1, 1, 1).to(features.dtype)
        return self.model.denoise(
            noisy_latents, timesteps, reference, audio_features, face_mask, speed, use_temporal=use_temporal,
            keep_speed=keep_speed,
        )


class TrainingStep:
    """The arithmetic of one micro-batch, apart from data loading, optimiser and bookkeeping (so
    that it can also run on fake tensors to count its cost: `emo_train.cost`).

    `net` is the `TrainingForward` (or its DDP wrapper); `autocast_dtype` None runs in float32.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        vae: AutoencoderKL,
        stage: int,
        device: torch.device,
        autocast_dtype: torch.dtype | None = None,
        latent_cache: LatentCache | None = None,
        snr_gamma: float | None = None,
    ):
        self.net, self.vae, self.stage, self.device = net, vae, stage, torch.device(device)
        self.autocast_dtype = autocast_dtype
        self.latent_cache = latent_cache
        self.snr_gamma = snr_gamma  # Min-SNR loss weighting (`denoising_loss`)
        self.noise_scheduler = sd15_noise_scheduler()

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @torch.no_grad()
    def encode_moments(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(m, 3, S, S) uint8 on the device -> the VAE posterior's mean and std, (m, 4, S/8, S/8) float32."""
        with self.autocast():
            posterior = self.vae.encode(to_unit_range(pixels)).latent_dist
        return posterior.mean.float(), posterior.std.float()

    def latents(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        """One VAE sample of every frame the micro-batch uses, scaled: (b, 4, k, h, w) in the order
        reference, motion frames (stages 2-3), targets."""
        parts = [batch["reference"][:, :, None]]  # (b, 3, 1, S, S) uint8
        indices = [batch["reference_index"][:, None]]
        if self.stage >= 2:
            parts.append(batch["motion"])  # (b, 3, n, S, S)
            indices.append(batch["motion_indices"])
        parts.append(batch["video"])  # (b, 3, f, S, S)
        indices.append(batch["frame_indices"])
        frames = torch.cat([p.to(self.device, non_blocking=True) for p in parts], dim=2)  # (b, 3, k, S, S)
        b, k = frames.shape[0], frames.shape[2]
        flat = frames.transpose(1, 2).flatten(0, 1)  # (b*k, 3, S, S)
        if self.latent_cache is None:
            mean, std = self.encode_moments(flat)
        else:
            mean, std = self.latent_cache.moments(batch["key"], torch.cat(indices, dim=1), flat, self.encode_moments)
        sample = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device)  # (b*k, 4, h, w)
        return (sample * self.vae.config.scaling_factor).unflatten(0, (b, k)).transpose(1, 2)

    def loss(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        """The denoising loss of one micro-batch (with gradients); `generator` draws VAE samples,
        noise and timesteps."""
        device = self.device
        latents = self.latents(batch, generator)  # (b, 4, 1+n+f, h, w)
        b, f = latents.shape[0], batch["video"].shape[2]
        reference, target = latents[:, :, 0], latents[:, :, -f:]

        def keep(flag_name: str) -> torch.Tensor:
            """1 where the condition stays, 0 where its dropout flag is set; shape (b,)."""
            return (~batch[flag_name]).to(device, torch.float32)

        motion = keep_motion = audio = speed = keep_speed = None
        if self.stage >= 2:
            motion = latents[:, :, 1:-f]  # (b, 4, n, h, w)
            keep_motion = keep("drop_motion")  # applied to the motion features (TrainingForward)
            audio = batch["audio"].to(device)  # (b, f, 2m+1, *feature_shape)
            audio = audio * keep("drop_audio").view(b, *[1] * (audio.ndim - 1))
            if self.stage == 3:
                speed = batch["speed"].to(device)  # (b, f) deg/s
                keep_speed = keep("drop_speed")
        mask = batch["mask"].to(device)  # (b, 1, S, S)

        noise = torch.randn(target.shape, generator=generator, device=device)
        timesteps = torch.randint(
            0, self.noise_scheduler.config.num_train_timesteps, (b,), generator=generator, device=device
        )
        noisy = self.noise_scheduler.add_noise(target, noise, timesteps)  # (b, 4, f, h, w)
        with self.autocast():
            prediction = self.net(
                noisy, timesteps, reference, motion, keep_motion, audio, mask, speed, keep_speed,
                use_temporal=self.stage >= 2,
            )
        return denoising_loss(prediction.float(), noise, timesteps, self.noise_scheduler, self.snr_gamma)


class Trainer:
    """Trains one stage. `rank` / `world_size` > 1: a torch.distributed process group is already
    set up (Ray Train does it); the model is wrapped in DDP and rank 0 writes all outputs."""

    def __init__(self, cfg: TrainConfig, rank: int = 0, world_size: int = 1, device: torch.device | str | None = None):
        self.cfg = cfg
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.run_dir = Path(cfg.run.out)
        self.stage = cfg.stage
        self.autocast_dtype = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.optim.mixed_precision]

        resume_from = last_checkpoint(self.run_dir) if cfg.run.resume else None
        if cfg.run.resume and resume_from is None:
            raise TrainError(f"--resume: no checkpoint in {self.run_dir}/checkpoints")
        if resume_from is not None:
            saved = json.loads((resume_from / "config.json").read_text())
            if saved.get("stage") != cfg.stage:
                raise TrainError(f"--resume: {self.run_dir} trains stage {saved.get('stage')}, not stage {cfg.stage}")
            for section in ("data", "optim"):
                if saved.get(section) != cfg.to_dict()[section]:
                    # the data position counts micro-batches: another batch size, seed or data
                    # option makes the resumed stream differ from the one the run was on
                    logger.warning("--resume: %s options differ from the checkpoint's; the run will not "
                                   "reproduce an uninterrupted one", section)

        self.annotation = self._shard_annotation()  # stored with each checkpoint, for inference
        self.model: EMOModel | None = None
        self.trainable = self._build_modules(resume_from)
        if world_size > 1:
            # frozen and (stage 1) unused temporal layers: DDP must not wait for their gradients
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.net,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )

        self.optimizer = make_optimizer(self.trainable, cfg.optim, self.device)
        self.lr_scheduler = get_scheduler(
            "constant_with_warmup", self.optimizer, num_warmup_steps=cfg.optim.warmup_steps
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.optim.mixed_precision == "fp16")
        # the average starts from the weights the run starts from; a resumed checkpoint's
        # component folders hold the average, its training state the raw weights
        self.ema = EMAModel(self.trainable, decay=cfg.optim.ema_decay) if cfg.optim.ema_decay else None

        # per-worker noise / timestep generator; every worker draws different noise
        self.generator = torch.Generator(self.device).manual_seed(cfg.run.seed * 1000 + rank)
        torch.manual_seed(cfg.run.seed)
        self.step = 0
        self.batches_consumed = 0  # micro-batches taken from the data stream: the resume position
        self.pending = {"loss_sum": 0.0, "count": 0}  # losses since the last metrics line
        self.time_limited = False  # stopped by --max-minutes
        self.data_wait_seconds = 0.0  # waiting for the loader since the last metrics line
        if resume_from is not None:
            state, rng = load_training_state(resume_from, self.optimizer, self.lr_scheduler)
            self.step = int(state["step"])
            self.batches_consumed = int(state["batches_consumed"])
            self.pending = state["pending"]
            if "scaler" in state:
                self.scaler.load_state_dict(state["scaler"])
            self._match_optimizer_state_layout()
            torch.set_rng_state(rng["torch"])
            key = f"generator.{rank}"
            if key not in rng:
                raise TrainError(f"--resume: the checkpoint was written with fewer workers than {world_size}")
            self.generator.set_state(rng[key])
            self.load_extra_state(state)
            if self.ema is not None:
                with torch.no_grad():
                    for parameter, raw in zip(self.trainable, load_raw_weights(resume_from)):
                        parameter.copy_(raw)
                self.ema.optimization_step = int(state["ema_step"])
            logger.info("resumed %s at step %d", resume_from, self.step)
        self.resumed_from = resume_from
        cache = None
        if cfg.data.latent_cache is not None:
            cache = LatentCache(cfg.data.latent_cache, f"{cfg.size}px-{weights_digest(self.vae)[:16]}")
        self.step_math = TrainingStep(self.net, self.vae, self.stage, self.device, self.autocast_dtype, cache,
                                      cfg.optim.snr_gamma)

        self.data_config = DataConfig(
            shards=cfg.data.shards,
            stage=max(self.stage, 1),  # the VAE stage (0) trains on stage 1's images
            frames=cfg.data.frames,
            motion_frames=cfg.data.motion_frames,
            size=cfg.size,
            audio_feature_shape=tuple(self.annotation["audio_features"]["shape"]) if self.stage >= 2 else None,
            shuffle_buffer=cfg.data.shuffle_buffer,
            seed=cfg.run.seed,
            repeat=True,  # step-based training; passes reshuffle by themselves
            drop_audio=cfg.data.drop_audio,
            drop_motion=cfg.data.drop_motion,
            drop_speed=cfg.data.drop_speed,
            clip_cache_mb=cfg.data.clip_cache_mb,
        )
        self.loader = make_dataloader(
            self.data_config, cfg.optim.batch_size, cfg.data.loader_workers, drop_last=True,
            pin_memory=self.device.type == "cuda",
        )

    def _shard_annotation(self) -> dict:
        try:
            return annotation_settings(shard_sample_metadata(self.cfg.data.shards))
        except (ValueError, OSError, KeyError) as err:
            raise TrainError(f"--shards: cannot read the sample metadata: {err}") from None

    def _build_modules(self, resume_from: Path | None) -> list[torch.nn.Parameter]:
        """Set `model`, `vae` and `net` (the module the step calls); return the trainable parameters."""
        cfg = self.cfg
        audio_shape = tuple(self.annotation["audio_features"]["shape"])  # per frame
        self.model = build_model(cfg, audio_shape, resume_from).to(self.device)
        model_shape = tuple(self.model.audio_projection.config.feature_shape)
        if self.stage >= 2 and model_shape != audio_shape:
            raise TrainError(f"the shards hold audio features {audio_shape}, the model expects {model_shape}")
        trainable = self.model.set_trainable_stage(self.stage)
        if cfg.model.gradient_checkpointing:
            self.model.enable_gradient_checkpointing()
        self.model.train()
        self.vae = build_vae(cfg, resume_from).to(self.device).requires_grad_(False).eval()
        if cfg.model.channels_last:
            for module in (self.model.backbone, self.model.reference_net, self.model.face_locator, self.vae):
                use_channels_last(module)
        if cfg.model.compile:
            self.model.compile_blocks()
        self.net: torch.nn.Module = TrainingForward(self.model)
        return trainable

    def trained_groups(self) -> str:
        return ", ".join(STAGE_GROUPS[self.stage])

    def trained_module(self) -> torch.nn.Module:
        """What this stage trains, as a whole (for the weight digest)."""
        return self.model

    def extra_state(self) -> dict[str, Any]:
        """Stage-specific values stored in the checkpoint's training state (and restored on resume)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def summary_extra(self) -> dict[str, Any]:
        """Stage-specific figures of the finished run (in `summary.json`)."""
        return {}

    def save_components(self, path: Path) -> None:
        """Extra folders of a checkpoint beside the model and the VAE."""
        self.step_math.noise_scheduler.save_pretrained(path / "scheduler")

    # ------------------------------------------------------------------------------- step

    def _match_optimizer_state_layout(self) -> None:
        """Resumed AdamW moments come back contiguous; give them their parameter's memory layout
        (channels-last convolutions), as fused kernels treat both as the same flat memory."""
        for group in self.optimizer.param_groups:
            for parameter in group["params"]:
                state = self.optimizer.state.get(parameter, {})
                for name, value in state.items():
                    if isinstance(value, torch.Tensor) and value.shape == parameter.shape and value.stride() != parameter.stride():
                        state[name] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)

    def loss(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> torch.Tensor:
        """The denoising loss of one micro-batch (`TrainingStep.loss`); `generator` draws VAE
        samples, noise and timesteps (default: the trainer's own)."""
        return self.step_math.loss(batch, generator if generator is not None else self.generator)

    def optimizer_step(self, batches: Iterator[dict]) -> float:
        """One optimizer step over `grad_accum` micro-batches; returns the mean micro-batch loss."""
        accum = self.cfg.optim.grad_accum
        total = 0.0
        for micro in range(accum):
            waited = time.perf_counter()
            batch = next(batches)
            self.data_wait_seconds += time.perf_counter() - waited
            self.batches_consumed += 1
            sync = micro == accum - 1 or not isinstance(self.net, torch.nn.parallel.DistributedDataParallel)
            with contextlib.nullcontext() if sync else self.net.no_sync():
                loss = self.loss(batch)
                self.scaler.scale(loss / accum).backward()
            total += loss.item()
        if self.cfg.optim.max_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.trainable, self.cfg.optim.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.step(self.trainable)
        self.step += 1
        return total / accum

    # ------------------------------------------------------------------------------- loop

    def _batches(self) -> Iterator[dict]:
        stream = iter(self.loader)
        for _ in range(self.batches_consumed):  # resume: the stream is deterministic, skip what was used
            next(stream)
        return stream

    def _all_reduce_sum(self, values: list[float]) -> list[float]:
        if self.world_size == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def fit(self) -> dict[str, Any]:
        """Train to `max_steps`; returns (rank 0: also writes) the run summary."""
        cfg = self.cfg
        writer = None
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._truncate_metrics()
            writer = tensorboard_writer(self.run_dir / "tensorboard")
            logger.info("stage %s: training %s (%d tensors)", stage_name(self.stage), self.trained_groups(), len(self.trainable))
        from tqdm.auto import tqdm

        progress = tqdm(
            total=cfg.run.max_steps, initial=self.step, desc=f"stage {stage_name(self.stage)}", unit="step",
            disable=not cfg.run.progress or self.rank != 0,
        )
        batches = self._batches()
        last_saved = self.step
        tick, samples_since = time.perf_counter(), 0
        deadline = None if cfg.run.max_minutes is None else time.monotonic() + 60.0 * cfg.run.max_minutes
        try:
            while self.step < cfg.run.max_steps and not self.time_limited:
                try:
                    loss = self.optimizer_step(batches)
                except StopIteration:
                    raise TrainError(
                        f"the shards gave no usable sample ({self.loader.dataset.counter.summary()})"
                    ) from None
                if not torch.isfinite(torch.tensor(loss)):
                    raise TrainError(f"loss is {loss} at step {self.step}; lower --lr or use --mixed-precision no")
                samples_since += cfg.optim.batch_size * cfg.optim.grad_accum * self.world_size
                self.pending["loss_sum"] += loss
                self.pending["count"] += 1
                progress.update(1)
                if self.step % cfg.run.log_every == 0 or self.step == cfg.run.max_steps:
                    elapsed = time.perf_counter() - tick
                    self._log(writer, samples_since / max(elapsed, 1e-9), self.data_wait_seconds / max(elapsed, 1e-9), progress)
                    self.data_wait_seconds = 0.0
                    tick, samples_since = time.perf_counter(), 0
                if self.step % cfg.run.save_every == 0 or self.step == cfg.run.max_steps:
                    self.save()
                    last_saved = self.step
                self.time_limited = self._past(deadline)
        finally:
            progress.close()
            if writer is not None:
                writer.close()
        if self.time_limited and self.rank == 0:
            logger.info("stage %s: --max-minutes %g reached at step %d of %d", stage_name(self.stage),
                        cfg.run.max_minutes, self.step, cfg.run.max_steps)
        if last_saved != self.step:
            self.save()
        return self._summary()

    def _past(self, deadline: float | None) -> bool:
        """Whether the wall-time limit has passed, as every worker's decision (any of them past it)."""
        if deadline is None:
            return False
        return self._all_reduce_sum([float(time.monotonic() >= deadline)])[0] > 0

    def _log(self, writer, samples_per_s: float, data_wait: float, progress) -> None:
        counts = self.loader.dataset.counter.counts()
        skipped = sum(n for reason, n in counts.items() if reason != "yielded")
        loss_sum, count, skipped = self._all_reduce_sum([self.pending["loss_sum"], self.pending["count"], skipped])
        self.pending = {"loss_sum": 0.0, "count": 0}
        if self.rank != 0:
            return
        record = {
            "step": self.step,
            "loss": loss_sum / max(count, 1),
            "lr": self.lr_scheduler.get_last_lr()[0],
            "samples_per_s": samples_per_s,
            "data_wait": data_wait,  # fraction of the wall time spent waiting for batches (input-bound near 1)
            "skipped": int(skipped),  # samples skipped so far (corrupt / too short), all workers
            "skipped_by_reason": {r: n for r, n in counts.items() if r != "yielded" and n},  # this worker
        }
        with open(self.run_dir / METRICS, "a") as out:
            out.write(json.dumps(record) + "\n")
        for name in ("loss", "lr", "samples_per_s", "data_wait", "skipped"):
            if writer is not None:
                writer.add_scalar(f"train/{name}", record[name], self.step)
        progress.set_postfix(loss=f"{record['loss']:.4f}", skipped=record["skipped"])

    def _truncate_metrics(self) -> None:
        """A resumed run rewrites the lines after its checkpoint (they came from the lost steps)."""
        path = self.run_dir / METRICS
        if not path.exists():
            return
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= self.step]
        path.write_text("".join(line + "\n" for line in kept))

    def save(self) -> None:
        """Checkpoint (rank 0 writes; all ranks take part in gathering the RNG states)."""
        states = [self.generator.get_state()]
        if self.world_size > 1:
            states = [None] * self.world_size
            dist.all_gather_object(states, self.generator.get_state())
        if self.rank == 0:
            rng = {"torch": torch.get_rng_state(), **{f"generator.{r}": s for r, s in enumerate(states)}}
            state = {
                "batches_consumed": self.batches_consumed,
                "pending": self.pending,
                "skip_counts": self.loader.dataset.counter.counts(),
                "world_size": self.world_size,
                "scaler": self.scaler.state_dict(),
                **self.extra_state(),
            }
            raw = None
            if self.ema is not None:  # the components get the average, the training state the raw weights
                state["ema_step"] = self.ema.optimization_step
                raw = [parameter.detach().cpu().clone() for parameter in self.trainable]
                self.ema.store(self.trainable)
                self.ema.copy_to(self.trainable)
            try:
                path = save_checkpoint(
                    self.run_dir, self.step, self.model, self.vae, self.optimizer, self.lr_scheduler,
                    self.cfg.to_dict(), state, rng, self.annotation, raw_weights=raw,
                )
                self.save_components(path)
            finally:
                if self.ema is not None:
                    self.ema.restore(self.trainable)
        if self.world_size > 1:
            dist.barrier()

    def _summary(self) -> dict[str, Any]:
        digest = weights_digest(self.trained_module())
        digests = [digest]
        if self.world_size > 1:
            digests = [None] * self.world_size
            dist.all_gather_object(digests, digest)
        summary = {
            "stage": self.stage,
            "step": self.step,
            "checkpoint": str(last_checkpoint(self.run_dir)) if self.rank == 0 else None,
            "world_size": self.world_size,
            "time_limited": self.time_limited,  # stopped by --max-minutes before max_steps
            "weight_digests": digests,  # one per worker: identical in data-parallel training
            "skip_counts": self.loader.dataset.counter.counts(),
            **self.summary_extra(),
        }
        if self.rank == 0:
            (self.run_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
        return summary


def tensorboard_writer(folder: Path):
    """TensorBoard's SummaryWriter on `folder`, or None with a warning where TensorBoard cannot be
    imported (e.g. beside an older protobuf that MediaPipe needs): metrics.jsonl holds the same figures."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        logger.warning("TensorBoard unavailable (%s); metrics go to metrics.jsonl only", err)
        return None
    return SummaryWriter(str(folder))


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run a training stage: in this process, or with Ray Train when `distributed.use_ray`."""
    check_inputs(cfg)
    if cfg.distributed.use_ray:
        from .distributed import train_with_ray

        return train_with_ray(cfg)
    device = "cuda" if cfg.distributed.gpu else "cpu"
    if cfg.distributed.gpu and not torch.cuda.is_available():
        raise TrainError("--gpu: no CUDA device available")
    return trainer_class(cfg)(cfg, device=device).fit()


def trainer_class(cfg: TrainConfig) -> type[Trainer]:
    """`VAETrainer` for the VAE stage, `Trainer` for stages 1-3."""
    if cfg.stage == VAE_STAGE:
        from .vae_stage import VAETrainer

        return VAETrainer
    return Trainer
