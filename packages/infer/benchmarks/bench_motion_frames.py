"""Motion frames at inference: the previous clip's raw final latents, or its decoded frames
encoded again by the VAE (what training feeds: VAE encodings of real frames). Prints one JSON object.

A tiny model is trained by the real trainer (stage 1, then stage 2) on the bundled sample shards;
its reference frame, face mask and audio come from a training clip. One first clip is generated,
then the second clip's motion frames are made both ways and compared:

- latent gap: |raw - re-encoded| / |re-encoded| over the 4 motion latents;
- training's own spread: |VAE sample - VAE mean| / |VAE mean| of real frames (the perturbation
  every motion latent had in training);
- statistics (per-channel mean and std) of raw latents, re-encoded latents and the encodings of
  the clip's real frames;
- feature gap: the ReferenceNet motion features' relative difference, averaged over positions;
- the second clip itself: its mean absolute difference between the two choices, and the jump
  across the clip boundary (|first frame of clip 2 - last frame of clip 1|) divided by the mean
  frame-to-frame change inside clip 2, for both choices;
- cost: seconds of the extra VAE encode of 4 frames against the clip's denoising.

    uv run python packages/infer/benchmarks/bench_motion_frames.py [--steps 300] [--ddim 40]
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def first_clip(shards: Path) -> dict:
    from emo_annotate.media import decode_mp4
    from emo_annotate.shards import shard_urls

    with tarfile.open(shard_urls(shards)[0]) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}
    key = sorted(members)[0].split(".", 1)[0]
    import cv2

    return {
        "frames": np.stack(decode_mp4(members[f"{key}.mp4"])),  # (T, S, S, 3)
        "mask": cv2.imdecode(np.frombuffer(members[f"{key}.mask.png"], np.uint8), cv2.IMREAD_GRAYSCALE),
        "audio": np.load(io.BytesIO(members[f"{key}.audio.npy"])),  # (T, 320)
    }


def trained_checkpoint(work: Path, steps: int) -> Path:
    from emo_annotate.samples import make_sample_shards
    from emo_train.config import TrainConfig
    from emo_train.train import train

    shards = make_sample_shards(work / "annotated")
    common = {"shards": str(shards), "loader_workers": 0, "progress": False, "shuffle_buffer": 8,
              "max_steps": steps, "lr": 1e-3, "save_every": steps}
    train(TrainConfig.from_dict({"stage": 1, "out": str(work / "s1"), **common}))
    summary = train(TrainConfig.from_dict({"stage": 2, "out": str(work / "s2"), "init_from": str(work / "s1"), **common}))
    return Path(summary["checkpoint"]), shards


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per stage")
    parser.add_argument("--ddim", type=int, default=40, help="DDIM steps per clip")
    parser.add_argument("--guidance", type=float, default=3.5)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from emo_infer.checkpoint import load_weights, open_checkpoint
    from emo_infer.pipeline import EMOPipeline, _clip_windows, _repeated

    work = Path(tempfile.mkdtemp(prefix="bench_motion_"))
    checkpoint, shards = trained_checkpoint(work, args.steps)
    clip = first_clip(shards)
    model, vae, scheduler = load_weights(open_checkpoint(checkpoint), torch.device("cpu"), torch.float32)
    pipeline = EMOPipeline(model, vae, scheduler, torch.device("cpu"), torch.float32)
    f, n = 12, 4
    frames = clip["frames"]
    reference = frames[-1]  # a frame outside the generated span, as in training
    mask = torch.from_numpy(clip["mask"].astype(np.float32) / 255)[None, None]
    generator = torch.Generator().manual_seed(0)

    with torch.inference_mode():
        features = model.encode_reference(pipeline.encode_frames(reference[None])[:, :, 0])
        attention = _repeated(features.attention, 2)
        audio1 = _clip_windows(clip["audio"], slice(0, f), 2)
        audio2 = _clip_windows(clip["audio"], slice(f, 2 * f), 2) if len(frames) >= 2 * f else audio1
        latents1 = pipeline.denoise_clip(torch.randn(1, 4, f, 8, 8, generator=generator), features, attention,
                                         audio1, mask, None, args.ddim, args.guidance)
        pixels1 = pipeline.decode(latents1)  # (f, S, S, 3)
        raw = latents1[:, :, -n:]
        start = time.perf_counter()
        reencoded = pipeline.encode_frames(pixels1[-n:])
        encode_s = time.perf_counter() - start

        real = torch.from_numpy(frames[:n]).permute(0, 3, 1, 2).float() / 127.5 - 1
        posterior = vae.encode(real).latent_dist
        real_mean = posterior.mean * vae.config.scaling_factor
        real_sample = posterior.sample(torch.Generator().manual_seed(1)) * vae.config.scaling_factor

        motion = {"raw": model.reference_net.encode_motion(raw), "reencoded": model.reference_net.encode_motion(reencoded)}
        feature_gap = float(np.mean([relative(motion["raw"][k], motion["reencoded"][k]) for k in motion["raw"]]))
        noise = torch.randn(1, 4, f, 8, 8, generator=generator)
        second, seconds = {}, {}
        for name, motion_features in motion.items():
            clip_features = type(features)(features.attention, motion_features)
            start = time.perf_counter()
            latents2 = pipeline.denoise_clip(noise, clip_features, attention, audio2, mask, None, args.ddim, args.guidance)
            seconds[name] = time.perf_counter() - start
            second[name] = pipeline.decode(latents2).astype(np.float64)

    def stats(latents: torch.Tensor) -> dict:
        x = latents.transpose(0, 1).flatten(1) if latents.ndim == 4 else latents[0].flatten(1)  # (4, ...)
        return {"mean": [round(v, 3) for v in x.mean(1).tolist()], "std": [round(v, 3) for v in x.std(1).tolist()]}

    def boundary(pixels: np.ndarray) -> float:
        jump = np.abs(pixels[0] - pixels1[-1].astype(np.float64)).mean()
        inside = np.mean([np.abs(pixels[i + 1] - pixels[i]).mean() for i in range(len(pixels) - 1)])
        return round(float(jump / inside), 3)

    report = {
        "training_steps_per_stage": args.steps, "ddim_steps": args.ddim, "guidance": args.guidance,
        "latent_gap_raw_vs_reencoded": round(relative(raw, reencoded), 3),
        "training_spread_vae_sample_vs_mean": round(relative(real_sample, real_mean), 3),
        "latent_stats": {"raw": stats(raw), "reencoded": stats(reencoded), "real_frames": stats(real_mean)},
        "motion_feature_gap": round(feature_gap, 3),
        "second_clip_mean_abs_difference_levels": round(float(np.abs(second["raw"] - second["reencoded"]).mean()), 2),
        "boundary_jump_over_inner_change": {name: boundary(pixels) for name, pixels in second.items()},
        "reencode_s": round(encode_s, 4),
        "clip_denoise_s": round(seconds["reencoded"], 3),
        "reencode_share_of_clip": round(encode_s / seconds["reencoded"], 4),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
