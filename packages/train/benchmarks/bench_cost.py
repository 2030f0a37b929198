"""FLOPs and memory of the `sd15` training steps and generated frames, counted on fake tensors
(`emo_train.cost`: the real code, no GPU, no weights); writes `cost_sd15.json` next to this file
(read by `gpu_check.py` for MFU) and prints a markdown summary.

    uv run python packages/train/benchmarks/bench_cost.py [--preset sd15] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def measure(preset: str, size: int, frames: int, motion_frames: int, steps: int, guidance: float) -> dict:
    from emo_train.cost import generation_cost, training_step_cost

    report = {"preset": preset, "size": size, "frames": frames, "motion_frames": motion_frames, "batch": 1,
              "mixed_precision": "bf16", "torch": torch.__version__, "training": [], "generation": {}}
    for stage in (1, 2, 3):
        for checkpointing in (False, True):
            start = time.perf_counter()
            cost = training_step_cost(stage, preset, size, frames, motion_frames, 1, "bf16", checkpointing)
            report["training"].append({
                "stage": stage, "gradient_checkpointing": checkpointing, "flops": cost.flops,
                "hardware_flops": cost.hardware_flops, "flops_by_part": cost.flops_by_part,
                "parameters": cost.parameters, "trainable_parameters": cost.trainable_parameters,
                "bytes": cost.bytes, "counted_in_s": round(time.perf_counter() - start, 1),
            })
    report["generation"] = {"steps": steps, "guidance": guidance, "frames_per_clip": frames,
                            "motion_frames": motion_frames,
                            "flops": generation_cost(preset, size, steps, guidance, frames, motion_frames)}
    return report


def markdown(report: dict) -> str:
    tf, gb = 1e12, 1e9
    lines = ["| stage | checkpointing | TFLOP/step (model) | with recompute | VAE enc | ReferenceNet | backbone fwd | backward "
             "| trainable params | weights GB | grads GB | AdamW GB | activations GB | peak GB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["training"]:
        p, b = row["flops_by_part"], row["bytes"]
        lines.append(
            f"| {row['stage']} | {'on' if row['gradient_checkpointing'] else 'off'} | {row['flops'] / tf:.1f} | "
            f"{row['hardware_flops'] / tf:.1f} | {p['vae_encode'] / tf:.1f} | {p['reference_net'] / tf:.1f} | "
            f"{p['backbone'] / tf:.1f} | {p['backward'] / tf:.1f} | {row['trainable_parameters'] / 1e6:.0f} M | "
            f"{b['weights'] / gb:.2f} | {b['gradients'] / gb:.2f} | {b['optimizer'] / gb:.2f} | "
            f"{b['activations'] / gb:.2f} | {b['peak'] / gb:.2f} |")
    g = report["generation"]["flops"]
    lines += ["", "| per generated frame | TFLOP |", "|---|---|"]
    lines += [f"| {part} | {g[part] / tf:.2f} |" for part in ("denoise", "vae_decode", "vae_encode", "reference_net", "per_frame")]
    lines.append(f"| once per video (reference) | {g['per_video'] / tf:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sd15")
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--motion-frames", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--guidance", type=float, default=3.5)
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default: cost_<preset>.json here)")
    args = parser.parse_args()
    size = args.size or (64 if args.preset == "tiny" else 512)
    report = measure(args.preset, size, args.frames, args.motion_frames, args.steps, args.guidance)
    out = args.out or HERE / f"cost_{args.preset}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
