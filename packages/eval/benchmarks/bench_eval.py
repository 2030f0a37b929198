"""emo-eval benchmark: frames/s of each metric and the whole `compare`, against plain decoding of
the same videos measured in the same run.

Inputs: the real astronaut photo swaying along a known roll trajectory (512x512, 25 fps, speech
track), as "real" videos, and their mirror images as "generated" ones; the photo as portrait.
The issue's reference set is 10 videos of 10 s; `--videos` / `--seconds` shrink it on a busy
machine (the per-frame figures extrapolate linearly: every metric streams frame by frame).

    uv run python packages/eval/benchmarks/bench_eval.py [--videos 10] [--seconds 10] [--size 512]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def make_inputs(root: Path, videos: int, seconds: float, fps: float, size: int) -> None:
    from emo_annotate.media import write_video
    from emo_annotate.samples import astronaut_image, roll_trajectory, rotated_astronaut_frames, synth_speech

    for folder in ("generated", "real", "portraits"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    n = int(seconds * fps)
    for i in range(videos):
        roll = roll_trajectory(n, fps, amplitude=8.0 + i, hz=0.3 + 0.05 * i)
        speech = synth_speech(seconds, seed=i)
        frames = lambda mirror: (cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) if size != 512 else f  # noqa: E731
                                 for f in rotated_astronaut_frames(roll, mirror=mirror))
        write_video(root / "real" / f"v{i:02d}.mp4", frames(False), fps, audio=speech)
        write_video(root / "generated" / f"v{i:02d}.mp4", frames(True), fps, audio=speech)
        cv2.imwrite(str(root / "portraits" / f"v{i:02d}.png"), cv2.cvtColor(astronaut_image(), cv2.COLOR_RGB2BGR))


def decode_rate(root: Path, fps: float) -> float:
    from emo_eval.analysis import read_frames

    started, frames = time.perf_counter(), 0
    for path in sorted((root / "generated").glob("*.mp4")) + sorted((root / "real").glob("*.mp4")):
        for _ in read_frames(path, fps):
            frames += 1
    return frames / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--no-fid", action="store_true")
    args = parser.parse_args()
    import torch

    from emo_eval import compare

    fps = 25.0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_inputs(root, args.videos, args.seconds, fps, args.size)
        decode = decode_rate(root, fps)
        started, cpu_started = time.perf_counter(), time.process_time()
        report = compare(root / "generated", real=root / "real", portraits=root / "portraits", out=root / "report",
                         speed=10.0, fid=not args.no_fid, progress=False)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    frames = report["timings"]["frames"]  # generated + real frames analysed
    parts = report["timings"]["seconds"]
    print(f"torch threads {torch.get_num_threads()}; {args.videos} videos x {args.seconds:g} s at {args.size} px: "
          f"{frames} frames (generated + real)")
    print(f"{'part':<16}{'s':>9}{'frames/s':>11}{'ratio to decode':>17}")
    print(f"{'decode (ref)':<16}{frames / decode:>9.1f}{decode:>11.1f}{1.0:>17.2f}")
    for name, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
        if seconds > 0:
            print(f"{name:<16}{seconds:>9.1f}{frames / seconds:>11.1f}{frames / seconds / decode:>17.3f}")
    print(f"{'whole compare':<16}{wall:>9.1f}{frames / wall:>11.1f}{frames / wall / decode:>17.3f}")
    print(f"whole compare CPU time {cpu:.1f} s ({cpu / frames * 1000:.0f} ms per frame; wall / CPU = {wall / cpu:.2f}: "
          "above 1 / threads the machine was shared)")
    per_reference = wall / frames * (10 * 10 * fps * 2)
    print(f"extrapolated whole compare for 10 videos x 10 s (5000 frames): {per_reference / 60:.1f} min")
    print(json.dumps({"overall": report["overall"].get("distribution")}, default=str))


if __name__ == "__main__":
    main()
