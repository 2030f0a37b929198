"""Annotator throughput, scaling and memory on talking-head video (a script, not a test).

Every ratio is against a reference measured in the same run on the same machine:

  cli         the whole CLI (`emo-annotate run`, local Ray started, 2 workers) on 6 copies of a 60 s
              720p talking head, against the floor: two processes, each decoding every source frame
              of 3 of the videos and running MediaPipe's face mesh on it (process start included on
              both sides). Per-stage worker seconds come from the run's progress.json; "without the
              H.264 encode" takes the encoder's seconds (per worker) off the CLI's wall time.
  stages      in one process on a 20 s 720p video: decode alone, the floor (decode + RGB + face mesh
              on every source frame) and the whole annotator, with its per-stage costs
  full_range  `stages` on a BT.601 full-range copy (every stored crop is colour-converted)
  scaling     the CLI with 1 and 2 workers on 4 copies of the 20 s video, and the fixed start-up cost
  encode      the stored clips' H.264 encode alone, per x264 preset, on 512x512 face crops of the 720p
              video: ms per frame against `veryfast` (the default), bytes, and PSNR of the decoded luma
  memory      peak RSS of a fresh process annotating 1 minute and 1 hour (--long-seconds) of the same talking head
              (carphone, 176x144, 128 px crops: the length is what matters, not the resolution)

    uv run python packages/annotate/benchmarks/bench_annotate.py [--parts cli,stages,...] [--out bench_out] [--quick]

Prints a table per part and writes OUT/report.json. Heavy: `cli` about 5 minutes and `memory`
about 10 on a quiet 2-core machine; run parts separately with --parts.
"""

from __future__ import annotations

import argparse
import io
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
from emo_annotate.config import AnnotateConfig
from emo_annotate.media import Mp4Writer, probe, to_yuv420, write_video
from emo_annotate.pipeline import Annotator

FPS = 25.0


# -- inputs -------------------------------------------------------------------------------------
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


def make_small_talking_head(path: Path, seconds: float) -> Path:
    """The carphone talking head at its own 176x144, played back and forth, with speech."""
    if path.exists():
        return path
    with av.open(str(samples.carphone_path())) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    cycle = frames + frames[::-1]
    n = int(seconds * FPS)
    speech = np.concatenate([samples.synth_speech(60.0, seed=i) for i in range(int(np.ceil(seconds / 60)))])[: int(seconds * 16000)]
    write_video(path, (cycle[i % len(cycle)] for i in range(n)), FPS, audio=speech)
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


def copies(video: Path, directory: Path, n: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        target = directory / f"talk_{i}.mp4"
        if not target.exists():
            shutil.copy(video, target)
    return directory


# -- the floor: decode every source frame + face mesh ---------------------------------------------
def floor_pass(paths: list[Path]) -> int:
    """Decode every source frame (one thread), convert it to RGB (one swscale context) and run
    MediaPipe's face mesh (video mode) on it; returns the frames."""
    import mediapipe as mp
    from av.video.reformatter import VideoReformatter

    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=False)
    reformatter = VideoReformatter()
    n = 0
    for path in paths:
        mesh.reset()
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            for frame in container.decode(stream):
                mesh.process(reformatter.reformat(frame, format="rgb24").to_ndarray())
                n += 1
    return n


def floor_processes(paths: list[Path], processes: int = 2) -> dict:
    """`processes` fresh processes share the videos; wall time from launch to the last exit."""
    groups = [paths[i::processes] for i in range(processes)]
    t = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--floor-worker", *map(str, g)], stdout=subprocess.PIPE, text=True,
                              stderr=subprocess.DEVNULL) for g in groups]
    frames = sum(int(p.communicate()[0].strip().splitlines()[-1]) for p in procs)
    return {"seconds": time.perf_counter() - t, "source_frames": frames}


# -- parts --------------------------------------------------------------------------------------
def bench_cli(video: Path, work: Path, n: int) -> dict:
    inputs = copies(video, work / "cli_in", n)
    paths = sorted(inputs.glob("*.mp4"))
    out = work / "cli_out"
    floor = floor_processes(paths)
    run = run_cli(inputs, out, workers=2)
    # the fastest x264 preset that keeps the fidelity (BENCHMARKS.md, `encode`), in the same run
    superfast = run_cli(inputs, work / "cli_out_superfast", 2, "--x264-preset", "superfast")
    floor_again = floor_processes(paths)  # the machine's load drifts: the floor before and after
    floor_s = (floor["seconds"] + floor_again["seconds"]) / 2
    stages = run["progress"]["worker_stage_seconds"]
    frames = run["frames"]
    encode_per_worker = stages["encode"] / 2
    return {
        "superfast": {"cli_seconds": round(superfast["seconds"], 1), "ratio": round(floor_s / superfast["seconds"], 3),
                      "encode_ms_per_frame": round(1000 * superfast["progress"]["worker_stage_seconds"]["encode"] / frames, 2),
                      "shard_mb": shard_mb(work / "cli_out_superfast")},
        "shard_mb": shard_mb(out),
        "videos": n, "source_frames": floor["source_frames"], "output_frames": frames, "clips": run["clips"],
        "floor_seconds": [round(floor["seconds"], 1), round(floor_again["seconds"], 1)],
        "cli_seconds": round(run["seconds"], 1),
        "ratio": round(floor_s / run["seconds"], 3),
        "ratio_without_h264_encode": round(floor_s / (run["seconds"] - encode_per_worker), 3),
        "worker_ms_per_frame": {k: round(1000 * v / frames, 2) for k, v in stages.items()},
        "worker_seconds_total": round(sum(stages.values()), 1),
        "start_and_rest_seconds": round(run["seconds"] - sum(stages.values()) / 2, 1),
        "peak_worker_rss_mb": run["progress"]["peak_worker_rss_mb"],
        "driver_peak_rss_mb": run["summary"]["driver_peak_rss_mb"],
    }


