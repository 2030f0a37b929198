"""Annotator throughput and memory on 720p talking-head video (a script, not a test).

Measured in one run, on the same file:
  decode            PyAV decode + constant-fps resampling, frames as YUV planes (no conversion)
  decode+landmarks  the annotator's first pass: decode, downscale, face detection + face mesh
  annotator         everything: both passes, crop, H.264 encode, pose, speed, mel, sample bytes
the same three on a BT.601 full-range copy (every stored crop is colour-converted), then the Ray
runner with 1 and 2 workers over several copies, and the peak memory of a worker on a 60 s 720p
video.

    uv run python packages/annotate/benchmarks/bench_annotate.py [--out bench_out] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np

from emo_annotate import samples
from emo_annotate.config import AnnotateConfig, RunConfig
from emo_annotate.landmarks import make_detector
from emo_annotate.media import iter_frames, probe, to_rgb, to_yuv420, write_video
from emo_annotate.pipeline import Annotator
from emo_annotate.runner import run

FPS = 25.0


def make_720p_talking_head(path: Path, seconds: float) -> Path:
    """The real carphone talking head, upscaled into a 1280x720 frame, played back and forth."""
    if path.exists():
        return path
    with av.open(str(samples.carphone_path())) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    cycle = frames + frames[::-1]
    n = int(seconds * fps)

    def frames_720p():
        for i in range(n):
            up = cv2.resize(cycle[i % len(cycle)], (880, 720), interpolation=cv2.INTER_CUBIC)
            canvas = np.zeros((720, 1280, 3), np.uint8)
            canvas[:, 200:1080] = up
            yield canvas

    write_video(path, frames_720p(), fps, audio=samples.synth_speech(n / fps), crf=20)
    return path


def full_range_bt601_copy(path: Path, out: Path) -> Path:
    """The same video re-encoded as phones write it (BT.601, full range, tagged): the annotator
    then converts every crop to the stored BT.709 limited range."""
    if out.exists():
        return out
    with av.open(str(path)) as source, av.open(str(out), mode="w") as target:
        stream = source.streams.video[0]
        video = target.add_stream("libx264", rate=stream.average_rate)
        video.width, video.height, video.pix_fmt = stream.codec_context.width, stream.codec_context.height, "yuvj420p"
        video.codec_context.colorspace, video.codec_context.color_range = 6, 2  # SMPTE170M (BT.601), JPEG
        video.options = {"crf": "20", "preset": "veryfast"}
        audio = target.add_stream("aac", rate=16000, layout="mono")
        for frame in source.decode(stream):
            yuv = frame.reformat(format="yuv420p", dst_colorspace="ITU601", dst_color_range="JPEG")
            yuv.pts, yuv.time_base = frame.pts, frame.time_base
            target.mux(video.encode(yuv))
        target.mux(video.encode())
        speech = samples.synth_speech(probe(path).duration_s)
        chunk = av.AudioFrame.from_ndarray(speech[None], format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = 16000, 0
        target.mux(audio.encode(chunk))
        target.mux(audio.encode())
    return out


def rate(frames: int, seconds: float) -> float:
    return frames / seconds if seconds > 0 else float("nan")


def bench_stages(path: Path, cfg: AnnotateConfig) -> dict:
    t = time.perf_counter()
    n = sum(1 for _, frame in iter_frames(path, FPS) if to_yuv420(frame))
    decode = rate(n, time.perf_counter() - t)

    detector = make_detector(cfg.landmarks)
    width = probe(path).width
    t = time.perf_counter()
    n = 0
    for _, frame in iter_frames(path, FPS):
        rgb = to_rgb(frame, cfg.detect_max_side)
        detector.detect(rgb, width / rgb.shape[1])
        n += 1
    landmarks = rate(n, time.perf_counter() - t)
    detector.close()

    annotator = Annotator(cfg)
    frames = []
    t = time.perf_counter()
    outcome = annotator.annotate(path, "bench", path.name, lambda s: frames.append(json.loads(s["json"])["frames"]))
    whole = rate(n, time.perf_counter() - t)
    return {
        "frames": n,
        "clips": outcome.clips,
        "clip_frames": int(sum(frames)),
        "decode_fps": round(decode, 1),
        "decode_landmarks_fps": round(landmarks, 1),
        "annotator_fps": round(whole, 1),
        "annotator_vs_decode_landmarks": round(whole / landmarks, 3),
    }


def bench_scaling(video: Path, work: Path, copies: int, cfg: AnnotateConfig) -> dict:
    inputs = work / "scaling_in"
    inputs.mkdir(parents=True, exist_ok=True)
    for i in range(copies):
        target = inputs / f"talk_{i}.mp4"
        if not target.exists():
            shutil.copy(video, target)
    frames = copies * sum(1 for _ in iter_frames(video, FPS))
    result = {"videos": copies, "frames": frames}
    for workers in (1, 2):
        out = work / f"scaling_out_{workers}"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        summary = run(inputs, out, cfg, RunConfig(num_workers=workers, progress=False))
        seconds = time.perf_counter() - t
        result[f"workers_{workers}"] = {"seconds": round(seconds, 1), "fps": round(rate(frames, seconds), 1),
                                        "clips": summary["clips"], "peak_rss_mb": summary["worker_peak_rss_mb"]}
    result["speedup_1_to_2"] = round(result["workers_2"]["fps"] / result["workers_1"]["fps"], 3)
    # the fixed cost inside those times: local Ray start plus actors with their models loaded
    for workers in (1, 2):
        start = startup_seconds(cfg, workers)
        result[f"startup_seconds_{workers}_workers"] = round(start, 1)
    result["speedup_1_to_2_without_startup"] = round(
        rate(frames, result["workers_2"]["seconds"] - result["startup_seconds_2_workers"])
        / rate(frames, result["workers_1"]["seconds"] - result["startup_seconds_1_workers"]),
        3,
    )
    return result


def startup_seconds(cfg: AnnotateConfig, workers: int) -> float:
    """Seconds from nothing to `workers` actors ready (Ray started, models loaded)."""
    import ray

    from emo_annotate.runner import UnitWorker, _init_ray

    t = time.perf_counter()
    _init_ray(RunConfig(num_workers=workers))
    try:
        actor = ray.remote(num_cpus=1)(UnitWorker)
        ray.get([actor.remote(cfg.to_dict(), ".", ".").pid.remote() for _ in range(workers)])
        return time.perf_counter() - t
    finally:
        ray.shutdown()


def peak_memory(video: Path) -> dict:
    """Peak RSS of a fresh process annotating the whole video (models included)."""
    code = (
        "import resource, sys; from pathlib import Path\n"
        "from emo_annotate.config import AnnotateConfig\nfrom emo_annotate.pipeline import Annotator\n"
        "Annotator(AnnotateConfig()).annotate(Path(sys.argv[1]), 'm', 'm.mp4', lambda s: None)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(video)], capture_output=True, text=True, check=True)
    return {"video_seconds": round(probe(video).duration_s, 1), "peak_rss_mb": round(float(out.stdout.strip().splitlines()[-1]), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--quick", action="store_true", help="short videos (a smoke run, not for BENCHMARKS.md)")
    parser.add_argument("--parts", default="stages,full_range,scaling,memory", help="comma-separated subset to run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = AnnotateConfig()
    short = make_720p_talking_head(args.out / f"talk720_{4 if args.quick else 20}s.mp4", 4 if args.quick else 20)
    long = make_720p_talking_head(args.out / f"talk720_{8 if args.quick else 60}s.mp4", 8 if args.quick else 60)
    parts = set(args.parts.split(","))
    report = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "python": platform.python_version()}}
    if "stages" in parts:
        report["stages_720p"] = bench_stages(short, cfg)
    if "full_range" in parts:  # a BT.601 full-range source: every crop is colour-converted
        report["stages_720p_bt601_full_range"] = bench_stages(full_range_bt601_copy(short, args.out / "talk720_601_full.mp4"), cfg)
    if "scaling" in parts:
        report["scaling"] = bench_scaling(short, args.out, 2 if args.quick else 4, cfg)
    if "memory" in parts:
        report["memory"] = peak_memory(long)
    print(json.dumps(report, indent=2))
    (args.out / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
