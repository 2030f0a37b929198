"""Data-parallel training with Ray Train: two CPU workers (gloo) end with identical weights."""

from __future__ import annotations

import json

import pytest
from emo_train.checkpoint import last_checkpoint
from emo_train.config import TrainConfig
from emo_train.models import EMOModel
from emo_train.train import train, weights_digest


def test_two_ray_train_workers_end_with_identical_weights(train_shards, tmp_path):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    cfg = TrainConfig.from_dict({
        "stage": 1, "shards": str(train_shards), "out": str(tmp_path / "run"), "max_steps": 2, "log_every": 1,
        "loader_workers": 0, "progress": False, "lr": 1e-3, "num_workers": 2,
    })
    summary = train(cfg)
    assert summary["world_size"] == 2 and summary["step"] == 2
    digests = summary["weight_digests"]  # computed by each worker after its last step
    assert len(digests) == 2 and digests[0] == digests[1]
    # rank 0 wrote the checkpoint, and it holds those weights
    assert weights_digest(EMOModel.from_pretrained(last_checkpoint(tmp_path / "run"))) == digests[0]
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2]  # one writer
    # both workers trained: 2 samples per step (batch 1 each); the workers read disjoint shards
    assert summary["skip_counts"]["yielded"] >= 2