def shard_mb(out: Path) -> float:
    """MB of the shards an annotator run wrote into `out`."""
    return round(sum(f.stat().st_size for f in out.rglob("*.tar")) / 1e6, 1)


def run_cli(inputs: Path, out: Path, workers: int, *extra: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "emo_annotate.cli", "run", str(inputs), str(out), "--num-workers", str(workers),
                    "--quiet", *extra], check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t
    progress = json.loads((out / "progress.json").read_text())
    frames = round(progress["hours_of_video"] * 3600 * FPS)
    return {"seconds": seconds, "progress": progress, "summary": progress["summary"], "frames": frames, "clips": progress["clips"]}


def bench_stages(path: Path, cfg: AnnotateConfig) -> dict:
    cv2.setNumThreads(1)
    t = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        source_frames = sum(1 for frame in container.decode(stream) if to_yuv420(frame))
    decode = time.perf_counter() - t
    t = time.perf_counter()
    floor_pass([path])
    floor = time.perf_counter() - t
    annotator = Annotator(cfg, threads=1)
    annotator.annotate(path, "warm", path.name, lambda s: None)  # models warm, as in a worker
    annotator.times = type(annotator.times)()
    t = time.perf_counter()
    outcome = annotator.annotate(path, "bench", path.name, lambda s: None)
    whole = time.perf_counter() - t
    frames = outcome.frames
    return {
        "source_frames": source_frames, "output_frames": frames, "clips": outcome.clips,
        "decode_s": round(decode, 2), "floor_s": round(floor, 2), "annotator_s": round(whole, 2),
        "annotator_vs_floor": round(floor / whole, 3),
        "annotator_vs_floor_without_h264_encode": round(floor / (whole - annotator.times.seconds["encode"]), 3),
        "ms_per_output_frame": {k: round(1000 * v / frames, 2) for k, v in annotator.times.seconds.items()},
        "floor_ms_per_source_frame": round(1000 * floor / source_frames, 2),
        "detector_share_of_frames": round(annotator.tracker.checks / max(1, annotator.tracker.frames), 3),
    }


def bench_encode(path: Path, presets: tuple[str, ...] = ("veryfast", "superfast", "ultrafast"), crf: int = 18) -> dict:
    """The annotator's clip encode (Mp4Writer, one thread, CRF 18) of the same 512x512 crops,
    per x264 preset: what a faster preset saves, and what it costs in bytes and fidelity."""
    crops = []  # (512, 512) Y and (256, 256) U, V planes around the face, copied out of the frame
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            (y, u, v), _ = to_yuv420(frame)
            crops.append((y[104:616, 384:896].copy(), u[52:308, 192:448].copy(), v[52:308, 192:448].copy()))
    result = {"frames": len(crops)}
    for preset in presets:
        writer = Mp4Writer(FPS, 512, 512, crf, preset)
        t = time.perf_counter()
        for planes in crops:
            writer.add_yuv420(planes)
        encoded = writer.finish()
        seconds = time.perf_counter() - t
        with av.open(io.BytesIO(encoded)) as container:
            decoded = [to_yuv420(f)[0][0] for f in container.decode(video=0)]
        mse = np.mean([np.mean((a.astype(np.float32) - b[0].astype(np.float32)) ** 2) for a, b in zip(decoded, crops)])
        result[preset] = {"ms_per_frame": round(1000 * seconds / len(crops), 2),
                          "kib_per_s": round(len(encoded) / 1024 / (len(crops) / FPS), 1),
                          "luma_psnr_db": round(float(10 * np.log10(255**2 / mse)), 2)}
    for preset in presets:
        result[preset]["time_vs_veryfast"] = round(result[preset]["ms_per_frame"] / result["veryfast"]["ms_per_frame"], 3)
    return result


