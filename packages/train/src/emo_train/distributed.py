"""Data-parallel training with Ray Train: one `Trainer` per worker under `TorchTrainer`.

Ray Train starts the workers and the torch.distributed process group (gloo on CPU, NCCL with
GPUs); each worker reads its own shards (the data pipeline splits by node rank), gradients are
averaged by DDP, and rank 0 writes checkpoints, metrics and the summary to the run directory
(which must be shared storage on a multi-machine cluster).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .config import TrainConfig, TrainError


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """Runs inside every Ray Train worker."""
    import ray.train
    import ray.train.torch
    import torch

    from .train import trainer_class

    torch.set_num_threads(loop_config["threads"])
    cfg = TrainConfig.from_dict(loop_config["config"])
    context = ray.train.get_context()
    device = ray.train.torch.get_device() if cfg.distributed.gpu else torch.device("cpu")
    summary = trainer_class(cfg)(cfg, context.get_world_rank(), context.get_world_size(), device).fit()
    ray.train.report({"step": summary["step"]})


def train_with_ray(cfg: TrainConfig) -> dict[str, Any]:
    """Train `cfg` on `num_workers` Ray Train workers; returns the summary rank 0 wrote."""
    import json

    import ray
    from emo_annotate.ray_env import init_ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from .train import SUMMARY

    run_dir = Path(cfg.run.out).resolve()
    cfg.run.out = str(run_dir)  # workers may run in another working directory
    shards = cfg.data.shards
    if "://" not in shards and not shards.startswith("pipe:") and Path(shards).exists():
        cfg.data.shards = str(Path(shards).resolve())
    started = False
    if not ray.is_initialized():
        # a local Ray has a CPU slot per worker, even on a smaller machine
        init_ray(cfg.distributed.address, num_cpus=max(os.cpu_count() or 1, cfg.distributed.num_workers + 1))
        started = True
    try:
        threads = max(1, (os.cpu_count() or 1) // cfg.distributed.num_workers)
        trainer = TorchTrainer(
            _worker_loop,
            train_loop_config={"config": cfg.to_dict(), "threads": threads},
            scaling_config=ScalingConfig(
                num_workers=cfg.distributed.num_workers,
                use_gpu=cfg.distributed.gpu,
                resources_per_worker={"CPU": 1, **({"GPU": 1} if cfg.distributed.gpu else {})},
            ),
            run_config=RunConfig(name="ray_train", storage_path=str(run_dir / "ray")),
        )
        try:
            trainer.fit()
        except Exception as err:
            cause = err
            while cause.__cause__ is not None:
                cause = cause.__cause__
            if isinstance(cause, TrainError):
                raise TrainError(str(cause)) from None
            raise
    finally:
        if started:
            ray.shutdown()
    return json.loads((run_dir / SUMMARY).read_text())
