"""The sd15 path on a lent GPU, in one short run (a few minutes); writes a JSON of results.

With random full-size weights (no download, nothing saved to disk), in bf16 autocast:

- training: one optimizer step of each stage (512 px, 4 + 12 frames, batch 1) with and without
  gradient checkpointing, through `emo_train.train.TrainingStep` (uint8 frames handed over as the
  loader hands them, VAE encoding, fused AdamW), plus stage 2 with a warm latent cache and with
  channels-last: seconds per step (after a warm-up step), peak GPU memory, and model FLOP
  utilisation = counted FLOPs per step (`cost_sd15.json`, from `bench_cost.py`) / seconds / the
  card's dense bf16 peak;
- two Ray Train workers (DDP) when two GPUs and Ray are there, else the reason it was skipped;
- inference: `emo_infer`'s clip loop at 512 px, 40 DDIM steps with audio guidance, float16 (its
  GPU default), frames H.264-encoded as `emo-infer` writes them: seconds per frame after a
  warm-up clip (face detection, audio features and weight loading, paid once per video, are not in it).

`--smoke` runs the same code with the tiny preset at 64 px and 2 DDIM steps (on the CPU when
there is no GPU), so the script is known to work before any GPU time is spent.

    python pipelines/gpu_check.py [--smoke] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

COSTS = Path(__file__).resolve().parents[1] / "packages" / "train" / "benchmarks"  # cost_<preset>.json from bench_cost.py

# dense bf16/fp16 tensor-core peaks (no sparsity), TFLOP/s, by the name torch reports; the first match wins
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0), ("H800", 989.0),
    ("GH200", 989.0), ("A100", 312.0), ("L40S", 362.0), ("A10G", 125.0), ("L4", 121.0),
)


def card_peak_tflops(name: str) -> float | None:
    return next((peak for key, peak in PEAK_TFLOPS if key in name), None)


class Clock:
    """Wall time of GPU work (synchronised) and the peak memory it allocated."""

    def __init__(self, device: torch.device):
        self.device = device

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gb(self) -> float | None:
        return round(torch.cuda.max_memory_allocated(self.device) / 1e9, 2) if self.device.type == "cuda" else None


# ------------------------------------------------------------------------------------ training


def training_flops(preset: str, size: int, frames: int, motion_frames: int) -> dict[tuple[int, bool], dict]:
    """(stage, checkpointing) -> counted cost: from cost_<preset>.json when it matches, else counted now."""
    saved = COSTS / f"cost_{preset}.json"
    if saved.is_file():
        report = json.loads(saved.read_text())
        if (report["size"], report["frames"], report["motion_frames"]) == (size, frames, motion_frames):
            return {(row["stage"], row["gradient_checkpointing"]): row for row in report["training"]}
    from emo_train.cost import training_step_cost

    out = {}
    for stage in (1, 2, 3):
        for checkpointing in (False, True):
            cost = training_step_cost(stage, preset, size, frames, motion_frames, 1, "bf16", checkpointing)
            out[(stage, checkpointing)] = {"flops": cost.flops, "flops_by_part": cost.flops_by_part}
    return out


def time_training(model, vae, device, stage: int, checkpointing: bool, size: int, frames: int, motion_frames: int,
                  steps: int, latent_cache: Path | None = None, world=None) -> dict:
    """Seconds per optimizer step (mean of `steps` after one warm-up) and peak memory of one
    configuration; the model's weights are shared between configurations."""
    from emo_train.config import OptimOptions
    from emo_train.cost import synthetic_batch
    from emo_train.latent_cache import LatentCache
    from emo_train.train import TrainingForward, TrainingStep, make_optimizer

    clock = Clock(device)
    trainable = model.set_trainable_stage(stage)
    model.train()
    for unet in (model.backbone, model.reference_net):
        unet.enable_gradient_checkpointing() if checkpointing else unet.disable_gradient_checkpointing()
    model.gradient_checkpointing = checkpointing
    net = TrainingForward(model)
    if world is not None:  # a Ray Train worker: gradients averaged by DDP
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    cache = LatentCache(latent_cache, "gpu-check") if latent_cache is not None else None
    step = TrainingStep(net, vae, stage, device, torch.bfloat16, cache)
    optimizer = make_optimizer(trainable, OptimOptions(), device)
    batch = synthetic_batch(model, stage, 1, size, frames, motion_frames)
    if device.type == "cuda":
        batch = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    generator = torch.Generator(device).manual_seed(0)

    def one_step() -> float:
        loss = step.loss(batch, generator)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    clock.reset_peak()
    loss = one_step()  # warm-up: allocations, kernel choices (and fills the latent cache)
    clock.sync()
    start = time.perf_counter()
    for _ in range(steps):
        loss = one_step()
    clock.sync()
    seconds = (time.perf_counter() - start) / steps
    result = {"s_per_step": round(seconds, 4), "peak_gb": clock.peak_gb(), "loss": round(loss, 4)}
    del optimizer, step, net
    return result