def bench_scaling(video: Path, work: Path, n: int) -> dict:
    inputs = copies(video, work / "scaling_in", n)
    result = {"videos": n}
    for workers in (1, 2):
        run = run_cli(inputs, work / f"scaling_out_{workers}", workers)
        stages = sum(run["progress"]["worker_stage_seconds"].values())
        result[f"workers_{workers}"] = {"seconds": round(run["seconds"], 1), "frames_per_s": round(run["frames"] / run["seconds"], 1),
                                        "worker_busy_seconds": round(stages, 1), "clips": run["clips"]}
    result["speedup_1_to_2"] = round(result["workers_1"]["seconds"] / result["workers_2"]["seconds"], 3)
    for workers in (1, 2):
        result[f"startup_seconds_{workers}_workers"] = round(startup_seconds(workers), 1)
    without = [result[f"workers_{w}"]["seconds"] - result[f"startup_seconds_{w}_workers"] for w in (1, 2)]
    result["speedup_1_to_2_without_startup"] = round(without[0] / without[1], 3)
    return result


def startup_seconds(workers: int) -> float:
    """Seconds from nothing to `workers` actors ready (Ray started, models loaded)."""
    code = (
        "import time, sys; t = time.perf_counter()\n"
        "import ray\nfrom emo_annotate.config import AnnotateConfig\n"
        "from emo_annotate.ray_env import init_ray\nfrom emo_annotate.driver import UnitWorker\n"
        f"init_ray(num_cpus={workers})\n"
        "actor = ray.remote(num_cpus=1)(UnitWorker)\n"
        f"ray.get([actor.remote(AnnotateConfig().to_dict(), '.', '.').ready.remote() for _ in range({workers})])\n"
        "print(time.perf_counter() - t)\nray.shutdown()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def bench_memory(work: Path, long_seconds: float) -> dict:
    result = {}
    for seconds in (60.0, long_seconds):
        video = make_small_talking_head(work / f"talk176_{int(seconds)}s.mp4", seconds)
        code = (
            "import sys, time; from pathlib import Path\nfrom emo_annotate.memory import peak_rss_mb\n"
            "from emo_annotate.config import AnnotateConfig\nfrom emo_annotate.pipeline import Annotator\n"
            "a = Annotator(AnnotateConfig(size=128), threads=1); t = time.perf_counter()\n"
            "o = a.annotate(Path(sys.argv[1]), 'm', 'm.mp4', lambda s: None)\n"
            "print(o.clips, o.frames, a.peak_kept_frames, time.perf_counter() - t, peak_rss_mb())\n"
        )
        out = subprocess.run([sys.executable, "-c", code, str(video)], capture_output=True, text=True, check=True)
        clips, frames, kept, took, rss = out.stdout.strip().splitlines()[-1].split()
        result[f"{int(seconds)}s"] = {"frames": int(frames), "clips": int(clips), "peak_kept_frames": int(kept),
                                      "seconds": round(float(took), 1), "peak_rss_mb": round(float(rss), 1)}
    return result


# -- report -------------------------------------------------------------------------------------
def table(title: str, rows: list[tuple]) -> str:
    width = max(len(str(r[0])) for r in rows)
    return "\n".join([title, *(f"  {str(k):<{width}}  {v}" for k, v in rows)])


def print_part(name: str, result: dict) -> None:
    rows = []
    for key, value in result.items():
        if isinstance(value, dict):
            rows.append((key, ", ".join(f"{k} {v}" for k, v in value.items())))
        else:
            rows.append((key, value))
    print(table(f"[{name}]", rows), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--quick", action="store_true", help="short videos (a smoke run, not for BENCHMARKS.md)")
    parser.add_argument("--parts", default="cli,stages,scaling,memory", help="comma-separated: cli,stages,full_range,scaling,encode,memory")
    parser.add_argument("--long-seconds", type=float, default=3600.0, help="length of the long video of `memory`")
    parser.add_argument("--floor-worker", nargs="+", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_worker:
        print(floor_pass(args.floor_worker))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = AnnotateConfig()
    short = make_720p_talking_head(args.out / f"talk720_{4 if args.quick else 20}s.mp4", 4 if args.quick else 20)
    parts = args.parts.split(",")
    report = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "python": platform.python_version(), "load_average_at_start": os.getloadavg()}}
    print_part("machine", report["machine"])
    for part in parts:
        if part == "cli":
            minute = make_720p_talking_head(args.out / f"talk720_{8 if args.quick else 60}s.mp4", 8 if args.quick else 60)
            report[part] = bench_cli(minute, args.out / ("cli_quick" if args.quick else "cli"), 2 if args.quick else 6)
        elif part == "stages":
            report[part] = bench_stages(short, cfg)
        elif part == "full_range":  # a BT.601 full-range source: every crop is colour-converted
            report[part] = bench_stages(full_range_bt601_copy(short, args.out / "talk720_601_full.mp4"), cfg)
        elif part == "encode":
            report[part] = bench_encode(short)
        elif part == "scaling":
            report[part] = bench_scaling(short, args.out, 2 if args.quick else 4)
        elif part == "memory":
            report[part] = bench_memory(args.out, 120.0 if args.quick else args.long_seconds)
        else:
            parser.error(f"unknown part {part!r}")
        report[part]["load_average_after"] = os.getloadavg()
        print_part(part, report[part])
        (args.out / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
