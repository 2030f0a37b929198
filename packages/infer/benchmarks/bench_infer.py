"""Inference speed; prints one JSON object.

For each size: one `emo_infer.generate` call (astronaut portrait, `--seconds` of synthesised
speech, DDIM `--steps`, audio guidance `--guidance`, speed conditioning), seconds per generated
frame and the share of the generation in VAE encode, ReferenceNet, denoising, VAE decode and the
rest (frame conversion, H.264/AAC encoding). References measured in the same run:

- bare denoising: the same number of `EMOModel.denoise` calls on the same shapes and features,
  nothing else: generation time / bare denoising is the pipeline's overhead factor;
- ReferenceNet per step: what the ReferenceNet would cost if it ran at every denoising step
  instead of once per clip (its measured per-clip time x steps).

Memory (`--memory`): peak RSS of fresh processes generating 10 s and 60 s of audio (1 DDIM step,
no guidance: the number of clips, not the steps, is what could make memory grow with length).

Checkpoints: `tiny` is trained for 2 steps by the real trainer on the bundled sample shards;
`sd15` is the full-size architecture with random weights (timing only, no download), saved and
loaded like a real checkpoint; run it on a GPU:

    uv run python packages/infer/benchmarks/bench_infer.py                       # tiny, CPU
    uv run python packages/infer/benchmarks/bench_infer.py --preset sd15 --sizes 512 --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch
from emo_annotate import samples
from emo_annotate.media import encode_wav
from emo_annotate.memory import peak_rss_mb


def sd15_random_checkpoint(root: Path) -> Path:
    """A complete checkpoint folder of the sd15 architecture with random weights (mel features)."""
    from diffusers import AutoencoderKL
    from emo_train.config import TrainConfig
    from emo_train.cost import SD15_VAE_CONFIG
    from emo_train.models import EMOModel, get_preset
    from emo_train.train import sd15_noise_scheduler

    folder = root / "sd15" / "checkpoints" / "0"
    EMOModel.from_preset(get_preset("sd15", audio_feature_shape=(320,))).save_pretrained(folder)
    AutoencoderKL(**SD15_VAE_CONFIG).save_pretrained(folder / "vae")
    sd15_noise_scheduler().save_pretrained(folder / "scheduler")
    config = TrainConfig.from_dict({"stage": 3, "shards": "-", "out": "-", "preset": "sd15", "init_from": "-"})
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    mel = {"kind": "mel", "n_mels": 80, "n_fft": 400, "frames_per_video_frame": 4, "shape": [320]}
    (folder / "annotation.json").write_text(json.dumps({"fps": 25.0, "size": 512, "crop_scale": 2.0,
                                                         "audio_rate": 16000, "audio_features": mel}))
    return folder


def bare_denoising(checkpoint: Path, size: int, clips: int, steps: int, guidance: float, device, dtype) -> float:
    """Seconds of `clips * steps` denoise calls alone, on the generation's shapes."""
    from emo_infer.checkpoint import load_weights, open_checkpoint

    info = open_checkpoint(checkpoint)
    model, _, _ = load_weights(info, device, dtype)
    batch = 2 if guidance != 1.0 else 1
    latent = size // 8
    with torch.inference_mode():
        reference = model.encode_reference(torch.randn(1, 4, latent, latent, device=device, dtype=dtype))
        reference = model.encode_motion(reference, torch.randn(1, 4, 4, latent, latent, device=device, dtype=dtype))
        if batch == 2:
            from emo_infer.pipeline import repeat_batch

            reference = repeat_batch(reference, 2)
        shape = tuple(model.audio_projection.config.feature_shape)
        window = 2 * model.audio_projection.config.context_frames + 1
        audio = torch.randn(batch, 12, window, *shape, device=device, dtype=dtype)
        mask = torch.ones(batch, 1, size, size, device=device, dtype=dtype)
        speed = torch.full((batch, 12), 10.0, device=device)
        noisy = torch.randn(batch, 4, 12, latent, latent, device=device, dtype=dtype)
        model.denoise(noisy, 500, reference, audio, mask, speed)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(clips * steps):
            model.denoise(noisy, 500, reference, audio, mask, speed)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return time.perf_counter() - start


