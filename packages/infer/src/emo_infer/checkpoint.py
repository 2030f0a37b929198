"""What inference needs from an `emo-train` checkpoint: the recorded settings (cheap, checked
before any heavy work) and the model, VAE and noise schedule (loaded afterwards)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InferError

logger = logging.getLogger(__name__)

# the folders of `emo_train.models.emo.COMPONENTS` plus the VAE; spelled out because importing
# that module pulls in diffusers (seconds), and this check runs before any heavy work
COMPONENT_DIRS = ("backbone", "reference_net", "face_locator", "audio_projection", "audio_attention", "temporal",
                  "speed_encoder", "vae")


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path  # the checkpoints/<step>/ folder
    stage: int  # the training stage that wrote it
    train_size: int  # training resolution in pixels
    annotation: dict[str, Any]  # annotation.json: fps, crop_scale, audio feature settings
    temporal_positions: int  # motion + target frames the temporal layers can take
    train_timesteps: int  # length of the training noise schedule (DDIM steps can't exceed it)
    drop_speed: float  # share of stage-3 samples trained without speed (0: the model always had one)

    @property
    def fps(self) -> float:
        return float(self.annotation["fps"])

    @property
    def crop_scale(self) -> float:
        from emo_annotate.config import ClipConfig

        return float(self.annotation.get("crop_scale") or ClipConfig().crop_scale)

    @property
    def audio_features(self) -> dict[str, Any]:
        return self.annotation["audio_features"]


def open_checkpoint(path: Path) -> CheckpointInfo:
    """Find and check a checkpoint without loading weights; InferError when it is unusable."""
    from emo_train.checkpoint import ANNOTATION, resolve_checkpoint
    from emo_train.models.presets import PRESETS
    from emo_train.config import TrainError

    if not Path(path).exists():
        raise InferError(f"--checkpoint: no such file or directory: {path}")
    try:
        folder = resolve_checkpoint(path)
    except TrainError as err:
        raise InferError(f"--checkpoint: {err}") from None
    missing = [name for name in COMPONENT_DIRS if not (folder / name).is_dir()]
    if missing:
        raise InferError(f"--checkpoint: {folder} lacks {', '.join(missing)} (not a complete emo-train checkpoint)")
    try:
        config = json.loads((folder / "config.json").read_text())
        annotation = json.loads((folder / ANNOTATION).read_text())
        temporal = json.loads((folder / "temporal" / "config.json").read_text())
        schedule = folder / "scheduler" / "scheduler_config.json"
        train_timesteps = json.loads(schedule.read_text())["num_train_timesteps"] if schedule.is_file() else 1000
    except (OSError, ValueError, KeyError) as err:
        raise InferError(f"--checkpoint: cannot read its settings ({err}); was it written by emo-train?") from None
    data = config.get("data", {})
    size = data.get("size") or PRESETS[config.get("model", {}).get("preset", "sd15")].resolution
    return CheckpointInfo(
        folder, int(config.get("stage", 0)), int(size), annotation, int(temporal["max_seq_length"]), int(train_timesteps),
        float(data.get("drop_speed", 0.0)),  # checkpoints from before speed dropout have none
    )


def load_weights(info: CheckpointInfo, device, dtype):
    """(EMOModel, AutoencoderKL, DDIMScheduler) of a checkpoint, in eval mode on `device` / `dtype`."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from emo_train.models import EMOModel

    try:
        model = EMOModel.from_pretrained(info.path, torch_dtype=dtype)
        vae = AutoencoderKL.from_pretrained(info.path / "vae", torch_dtype=dtype)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InferError(f"--checkpoint: cannot load {info.path}: {first}") from None
    model.to(device).eval().requires_grad_(False)
    vae.to(device).eval().requires_grad_(False)
    # the training noise schedule, sampled with DDIM (SD1.5's inference settings)
    if (info.path / "scheduler").is_dir():
        train_schedule = DDIMScheduler.load_config(info.path / "scheduler")
    else:
        from emo_train.train import sd15_noise_scheduler

        train_schedule = sd15_noise_scheduler().config
    scheduler = DDIMScheduler.from_config(train_schedule, set_alpha_to_one=False, steps_offset=1, clip_sample=False)
    return model, vae, scheduler
