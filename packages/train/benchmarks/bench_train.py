"""Training throughput on this machine; prints one JSON object.

- loader: `EMODataset` stage-2 samples (4 motion + 12 target frames = 16 decoded frames, 512x512,
  audio windows, mask) per second in one process (= per DataLoader worker), next to plain PyAV
  decoding (`av.open`, `to_ndarray(format="rgb24")`) of the first 16 frames of the same mp4s in
  the same run: the loader's overhead over bare decoding.
- step: tiny-preset optimizer step time on CPU (VAE encode + forward + backward + AdamW), stage 1
  (64 px images) and stage 2 (64 px, 4 + 12 frames), batch 1.

Shards are made by the real annotator from the carphone talking head (upscaled to 512 px).

    .venv/bin/python packages/train/benchmarks/bench_train.py [--size 512] [--passes 3] [--steps 10]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import av
import torch
from emo_annotate.samples import make_sample_shards


def clip_mp4s(shards: Path) -> list[bytes]:
    import tarfile

    from emo_annotate.shards import shard_urls

    out = []
    for url in shard_urls(shards):
        with tarfile.open(url) as tar:
            out += [tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".mp4")]
    return out


def pyav_rate(mp4s: list[bytes], frames: int, passes: int) -> float:
    """Clips per second: decode the first `frames` frames of each mp4 to RGB arrays."""
    start = time.perf_counter()
    for _ in range(passes):
        for data in mp4s:  # (a warm-up pass is not needed: the loader's warm-up ran PyAV first)
            with av.open(io.BytesIO(data)) as container:
                for i, frame in enumerate(container.decode(video=0)):
                    frame.to_ndarray(format="rgb24")
                    if i + 1 == frames:
                        break
    return passes * len(mp4s) / (time.perf_counter() - start)


def loader_rate(shards: Path, size: int, passes: int) -> tuple[float, int]:
    from emo_train.data import DataConfig, EMODataset

    cfg = DataConfig(shards=shards, stage=2, size=size, frames=12, motion_frames=4, shuffle_buffer=0, seed=0)
    dataset = EMODataset(cfg)
    sum(1 for _ in dataset)  # warm-up pass (first-call costs of torch / PyAV), not timed
    start, clips = time.perf_counter(), 0
    for epoch in range(passes):
        dataset.set_epoch(epoch)
        clips += sum(1 for _ in dataset)
    return clips / (time.perf_counter() - start), clips


def step_time(shards64: Path, stage: int, steps: int, run_dir: Path) -> float:
    from emo_train.config import TrainConfig
    from emo_train.train import Trainer

    cfg = TrainConfig.from_dict({"stage": stage, "shards": str(shards64), "out": str(run_dir), "loader_workers": 0,
                                 "progress": False, "max_steps": steps})
    trainer = Trainer(cfg)
    batches = iter(trainer.loader)
    batch = [next(batches) for _ in range(steps + 1)]  # data excluded from the timing
    trainer.optimizer_step(iter(batch[:1]))  # warm-up
    start = time.perf_counter()
    trainer.optimizer_step(iter(batch[1:2]))
    for b in batch[2:]:
        trainer.optimizer_step(iter([b]))
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the step timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "big").mkdir()
        (tmp / "small").mkdir()
        t0 = time.perf_counter()
        big = make_sample_shards(tmp / "big", size=args.size)
        small = make_sample_shards(tmp / "small", size=64)
        annotate_s = time.perf_counter() - t0
        mp4s = clip_mp4s(big)
        loader, clips = loader_rate(big, args.size, args.passes)
        decode = pyav_rate(mp4s, 16, args.passes)
        result = {
            "machine": {"cpus": os.cpu_count(), "torch_threads": args.threads, "platform": platform.platform(),
                        "torch": torch.__version__},
            "shards": {"size": args.size, "clips": len(mp4s), "annotate_s": round(annotate_s, 1)},
            "loader_stage2_clips_per_s_per_worker": round(loader, 2),
            "pyav_decode_16_frames_clips_per_s": round(decode, 2),
            "loader_vs_decode": round(loader / decode, 3),
            "tiny_step_s": {
                "stage1_64px": round(step_time(small, 1, args.steps, tmp / "run1"), 4),
                "stage2_64px_4+12_frames": round(step_time(small, 2, args.steps, tmp / "run2"), 4),
            },
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
