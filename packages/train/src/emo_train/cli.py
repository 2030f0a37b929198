"""`emo-train`: parse options and delegate to `emo_train.train`; known errors become one line and exit code 1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from emo_annotate.cli_common import make_app, run_app

from .config import TrainConfig, TrainError, stage_name

app = make_app(
    "Train one stage of EMO on the annotator's shards (vae: the preset's own VAE, 1: images, 2: video + audio, "
    "3: + head speed)."
)

# shared option aliases; None = "not given" (so a --config file value is not overridden)
Stage = Annotated[Optional[str], typer.Option(help="Training stage: vae (the preset's own VAE), 1, 2 or 3.")]
Shards = Annotated[Optional[str], typer.Option(help="Annotator output dir, shard dir, pattern or URL.")]
Out = Annotated[Optional[Path], typer.Option(help="Run directory (checkpoints/, metrics.jsonl, tensorboard/).")]
Preset = Annotated[Optional[str], typer.Option(help="Model size: tiny | small | medium | sd15.")]
InitFrom = Annotated[Optional[str], typer.Option(help="Checkpoint dir (or run dir) of the previous stage (stage 1: a VAE run).")]
BaseModel = Annotated[Optional[str], typer.Option(help="SD1.5 diffusers folder or hub id (unet/, vae/).")]
MotionAdapter = Annotated[Optional[str], typer.Option(help="AnimateDiff MotionAdapter folder or hub id.")]
Int = Annotated[Optional[int], typer.Option(min=1)]
Float = Annotated[Optional[float], typer.Option()]


@app.command()
def main_command(
    stage: Stage = None,
    shards: Shards = None,
    out: Out = None,
    config: Annotated[Optional[Path], typer.Option(help="JSON/TOML/YAML file of these options (flags override it).")] = None,
    preset: Preset = None,
    init_from: InitFrom = None,
    base_model: BaseModel = None,
    motion_adapter: MotionAdapter = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Optimizer steps to train to.", min=1)] = None,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop (and checkpoint) after this many minutes of training.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Clips per micro-batch per worker.", min=1)] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default 1e-5).")] = None,
    ema_decay: Annotated[Optional[float], typer.Option(help="Average the trained weights (e.g. 0.999); checkpoints hold the average.")] = None,
    snr_gamma: Annotated[Optional[float], typer.Option(help="Min-SNR-gamma loss weighting (e.g. 5; default: plain MSE).")] = None,
    warmup_steps: Annotated[Optional[int], typer.Option(help="Linear LR warmup steps.", min=0)] = None,
    grad_accum: Annotated[Optional[int], typer.Option(help="Micro-batches per optimizer step.", min=1)] = None,
    mixed_precision: Annotated[Optional[str], typer.Option(help="no | bf16 | fp16")] = None,
    gradient_checkpointing: Annotated[Optional[bool], typer.Option("--gradient-checkpointing", help="Recompute activations in backward: much less memory, one more forward.")] = None,
    channels_last: Annotated[Optional[bool], typer.Option("--channels-last", help="Channels-last convolutions (GPU tensor cores).")] = None,
    compile: Annotated[Optional[bool], typer.Option("--compile", help="torch.compile the repeated blocks.")] = None,
    size: Annotated[Optional[int], typer.Option(help="Training resolution (default: the preset's: tiny 64, small 96, medium 256, sd15 512).", min=8)] = None,
    save_every: Annotated[Optional[int], typer.Option(help="Checkpoint every N steps.", min=1)] = None,
    log_every: Annotated[Optional[int], typer.Option(help="Metrics line every N steps.", min=1)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    resume: Annotated[Optional[bool], typer.Option("--resume", help="Continue --out from its last checkpoint.")] = None,
    loader_workers: Annotated[Optional[int], typer.Option(help="DataLoader processes per training worker.", min=0)] = None,
    drop_audio: Annotated[Optional[float], typer.Option(help="Dropout probability of the audio (guidance's unconditional mode).")] = None,
    drop_motion: Annotated[Optional[float], typer.Option(help="Dropout probability of the motion frames.")] = None,
    drop_speed: Annotated[Optional[float], typer.Option(help="Dropout probability of the head speed (stage 3).")] = None,
    latent_cache: Annotated[Optional[Path], typer.Option(help="Folder caching the VAE latents of the frames trained on.")] = None,
    clip_cache_mb: Annotated[Optional[float], typer.Option(help="MB per loader process for decoded clips, each decoded once (small sets; 0: off).", min=0)] = None,
    num_workers: Annotated[Optional[int], typer.Option(help="Data-parallel Ray Train workers (1: no Ray).", min=1)] = None,
    gpu: Annotated[Optional[bool], typer.Option("--gpu", help="One GPU per worker.")] = None,
    address: Annotated[Optional[str], typer.Option(help="Existing Ray cluster address.")] = None,
    quiet: Annotated[Optional[bool], typer.Option("--quiet", help="No progress bar.")] = None,
) -> None:
    """Train one stage: emo-train --stage 1 --shards SHARDS --out RUN_DIR [options]."""
    from .train import train

    values: dict[str, Any] = TrainConfig.load(config) if config is not None else {}
    flags = dict(
        stage=stage, shards=shards, out=str(out) if out is not None else None, preset=preset, init_from=init_from,
        base_model=base_model, motion_adapter=motion_adapter, max_steps=max_steps, max_minutes=max_minutes, batch_size=batch_size, lr=lr,
        snr_gamma=snr_gamma, ema_decay=ema_decay, warmup_steps=warmup_steps, grad_accum=grad_accum,
        mixed_precision=mixed_precision, gradient_checkpointing=gradient_checkpointing, channels_last=channels_last,
        compile=compile, size=size, save_every=save_every, log_every=log_every, seed=seed, resume=resume,
        loader_workers=loader_workers, drop_audio=drop_audio, drop_motion=drop_motion, drop_speed=drop_speed,
        latent_cache=str(latent_cache) if latent_cache is not None else None,
        clip_cache_mb=clip_cache_mb,
        num_workers=num_workers, gpu=gpu, address=address,
    )
    values = _flatten(values)
    values.update({k: v for k, v in flags.items() if v is not None})
    if quiet:
        values["progress"] = False
    cfg = TrainConfig.from_dict(values)
    summary = train(cfg)
    typer.echo(f"stage {stage_name(summary['stage'])}: step {summary['step']}, checkpoint {summary['checkpoint']}")


def _flatten(values: dict[str, Any]) -> dict[str, Any]:
    """Section tables of a config file (`[optim] lr = ...`) to flat option names."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update({k.replace("-", "_"): v for k, v in value.items()})
        else:
            flat[key.replace("-", "_")] = value
    return flat


def main() -> None:
    run_app(
        app,
        (TrainError, FileNotFoundError, NotADirectoryError, PermissionError),
        "interrupted; rerun with --resume to continue from the last checkpoint",
    )


if __name__ == "__main__":
    main()