def training_runs(args, device, report: dict, deadline: float) -> None:
    from emo_train.cost import random_model
    from emo_train.models import use_channels_last

    flops = training_flops(args.preset, args.size, args.frames, args.motion_frames)
    peak = report["peak_tflops"]
    with torch.device(device):
        model, vae = random_model(args.preset)
    rows = report["training"] = []
    configs = [(stage, checkpointing, None) for stage in (1, 2, 3) for checkpointing in (False, True)]
    configs += [(2, True, "latent_cache"), (2, True, "channels_last")]
    with tempfile.TemporaryDirectory() as cache_dir:
        for stage, checkpointing, variant in configs:
            row = {"stage": stage, "gradient_checkpointing": checkpointing, "variant": variant}
            if time.perf_counter() > deadline:
                rows.append({**row, "skipped": "time budget spent"})
                continue
            try:
                if variant == "channels_last":
                    for module in (model.backbone, model.reference_net, model.face_locator, vae):
                        use_channels_last(module)
                timing = time_training(model, vae, device, stage, checkpointing, args.size, args.frames,
                                       args.motion_frames, args.train_steps,
                                       latent_cache=Path(cache_dir) if variant == "latent_cache" else None)
                counted = flops[(stage, checkpointing)]
                step_flops = counted["flops"] - (counted["flops_by_part"]["vae_encode"] if variant == "latent_cache" else 0)
                row.update(timing, flops_per_step=step_flops)
                if peak:
                    row["mfu"] = round(step_flops / timing["s_per_step"] / (peak * 1e12), 3)
            except torch.OutOfMemoryError as err:
                row["error"] = f"out of memory: {str(err).splitlines()[0]}"
            except Exception as err:  # keep measuring the other configurations
                row["error"] = f"{type(err).__name__}: {err}"
                traceback.print_exc()
            rows.append(row)
            print(json.dumps(row), flush=True)
    del model, vae
    Clock(device).reset_peak()


# ------------------------------------------------------------------------------------ Ray Train


def _ray_worker(config: dict) -> None:
    import hashlib

    import ray.train
    import ray.train.torch
    from emo_train.cost import random_model

    context = ray.train.get_context()
    device = ray.train.torch.get_device() if config["gpu"] else torch.device("cpu")
    torch.manual_seed(0)  # the same random weights on every worker
    with torch.device(device):
        model, vae = random_model(config["preset"])
    timing = time_training(model, vae, device, 2, True, config["size"], config["frames"], config["motion_frames"],
                           config["steps"], world=(context.get_world_rank(), context.get_world_size()))
    digest = hashlib.sha256()
    for _, parameter in sorted(model.temporal.state_dict().items()):
        digest.update(parameter.float().cpu().numpy().tobytes())
    rank = context.get_world_rank()
    Path(config["results"], f"rank{rank}.json").write_text(json.dumps({**timing, "weights_sha256": digest.hexdigest()}))
    ray.train.report({"rank": rank})


def ray_two_workers(args, device) -> dict:
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and gpus < 2:
        return {"skipped": f"{gpus} GPU on this machine"}
    try:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError:
        return {"skipped": "ray is not installed here"}
    gpu = device.type == "cuda"
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as storage:
            trainer = TorchTrainer(
                _ray_worker,
                train_loop_config={"gpu": gpu, "preset": args.preset, "size": args.size, "frames": args.frames,
                                   "motion_frames": args.motion_frames, "steps": args.train_steps, "results": storage},
                scaling_config=ScalingConfig(num_workers=2, use_gpu=gpu, resources_per_worker={"CPU": 1, **({"GPU": 1} if gpu else {})}),
                run_config=RunConfig(name="gpu_check", storage_path=storage),
            )
            trainer.fit()
            ranks = [json.loads(Path(storage, f"rank{rank}.json").read_text()) for rank in range(2)]
    finally:
        ray.shutdown()
    return {"workers": 2, "stage": 2, "gradient_checkpointing": True, "ranks": ranks,
            "same_weights_after_steps": ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]}


# ------------------------------------------------------------------------------------ inference