MEMORY_CHILD = """
import json, sys
from emo_annotate.memory import peak_rss_mb
from emo_infer import generate
result = generate(checkpoint=sys.argv[1], image=sys.argv[2], audio=sys.argv[3], out=sys.argv[4], steps=1,
                  guidance=1.0, speed=12.0, device="cpu", progress=False)
print(json.dumps({"frames": result.frames, "peak_rss_mb": round(peak_rss_mb())}))
"""


def memory_by_length(checkpoint: Path, image: Path, work: Path, lengths=(10.0, 60.0)) -> list[dict]:
    """Peak RSS of a fresh process per audio length."""
    rows = []
    for seconds in lengths:
        audio = work / f"speech_{seconds:g}s.wav"
        audio.write_bytes(encode_wav(samples.synth_speech(seconds, seed=7)))
        done = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(checkpoint), str(image), str(audio), str(work / "memory.mp4")],
            capture_output=True, text=True, check=True,
        )
        rows.append({"audio_seconds": seconds, **json.loads(done.stdout.strip().splitlines()[-1])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("tiny", "sd15"), default="tiny")
    parser.add_argument("--sizes", default="64", help="comma-separated output sizes (tiny trains at 64)")
    parser.add_argument("--seconds", type=float, default=4.8, help="audio length (4.8 s = 120 frames = 10 clips)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--guidance", type=float, default=3.5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--memory", action="store_true", help="also peak RSS for 10 s and 60 s of audio (CPU)")
    args = parser.parse_args()

    from emo_infer import generate
    from emo_infer.pipeline import resolve_device

    device, dtype = resolve_device(args.device, args.dtype)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_infer_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.preset == "tiny":
        from emo_train.samples import tiny_checkpoint

        checkpoint = tiny_checkpoint(work / "tiny")
    else:
        checkpoint = sd15_random_checkpoint(work)
    image = work / "astronaut.png"
    cv2.imwrite(str(image), cv2.cvtColor(samples.astronaut_image(), cv2.COLOR_RGB2BGR))
    audio = work / "speech.wav"
    audio.write_bytes(encode_wav(samples.synth_speech(args.seconds, seed=5)))
    warm = work / "warm.wav"
    warm.write_bytes(encode_wav(samples.synth_speech(0.5, seed=6)))

    common = dict(checkpoint=checkpoint, image=image, speed=12.0, device=args.device, dtype=args.dtype, progress=False)
    report = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        + (torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"),
        "torch": torch.__version__, "preset": args.preset, "steps": args.steps, "guidance": args.guidance,
        "dtype": str(dtype).removeprefix("torch."), "audio_seconds": args.seconds, "runs": [],
    }
    for size in (int(s) for s in args.sizes.split(",")):
        generate(audio=warm, out=work / "warm.mp4", size=size, steps=2, **common)  # imports, first calls
        result = generate(audio=audio, out=work / f"out_{size}.mp4", size=size, steps=args.steps,
                          guidance=args.guidance, **common)
        parts = {k: result.seconds.get(k, 0.0) for k in ("vae_encode", "reference_net", "denoise", "vae_decode", "write_and_other")}
        generation = sum(parts.values())
        bare = bare_denoising(checkpoint, size, result.clips, args.steps, args.guidance, device, dtype)
        per_clip_reference = parts["reference_net"] / result.clips
        report["runs"].append({
            "size": size,
            "frames": result.frames,
            "clips": result.clips,
            "s_per_frame": round(generation / result.frames, 4),
            "s_per_frame_with_setup": round(result.seconds["total"] / result.frames, 4),
            "setup_s": {k: round(result.seconds[k], 2) for k in ("inputs", "features", "load")},
            "share": {k: round(v / generation, 3) for k, v in parts.items()},
            "bare_denoising_s": round(bare, 2),
            "generation_over_bare_denoising": round(generation / bare, 3),
            "reference_net_share_if_run_per_step": round(
                per_clip_reference * args.steps / (generation - parts["reference_net"] + per_clip_reference * args.steps), 3
            ),
        })
    report["peak_rss_mb"] = round(peak_rss_mb())
    if args.memory:
        report["memory_by_audio_length"] = memory_by_length(checkpoint, image, work)
    if device.type == "cuda":
        report["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
