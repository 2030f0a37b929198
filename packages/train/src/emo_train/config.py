"""Typed configuration of a training run.

`TrainConfig` composes the parts (model, data, optimisation, run, distribution); it is stored
resolved in every checkpoint (`config.json`) and can be read from a file (`--config`: JSON, TOML
or YAML holding the CLI's option names, `max_steps` or `max-steps`, flat or by section).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

MixedPrecision = Literal["no", "bf16", "fp16"]


class TrainError(Exception):
    """A user mistake (bad option, missing checkpoint, unusable shards); the CLI prints it as one line."""


VAE_STAGE = 0
"""The stage that trains a preset's own VAE (`--stage vae`) before stage 1, where no pretrained
VAE exists (the `tiny` and `small` presets)."""


def parse_stage(value: int | str) -> int:
    """`vae` (or 0), 1, 2 or 3 -> the stage number."""
    text = str(value).strip().lower()
    if text == "vae":
        return VAE_STAGE
    if text in ("0", "1", "2", "3"):
        return int(text)
    raise TrainError(f"--stage must be vae, 1, 2 or 3, not {value!r}")


def stage_name(stage: int) -> str:
    return "vae" if stage == VAE_STAGE else str(stage)


@dataclass
class ModelOptions:
    """Where the model's weights come from."""

    preset: str = "tiny"
    """Architecture preset: `tiny` (CPU tests and demo), `small` (learns on a CPU) or `sd15` (full size)."""
    init_from: str | None = None
    """Checkpoint directory (`RUN_DIR/checkpoints/<step>/`, or a run directory: its `last`) to start
    from; stage 2 starts from stage 1's, stage 3 from stage 2's. Takes precedence over `base_model`
    for the EMO weights."""
    base_model: str | None = None
    """SD1.5 in diffusers layout (`unet/`, `vae/`), local path or hub id: initialises backbone and
    ReferenceNet (when no `init_from`) and provides the VAE."""
    motion_adapter: str | None = None
    """AnimateDiff `MotionAdapter` (path or hub id) loaded into the temporal layers, over `base_model`
    or an `init_from` stage-1 checkpoint. Refused with a stage-2 or stage-3 checkpoint, whose
    temporal layers are trained (the adapter would silently replace them)."""
    gradient_checkpointing: bool = False
    """Recompute the activations of the backbone's, the ReferenceNet's and the temporal layers'
    blocks in backward instead of keeping them: much less memory, one more forward per step."""
    channels_last: bool = False
    """Convolutional parts (backbone, ReferenceNet, Face Locator, VAE) in channels-last memory
    format: faster convolutions on tensor-core GPUs with mixed precision."""
    compile: bool = False
    """`torch.compile` the repeated blocks (transformer blocks of both UNets, temporal layers):
    a slower first step, faster steps after it."""


@dataclass
class DataOptions:
    """The training samples (see `emo_train.data.DataConfig` for their meaning)."""

    shards: str = ""
    """Annotator output directory, shard directory, pattern or URL."""
    size: int | None = None
    """Training resolution in pixels; None: the preset's (tiny 64, sd15 512)."""
    frames: int = 12
    """Target frames per sample in stages 2-3 (stage 1 always trains single images)."""
    motion_frames: int = 4
    """Motion frames in front of the targets (stages 2-3)."""
    shuffle_buffer: int = 64
    """Samples held for shuffling."""
    loader_workers: int = 2
    """DataLoader worker processes per training worker (0: load in the training process)."""
    drop_audio: float = 0.05
    """Dropout of the audio features (zeroed), stages 2-3: the unconditional half of inference's
    audio guidance."""
    drop_motion: float = 0.1
    """Dropout of the motion frames (zero features, as for a first clip), stages 2-3."""
    drop_speed: float = 0.1
    """Dropout of the head speed, stage 3: the model also learns to move without a given speed
    (inference without --speed)."""
    latent_cache: str | None = None
    """Folder for the VAE posteriors of the frames trained on (per clip and frame, float16): each
    frame is encoded once instead of every time it is drawn. One folder per VAE and size (it is
    keyed by both); safe to share between data-parallel workers."""
    clip_cache_mb: float = 0.0
    """Memory (MB) per loader process for decoded clips, each decoded once and reused while they
    fit (`emo_train.data.DecodedClipCache`): for small sets trained on for many passes. 0: off."""