def time_inference(args, device, dtype, channels_last: bool, workdir: Path) -> dict:
    """Seconds per frame of the clip loop (after a warm-up clip), frames written as emo-infer writes them."""
    from emo_infer.api import open_video_writer
    from emo_infer.audio import DrivingAudio
    from emo_infer.pipeline import EMOPipeline, clip_count
    from emo_train.cost import generation_cost, random_model
    from emo_train.models import use_channels_last
    from emo_train.train import sd15_noise_scheduler

    from diffusers import DDIMScheduler

    with torch.device(device):
        model, vae = random_model(args.preset)
    model.to(dtype).eval().requires_grad_(False)
    vae.to(dtype)
    if channels_last:
        for module in (model.backbone, model.reference_net, model.face_locator, vae):
            use_channels_last(module)
    scheduler = DDIMScheduler.from_config(sd15_noise_scheduler().config, set_alpha_to_one=False, steps_offset=1)
    pipeline = EMOPipeline(model, vae, scheduler, device, dtype)
    rng = np.random.default_rng(0)
    size = args.size
    portrait = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
    frames = args.frames * args.clips
    feature_shape = tuple(model.audio_projection.config.feature_shape)
    features = rng.standard_normal((frames, *feature_shape)).astype(np.float16)
    speed = np.full(frames, 15.0, np.float32)
    silence = np.zeros((1, 16000), np.float32)
    driving = DrivingAudio(silence[0], silence, 16000, frames)

    def run(num_frames: int, out: Path) -> float:
        clock = Clock(device)
        clock.sync()
        start = time.perf_counter()
        with open_video_writer(out, 25.0, driving, crf=18) as writer:
            for rgb in pipeline.generate(portrait, mask, features, speed, num_frames, steps=args.ddim_steps,
                                         guidance=3.5, frames_per_clip=args.frames, motion_frames=args.motion_frames,
                                         progress=False):
                writer.add(rgb)
        clock.sync()
        return time.perf_counter() - start

    Clock(device).reset_peak()
    run(args.frames, workdir / "warm.mp4")  # kernels, allocations
    pipeline.timings.seconds.clear()
    seconds = run(frames, workdir / "timed.mp4")
    parts = {k: round(v / frames, 4) for k, v in pipeline.timings.seconds.items()}
    counted = generation_cost(args.preset, size, args.ddim_steps, 3.5, args.frames, args.motion_frames) \
        if args.smoke else json.loads((COSTS / f"cost_{args.preset}.json").read_text())["generation"]["flops"]
    result = {"channels_last": channels_last, "dtype": str(dtype).removeprefix("torch."), "frames": frames,
              "clips": clip_count(frames, args.frames), "s_per_frame": round(seconds / frames, 4),
              "s_per_frame_by_part": parts, "peak_gb": Clock(device).peak_gb(),
              "flops_per_frame": counted["per_frame"]}
    if args.peak_tflops:
        result["mfu"] = round(counted["per_frame"] / (seconds / frames) / (args.peak_tflops * 1e12), 3)
    del pipeline, model, vae
    Clock(device).reset_peak()
    return result


# ------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny preset, 64 px, 2 DDIM steps: check the script anywhere")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting new measurements after this")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak (default: by its name)")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: training, ray, inference")
    args = parser.parse_args()
    started = time.perf_counter()
    deadline = started + args.budget_s
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.preset = "tiny" if args.smoke else "sd15"
    args.size = 64 if args.smoke else 512
    args.frames, args.motion_frames = 12, 4
    args.ddim_steps = 2 if args.smoke else 40
    args.clips = 2
    args.train_steps = 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    args.peak_tflops = args.peak_tflops or (card_peak_tflops(name) if device.type == "cuda" else None)
    report = {
        "device": name, "torch": torch.__version__, "python": platform.python_version(), "preset": args.preset,
        "size": args.size, "frames": args.frames, "motion_frames": args.motion_frames, "peak_tflops": args.peak_tflops,
        "gpus": torch.cuda.device_count() if device.type == "cuda" else 0,
    }
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # float32 leftovers (loss, optimizer) on tensor cores
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    skip = set(filter(None, args.skip.split(",")))
    print(json.dumps(report), flush=True)

    if "training" not in skip:
        training_runs(args, device, report, deadline)
    if "ray" not in skip:
        try:
            report["ray_two_workers"] = ray_two_workers(args, device)
        except Exception as err:
            report["ray_two_workers"] = {"error": f"{type(err).__name__}: {err}"}
            traceback.print_exc()
        print(json.dumps({"ray_two_workers": report["ray_two_workers"]}), flush=True)
    if "inference" not in skip:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        report["inference"] = []
        with tempfile.TemporaryDirectory() as workdir:
            for channels_last in (False, True):
                if time.perf_counter() > deadline:
                    report["inference"].append({"channels_last": channels_last, "skipped": "time budget spent"})
                    continue
                try:
                    row = time_inference(args, device, dtype, channels_last, Path(workdir))
                except Exception as err:
                    row = {"channels_last": channels_last, "error": f"{type(err).__name__}: {err}"}
                    traceback.print_exc()
                report["inference"].append(row)
                print(json.dumps(row), flush=True)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} in {report['wall_s']} s")


if __name__ == "__main__":
    main()
