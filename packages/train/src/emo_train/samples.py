"""A tiny but real checkpoint for tests, benchmarks and demos of the packages above: the real
trainer, a few steps of the `tiny` preset on shards the real annotator made from the bundled
talking head (`emo_annotate.samples.make_sample_shards`)."""

from __future__ import annotations

from pathlib import Path

from emo_annotate.samples import make_sample_shards

from .config import TrainConfig
from .train import train


def train_tiny_checkpoint(shards: Path, out: Path, stage: int = 3, steps: int = 2, lr: float = 1e-3) -> Path:
    """Train `steps` optimizer steps of the tiny preset on `shards` into run directory `out`;
    returns the checkpoint folder (every component, VAE, scheduler, annotation.json)."""
    cfg = TrainConfig.from_dict({
        "stage": stage, "shards": str(shards), "out": str(out), "loader_workers": 0, "progress": False,
        "shuffle_buffer": 4, "max_steps": steps, "lr": lr,
    })
    return Path(train(cfg)["checkpoint"])


def tiny_checkpoint(root: Path, stage: int = 3, steps: int = 2, wav2vec2: str | None = None) -> Path:
    """Sample shards under `root/annotated` (mel features, or wav2vec2 of the model at `wav2vec2`)
    and a tiny checkpoint trained on them under `root/run`."""
    shards = make_sample_shards(Path(root) / "annotated", wav2vec2=wav2vec2)
    return train_tiny_checkpoint(shards, Path(root) / "run", stage=stage, steps=steps)