@dataclass
class OptimOptions:
    """AdamW over exactly the stage's trainable parameters, constant LR after a linear warmup."""

    lr: float = 1e-5
    """Learning rate (the paper's 1e-5)."""
    warmup_steps: int = 0
    """Optimizer steps of linear warmup to `lr`."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping by global norm (0: off)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step."""
    batch_size: int = 1
    """Samples per micro-batch per training worker."""
    ema_decay: float | None = None
    """Keep an exponential moving average of the trained weights (decay (1+n)/(10+n) after n
    steps, capped at this value, e.g. 0.999): checkpoints then hold the average (what inference
    and the next stage use) and the raw weights for `--resume`. None: no average."""
    snr_gamma: float | None = None
    """Min-SNR-gamma loss weighting (each sample's epsilon MSE times min(SNR(t), gamma) / SNR(t);
    5 is the paper's value): faster convergence from scratch. None: the plain MSE (EMO's)."""
    mixed_precision: MixedPrecision = "no"
    """Autocast dtype of the forward pass; weights and optimizer stay float32."""


@dataclass
class RunOptions:
    """Length, outputs and reproducibility of the run."""

    out: str = ""
    """Run directory: checkpoints/, metrics.jsonl, tensorboard/."""
    max_steps: int = 1000
    """Optimizer steps to train to (a resumed run continues up to this step)."""
    max_minutes: float | None = None
    """Wall-time limit of this process's training loop (a job's time slot): after the first step
    past it the run checkpoints and ends as if `max_steps` were reached (`summary.json` says
    so); `--resume` continues to `max_steps`. None: no limit."""
    save_every: int = 500
    """Checkpoint every this many optimizer steps (and always at the end)."""
    log_every: int = 10
    """Write a metrics line (metrics.jsonl, TensorBoard) every this many optimizer steps."""
    seed: int = 0
    """Seeds weights of new layers, the data stream, noise and timesteps."""
    resume: bool = False
    """Continue `out` from its last checkpoint (weights, optimizer, scheduler, RNG, data position)."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class DistributedOptions:
    """Data-parallel training with Ray Train (`num_workers` > 1 or `address`)."""

    num_workers: int = 1
    """Training workers (processes, one per GPU with `gpu`); 1 without `address`: no Ray."""
    gpu: bool = False
    """One GPU per worker (NCCL); otherwise CPU workers (gloo)."""
    address: str | None = None
    """Existing Ray cluster (`auto`, `ray://host:10001`); None: start a local one when needed."""

    @property
    def use_ray(self) -> bool:
        return self.num_workers > 1 or self.address is not None


@dataclass
class TrainConfig:
    """One training run of one stage."""

    stage: int = 1
    """0 (`vae`): the preset's own VAE on single frames; 1: images, train backbone + ReferenceNet +
    Face Locator; 2: video, temporal + audio attention; 3: video, temporal + speed layers."""
    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataOptions = field(default_factory=DataOptions)
    optim: OptimOptions = field(default_factory=OptimOptions)
    run: RunOptions = field(default_factory=RunOptions)
    distributed: DistributedOptions = field(default_factory=DistributedOptions)

    def __post_init__(self) -> None:
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise TrainError(message)

        from .models.presets import PRESETS

        check(self.stage in (VAE_STAGE, 1, 2, 3), f"--stage must be vae, 1, 2 or 3, not {self.stage}")
        check(self.model.preset in PRESETS, f"--preset must be one of {', '.join(PRESETS)}, not {self.model.preset!r}")
        check(bool(self.data.shards), "--shards is required")
        check(bool(self.run.out), "--out is required")
        check(self.run.max_steps >= 1, "--max-steps must be >= 1")
        check(self.run.max_minutes is None or self.run.max_minutes > 0, "--max-minutes must be > 0")
        check(self.run.save_every >= 1 and self.run.log_every >= 1, "--save-every and --log-every must be >= 1")
        check(self.optim.batch_size >= 1 and self.optim.grad_accum >= 1, "--batch-size and --grad-accum must be >= 1")
        check(self.optim.lr > 0, "--lr must be > 0")
        check(self.optim.snr_gamma is None or self.optim.snr_gamma > 0, "--snr-gamma must be > 0")
        check(self.optim.ema_decay is None or 0 < self.optim.ema_decay < 1, "--ema-decay must be in (0, 1)")
        check(self.optim.mixed_precision in ("no", "bf16", "fp16"), "--mixed-precision must be no, bf16 or fp16")
        check(self.distributed.num_workers >= 1, "--num-workers must be >= 1")
        check(self.data.size is None or (self.data.size >= 8 and self.data.size % 8 == 0), "--size must be a multiple of 8")
        for name in ("drop_audio", "drop_motion", "drop_speed"):
            check(0.0 <= getattr(self.data, name) <= 1.0, f"--{name.replace('_', '-')} must be in [0, 1]")
        if self.stage == 1 and self.model.base_model is None and self.model.init_from is None and self.model.preset == "sd15":
            raise TrainError("--preset sd15 needs --base-model (SD1.5 weights) or --init-from")
        if self.stage == VAE_STAGE:
            check(PRESETS[self.model.preset].vae is not None,
                  f"--stage vae trains a preset's own VAE; {self.model.preset} uses SD's (--base-model)")
            check(self.model.base_model is None, "--stage vae trains a VAE from scratch: drop --base-model")

    @property
    def size(self) -> int:
        from .models.presets import PRESETS

        return self.data.size if self.data.size is not None else PRESETS[self.model.preset].resolution

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """From nested sections (`{"stage": 2, "optim": {"lr": 1e-5}}`) or flat option names
        (`{"stage": 2, "lr": 1e-5, "max-steps": 10}`); unknown names are an error."""
        sections = {f.name: f.type for f in dataclasses.fields(cls) if f.name != "stage"}
        owners = {
            sub.name: section
            for section, section_cls in _SECTION_CLASSES.items()
            for sub in dataclasses.fields(section_cls)
        }
        nested: dict[str, dict[str, Any]] = {name: {} for name in sections}
        top: dict[str, Any] = {}
        for raw_key, value in values.items():
            key = raw_key.replace("-", "_")
            if key == "stage":
                top["stage"] = parse_stage(value)
            elif key in nested and isinstance(value, dict):
                for sub_key, sub_value in value.items():
                    sub_key = sub_key.replace("-", "_")
                    if owners.get(sub_key) != key:
                        raise TrainError(f"config: unknown option {key}.{sub_key}")
                    nested[key][sub_key] = sub_value
            elif key in owners:
                nested[owners[key]][key] = value
            else:
                raise TrainError(f"config: unknown option {raw_key!r}")
        return cls(**top, **{name: _SECTION_CLASSES[name](**kw) for name, kw in nested.items()})

    @classmethod
    def load(cls, path: str | Path) -> dict[str, Any]:
        """The raw values of a config file (JSON, TOML or YAML by extension), for `from_dict`."""
        path = Path(path)
        if not path.is_file():
            raise TrainError(f"config file not found: {path}")
        text = path.read_text()
        try:
            if path.suffix == ".toml":
                import tomllib

                return tomllib.loads(text)
            if path.suffix in (".yaml", ".yml"):
                import yaml

                return yaml.safe_load(text) or {}
            return json.loads(text)
        except Exception as err:  # a syntax error of any of the three formats
            raise TrainError(f"cannot read config file {path}: {err}") from None


_SECTION_CLASSES: dict[str, type] = {
    "model": ModelOptions,
    "data": DataOptions,
    "optim": OptimOptions,
    "run": RunOptions,
    "distributed": DistributedOptions,
}
