"""Checkpoints of a run, without pickles.

    RUN_DIR/checkpoints/<step>/
        backbone/ reference_net/ face_locator/ audio_projection/ audio_attention/ temporal/
        speed_encoder/           EMOModel.save_pretrained (diffusers folders, safetensors);
                                 absent in a `--stage vae` checkpoint
        vae/                     the VAE the latents were made with (for inference); the trained
                                 one in a `--stage vae` checkpoint
        config.json              the resolved TrainConfig
        annotation.json          the annotation the model was trained on (fps, crop, audio
                                 feature settings; `emo_train.data.annotation_settings`):
                                 inference prepares its inputs the same way
        training_state/
            optimizer.safetensors   AdamW state tensors ("<param index>.<name>")
            rng.safetensors         torch RNG states (global CPU, the trainer's noise generator)
            weights.safetensors     with a weight average (`ema_decay`): the raw trained parameters
                                    (the component folders hold the average)
            state.json              step, data position, skip counts, optimizer param groups,
                                    LR scheduler state
    RUN_DIR/checkpoints/last     text file: the name of the newest complete checkpoint folder

A checkpoint is written to `<step>.tmp/` and renamed when complete, then `last` is replaced
(also by rename), so a run killed while saving resumes from the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .config import TrainError

LAST = "last"
ANNOTATION = "annotation.json"


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    pointer = checkpoints_dir(run_dir) / LAST
    if not pointer.is_file():
        return None
    path = checkpoints_dir(run_dir) / pointer.read_text().strip()
    return path if path.is_dir() else None


def holds_model(checkpoint: Path) -> bool:
    """True for a checkpoint of stages 1-3; False for one of the VAE stage (only `vae/`)."""
    return (checkpoint / "backbone").is_dir()


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from a checkpoint folder, a `checkpoints/` folder or a run directory
    (their `last`). Raises TrainError when there is none."""
    path = Path(path)
    if holds_model(path) or (path / "vae").is_dir():
        return path
    for run_dir in (path, path.parent):
        found = last_checkpoint(run_dir)
        if found is not None and (path.name == "checkpoints" or run_dir == path):
            return found
    raise TrainError(f"no checkpoint found at {path} (expected a checkpoints/<step>/ folder or a run directory)")


def checkpoint_stage(checkpoint: Path) -> int | None:
    """The training stage that wrote a checkpoint folder (its `config.json`), None if unrecorded."""
    try:
        return int(json.loads((Path(checkpoint) / "config.json").read_text())["stage"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model,  # EMOModel, or None (VAE stage)
    vae,
    optimizer: torch.optim.Optimizer,
    scheduler,
    config: dict[str, Any],
    state: dict[str, Any],
    rng: dict[str, torch.Tensor],
    annotation: dict[str, Any],
    raw_weights: list[torch.Tensor] | None = None,
) -> Path:
    """Write `checkpoints/<step>/` and point `last` at it."""
    root = checkpoints_dir(run_dir)
    final = root / str(step)
    tmp = root / f"{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if model is not None:
        model.save_pretrained(tmp)
    vae.save_pretrained(tmp / "vae")
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (tmp / ANNOTATION).write_text(json.dumps(annotation, indent=2) + "\n")

    training = tmp / "training_state"
    training.mkdir()
    tensors, groups = _flatten_optimizer(optimizer.state_dict())
    save_file(tensors, str(training / "optimizer.safetensors"))
    save_file({k: v.contiguous() for k, v in rng.items()}, str(training / "rng.safetensors"))
    if raw_weights is not None:
        save_file({str(i): w.contiguous() for i, w in enumerate(raw_weights)}, str(training / "weights.safetensors"))
    full_state = {**state, "step": step, "optimizer_param_groups": groups, "scheduler": scheduler.state_dict()}
    (training / "state.json").write_text(json.dumps(full_state, indent=2) + "\n")

    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer_tmp = root / f"{LAST}.tmp"
    pointer_tmp.write_text(f"{step}\n")
    os.replace(pointer_tmp, root / LAST)
    return final


def load_training_state(checkpoint: Path, optimizer: torch.optim.Optimizer, scheduler) -> tuple[dict, dict]:
    """Restore optimizer and scheduler in place; return (state.json contents, RNG tensors)."""
    training = checkpoint / "training_state"
    if not (training / "state.json").is_file():
        raise TrainError(f"{checkpoint} holds no training state (was it written by emo-train?)")
    state = json.loads((training / "state.json").read_text())
    tensors = load_file(str(training / "optimizer.safetensors"))
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer_param_groups"]))
    scheduler.load_state_dict(state["scheduler"])
    return state, load_file(str(training / "rng.safetensors"))


def load_raw_weights(checkpoint: Path) -> list[torch.Tensor]:
    """The trained parameters as the optimizer left them (a run with a weight average stores the
    average in the component folders), in the trainer's parameter order."""
    tensors = load_file(str(checkpoint / "training_state" / "weights.safetensors"))
    return [tensors[str(i)] for i in range(len(tensors))]


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """`{"<index>.<name>": tensor}` of the per-parameter state (AdamW: step, exp_avg, exp_avg_sq)
    and the JSON-able parameter groups."""
    tensors = {}
    for index, values in state_dict["state"].items():
        for name, value in values.items():
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"{index}.{name}"] = tensor.detach().cpu().contiguous()
    return tensors, state_dict["param_groups"]


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = tensor
    return {"state": state, "param_groups": groups}
