"""Stage `vae`: train a preset's own AutoencoderKL on the shards' frames, before stage 1.

The `tiny` and `small` presets have no pretrained VAE (SD's needs a hub). A diffusion model
learns in the VAE's latent space, so a random VAE gives latents that carry no face: this stage
trains one on single frames of the same shards (each stage-1 sample gives two: its target and
its reference frame), with the usual VAE objective

    loss = L1(x, decode(z)) + MSE(x, decode(z)) + KL_WEIGHT * KL(q(z|x) || N(0, I)) per pixel

and is checkpointed like the other stages (`checkpoints/<step>/vae/`, training state, `last`);
stage 1 picks the VAE up with `--init-from` this run. The VAE's `scaling_factor` (latents x it
have unit second moment, SD's 0.18215 convention) is kept up to date from the latents it
produces, and `summary.json` reports the reconstruction PSNR against the untrained VAE's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from .data import DataConfig, make_dataloader
from .train import Trainer, build_vae, preset_vae, to_unit_range

KL_WEIGHT = 1e-6
"""Weight of the KL term against the per-pixel reconstruction losses (the KL summed over latent
elements, divided by the pixel count): small, as in SD's VAE, so latents stay informative;
the scaling factor then brings them to unit scale for the diffusion model."""
LATENT_POWER_MOMENTUM = 0.99
"""Running mean of E[z^2] over training batches, for the scaling factor."""
EVAL_FRAMES = 64
"""Frames the reconstruction PSNR is measured on at the end of the run."""


class VAEForward(torch.nn.Module):
    """Encode, sample, decode: one module call (what DDP wraps)."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(n, 3, S, S) in [-1, 1] -> reconstruction (n, 3, S, S), latent sample (n, 4, S/8, S/8), KL (n,)."""
        posterior = self.vae.encode(images).latent_dist
        latents = posterior.sample(generator)
        return self.vae.decode(latents).sample, latents, posterior.kl()


class VAETrainer(Trainer):
    """Trains the preset's VAE (all of it) on single frames; the loop, checkpoints, resume, metrics
    and Ray Train data parallelism are the `Trainer`'s."""

    def _build_modules(self, resume_from: Path | None) -> list[torch.nn.Parameter]:
        self.vae = build_vae(self.cfg, resume_from).to(self.device).train()
        self.vae.requires_grad_(True)
        self.net = VAEForward(self.vae)
        self.latent_power = 1.0
        return list(self.vae.parameters())

    def trained_groups(self) -> str:
        return "vae"

    def trained_module(self) -> torch.nn.Module:
        return self.vae

    def extra_state(self) -> dict[str, Any]:
        return {"latent_power": self.latent_power}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.latent_power = float(state["latent_power"])

    def save_components(self, path: Path) -> None:
        pass  # the VAE is the checkpoint

    def save(self) -> None:
        # latents x scaling_factor have unit second moment, the scale the noise schedule assumes
        self.vae.register_to_config(scaling_factor=1.0 / math.sqrt(self.latent_power))
        super().save()

    def loss(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> torch.Tensor:
        generator = generator if generator is not None else self.generator
        images = to_unit_range(torch.cat([batch["video"][:, :, 0], batch["reference"]]).to(self.device))  # (2b, 3, S, S)
        with self.step_math.autocast():
            reconstruction, latents, kl = self.net(images, generator)
        reconstruction = reconstruction.float()
        power = latents.detach().float().pow(2).mean().item()
        self.latent_power = LATENT_POWER_MOMENTUM * self.latent_power + (1 - LATENT_POWER_MOMENTUM) * power
        pixels = images[0].numel()
        return (
            F.l1_loss(reconstruction, images)
            + F.mse_loss(reconstruction, images)
            + KL_WEIGHT * kl.float().mean() / pixels
        )

    def summary_extra(self) -> dict[str, Any]:
        """Reconstruction PSNR of the trained VAE and of the untrained one, on the same frames."""
        if self.rank != 0:
            return {}
        frames = evaluation_frames(self.cfg.data.shards, self.cfg.size, EVAL_FRAMES)
        untrained = preset_vae(self.cfg.model.preset, self.cfg.run.seed).to(self.device)
        return {
            "reconstruction_psnr": reconstruction_psnr(self.vae, frames),
            "untrained_reconstruction_psnr": reconstruction_psnr(untrained, frames),
            "evaluation_frames": len(frames),
            "scaling_factor": self.vae.config.scaling_factor,
        }


def evaluation_frames(shards: str, size: int, count: int) -> torch.Tensor:
    """`count` frames (n, 3, S, S) in [-1, 1] drawn deterministically from the shards (targets and
    references of stage-1 samples; passes repeat, drawing other frames, until there are enough)."""
    config = DataConfig(shards=shards, stage=1, size=size, shuffle_buffer=0, seed=0, repeat=True)
    frames = []
    for batch in make_dataloader(config, batch_size=8, num_workers=0):
        frames += [batch["video"][:, :, 0], batch["reference"]]  # uint8
        if sum(len(f) for f in frames) >= count:
            break
    return to_unit_range(torch.cat(frames)[:count])


@torch.no_grad()
def reconstruction_psnr(vae: AutoencoderKL, frames: torch.Tensor, batch: int = 16) -> float:
    """Mean per-frame PSNR (dB, 8-bit range) of `decode(mode(encode(x)))` against `frames`."""
    vae = vae.eval()
    device = next(vae.parameters()).device
    values = []
    for chunk in frames.split(batch):
        chunk = chunk.to(device)
        decoded = vae.decode(vae.encode(chunk).latent_dist.mode()).sample.clamp(-1, 1)
        mse = ((decoded - chunk) / 2).pow(2).flatten(1).mean(1)  # (n,) on the [0, 1] scale
        values.append(10 * torch.log10(1.0 / mse.clamp_min(1e-10)))
    return float(torch.cat(values).mean())
