"""Batching: a collate to batched tensors and a torch DataLoader over `EMODataset`."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from .config import DataConfig
from .counter import SkipCounter
from .dataset import EMODataset


def collate(samples: list[dict]) -> dict[str, Any]:
    """Stack samples into a batch.

    Tensors are stacked on a new first axis: `video` `(b, 3, f, S, S)`, `reference`
    `(b, 3, S, S)`, `mask` `(b, 1, S, S)`, `frame_indices` `(b, f)`; stages 2-3 add `motion`
    `(b, 3, n, S, S)`, `audio` `(b, f, ...)`, `speed` `(b, f)`. Flags become bool tensors `(b,)`,
    other numbers int64 / float32 tensors `(b,)`, strings (`key`, `url`) lists.
    """
    if not samples:
        raise ValueError("collate: empty batch")
    batch: dict[str, Any] = {}
    for name in samples[0]:
        values = [s[name] for s in samples]
        first = values[0]
        if isinstance(first, torch.Tensor):
            shapes = sorted({tuple(v.shape) for v in values})
            if len(shapes) > 1:
                hint = " (shards with different audio features? set DataConfig.audio_feature_shape)" if name == "audio" else ""
                raise ValueError(f"cannot batch '{name}': samples have shapes {shapes}{hint}")
            batch[name] = torch.stack(values)
        elif isinstance(first, bool):
            batch[name] = torch.tensor(values, dtype=torch.bool)
        elif isinstance(first, int):
            batch[name] = torch.tensor(values, dtype=torch.int64)
        elif isinstance(first, float):
            batch[name] = torch.tensor(values, dtype=torch.float32)
        else:
            batch[name] = values
    return batch


def make_dataloader(
    cfg: DataConfig,
    batch_size: int,
    num_workers: int = 0,
    *,
    counter: SkipCounter | None = None,
    drop_last: bool = False,
    **loader_kwargs: Any,
) -> DataLoader:
    """A `torch.utils.data.DataLoader` of collated batches of `cfg`'s samples.

    Workers read disjoint shards (`split_by_worker`); skips of every worker are summed in
    `loader.dataset.counter` (a `SkipCounter`, or `counter` when given). Extra keyword arguments
    (`pin_memory`, `persistent_workers`, `prefetch_factor`, `multiprocessing_context`, ...) go
    to the DataLoader. An iterable dataset has no length: with `repeat=False` an epoch ends when
    the shards are exhausted; use `drop_last=True` for fixed-size batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    dataset = EMODataset(cfg, counter)
    if num_workers > 0:
        # workers start from a fresh server process: a fork of this one copies the locks its other
        # threads hold (Ray's gRPC threads in a Ray Train worker or after a Ray run) and can hang
        loader_kwargs.setdefault("multiprocessing_context", "forkserver")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=drop_last,
        **loader_kwargs,
    )
