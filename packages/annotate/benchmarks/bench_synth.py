"""`emo-annotate synth`: rendering speed on one core, and what the real annotator measures on the
renderings against their ground truth (a script, not a test).

Speed, measured in one run per identity on one CPU core (the process is pinned to it):
  frames        the frames alone (mouth rig + head warp), kept in memory
  encode        H.264 + AAC of those same frames with `media.VideoWriter` (the reference)
  render_video  everything a user waits for: loudness, trajectory, frames, encode, JSON
Agreement (`--quality`): each rendering annotated in-process by the real annotator (MediaPipe,
256 px clips), per frame against the JSON (`emo_annotate.synth.measure.agreement`); synthesised
speech, and espeak-ng speech where it is installed.

    uv run python packages/annotate/benchmarks/bench_synth.py [--seconds 12] [--quality] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from emo_annotate.media import VideoWriter
from emo_annotate.synth import (DEFAULT_IDENTITIES, SynthConfig, TalkingHead, agreement, annotate_rendering, espeak_available,
                                espeak_recording, load_identity, load_truth, render_video, synth_recording)
from emo_annotate.synth.loudness import frame_count, mouth_opening
from emo_annotate.synth.motion import follow


def speed_figures(head: TalkingHead, audio: np.ndarray, work: Path, seed: int) -> dict:
    cfg = head.cfg
    frames_n = frame_count(audio, cfg.fps)
    profile = cfg.varied_profile(frames_n / cfg.fps, seed)
    opening = mouth_opening(audio, frames_n, cfg.fps, cfg.loudness)[0]
    angles = follow(cfg.path, profile.step_speeds(frames_n, cfg.fps), cfg.fps, 0.5)[1]
    t = time.perf_counter()
    frames = [head.frame(opening[i], angles[i])[0] for i in range(frames_n)]
    frames_s = time.perf_counter() - t
    t = time.perf_counter()
    with VideoWriter(work / "encode_only.mp4", cfg.fps, audio=audio, crf=cfg.crf) as writer:
        for rgb in frames:
            writer.add(rgb)
    encode_s = time.perf_counter() - t
    t = time.perf_counter()
    render_video(head, audio, work / "render.mp4", profile, phase=0.5)
    render_s = time.perf_counter() - t
    return {"frames": frames_n, "frames_fps": frames_n / frames_s, "encode_fps": frames_n / encode_s,
            "render_fps": frames_n / render_s, "render_time_over_encode_time": render_s / encode_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--quality", action="store_true", help="also annotate the renderings and compare with the truth")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    cv2.setNumThreads(1)
    cfg = SynthConfig(size=args.size)
    results = {"machine": {"cpus": os.cpu_count(), "pinned_to_core": core, "python": platform.python_version(),
                           "processor": platform.processor() or platform.machine()},
               "seconds": args.seconds, "size": args.size, "identities": {}}
    recordings = [synth_recording(args.seconds, seed=21, voice="mid")]
    if args.quality and espeak_available():
        recordings.append(espeak_recording(args.seconds, seed=21, voice="en+m3"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in DEFAULT_IDENTITIES:
            t = time.perf_counter()
            head = TalkingHead(load_identity(name, cfg.size, cfg.face_fraction), cfg)
            entry = {"setup_s": time.perf_counter() - t, **speed_figures(head, recordings[0].audio, work, seed=7)}
            print(f"{name}: setup {entry['setup_s']:.2f} s, frames {entry['frames_fps']:.0f} fps, encode {entry['encode_fps']:.0f} fps, "
                  f"render_video {entry['render_fps']:.0f} fps (render / encode time {entry['render_time_over_encode_time']:.2f})", flush=True)
            if args.quality:
                entry["agreement"] = {}
                for rec in recordings:
                    path = work / f"{name}_{rec.name}.mp4"
                    render_video(head, rec.audio, path, cfg.varied_profile(args.seconds, 7), phase=0.5)
                    figures = agreement(load_truth(path), annotate_rendering(path, size=256))
                    entry["agreement"][rec.description["kind"]] = figures
                    speeds = ", ".join(f"{k} {v['measured']:.1f}/{v['true']:.1f}" for k, v in sorted(figures["speed"].items(), key=lambda kv: kv[1]["true"]))
                    print(f"  {rec.description['kind']}: frames {figures['frames_annotated']}/{figures['frames']}, mouth r {figures['mouth_r']:.3f}; "
                          + "; ".join(f"{a} off {figures[a]['offset']:+.1f} rms {figures[a]['rms']:.2f} p95 {figures[a]['p95']:.2f} max {figures[a]['max']:.2f}"
                                      for a in ("yaw", "pitch", "roll"))
                          + f"; speed measured/true: {speeds}", flush=True)
            results["identities"][name] = entry
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
