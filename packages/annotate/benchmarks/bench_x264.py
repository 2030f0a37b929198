"""The stored clips' encoder with and without x264's macroblock tree (a script, not a test).

`emo_annotate.media.STORED_X264_PARAMS` turns the macroblock tree off so that the same frames
always give the same bytes. This measures what that costs and what it buys, in one run: for a
talking-head clip (the astronaut photo swaying in plane, `emo_annotate.samples`) at 96 and 512
px, encoded as the annotator encodes (`Mp4Writer`, CRF 18, veryfast, one thread), with another
clip encoded in between each repeat as in a unit:
  bytes, mean and lowest per-frame luma PSNR against the frames given, ms per frame,
  and how many different outputs `--repeats` encodes of the same clip gave.

    uv run python packages/annotate/benchmarks/bench_x264.py [--frames 50] [--repeats 20]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import platform
import time

import av
import numpy as np

from emo_annotate import media, samples


def encode(frames: list[np.ndarray], params: str | None) -> tuple[bytes, float]:
    size = frames[0].shape[0]
    writer = media.Mp4Writer(25.0, size, size, 18, "veryfast", x264_params=params)
    start = time.perf_counter()
    for frame in frames:
        writer.add(frame)
    data = writer.finish()
    return data, (time.perf_counter() - start) * 1000 / len(frames)


def luma_psnr(frames: list[np.ndarray], data: bytes) -> np.ndarray:
    """Per-frame PSNR (dB) of the decoded luma against the luma of the frames given."""
    given = [media.rgb_to_stored_frame(f).to_ndarray(format="yuv420p")[: f.shape[0]] for f in frames]
    with av.open(io.BytesIO(data)) as container:
        decoded = [f.to_ndarray(format="yuv420p")[: given[0].shape[0]] for f in container.decode(video=0)]
    mse = np.array([np.mean((a.astype(np.float32) - b) ** 2) for a, b in zip(given, decoded)])
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-9))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, PyAV {av.__version__}, {args.frames} frames, {args.repeats} repeats")
    roll = samples.roll_trajectory(args.frames, 25.0)
    for size in (96, 512):
        clip = list(samples.rotated_astronaut_frames(roll, size=size))
        other = list(samples.rotated_astronaut_frames(roll[::-1] / 3, size=size, mirror=True))
        for params in (None, media.STORED_X264_PARAMS):
            outputs, ms = set(), []
            for _ in range(args.repeats):
                data, per_frame = encode(clip, params)
                outputs.add(hashlib.sha256(data).hexdigest())
                ms.append(per_frame)
                encode(other, params)
            psnr = luma_psnr(clip, data)
            print(f"{size:4d} px  x264-params {params or '(preset)':10s}  {len(data) / 1e3:8.1f} KB  "
                  f"luma PSNR mean {psnr.mean():.2f} min {psnr.min():.2f} dB  {np.median(ms):.2f} ms/frame  "
                  f"{len(outputs)} different output(s) in {args.repeats}")


if __name__ == "__main__":
    main()
