"""The learning check: does a model trained here on a CPU learn each conditioning path?

    talking heads with known truth (emo-annotate synth) -> emo-annotate run -> emo-train vae, 1, 2, 3
    -> emo-infer from a training identity's portrait with recordings never trained on -> emo-eval

and four questions, each answered by a measured figure against a control:

1. identity: generated frames against the real frames of the same held-out audio (PSNR, SSIM,
   identity similarity), and the portrait's identity kept;
2. audio drives the mouth: correlation of the generated mouth opening with the held-out audio's
   loudness, against a control generated from the same portrait with another recording's audio
   (measured against the same loudness), and a generation from silence (mouth closed);
3. speed drives the head: generations at three requested speeds, measured by the annotator's own
   pose code, in the right order and within a stated error;
4. long video: a long generation keeps the identity (last clip against the first).

Every step calls the real CLIs, as a user would, and is skipped when its output is already
there (rerun the same command to continue). `--videos` trains on any folder of talking-head
videos instead of the synthetic set (then `--portrait` and `--audio` name the held-out inputs).
Prints the figures and writes `OUT/report.json` and `OUT/strip.png` (portrait, real, generated).
Run it as `pipelines/learning_check.sh [options]`; `LEARNING.md` records a full run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Profile:
    """How much data, training and generation one run uses."""

    recordings: int  # synthesised recordings per identity (2 of them held out)
    seconds: float  # length of each recording / video of the set
    size: int  # training resolution (pixels), the annotator's crop size
    steps: dict[str, int]  # optimizer steps per stage: vae, 1, 2, 3
    batch: dict[str, int]  # clips (images for vae and 1) per step
    lr: dict[str, float]  # learning rate per stage
    generate_seconds: float  # length of the audio-, control-, silence- and speed generations
    long_seconds: float  # length of the long generation
    ddim_steps: int  # denoising steps per clip at generation
    guidance: float  # audio classifier-free guidance at generation
    speed_guidance: float = 3.0  # head-speed guidance of the generations but the long one (emo-infer --speed-guidance; 1: off)
    init_strength: float = 1.0  # where every generation's clips start (emo-infer --init-strength; 1: pure noise)
    preset: str = "small"  # emo-train preset (--preset overrides)
    synth_size: int = 256  # side of the synthetic set's frames (pixels)
    minutes: dict[str, float] | None = None  # wall-time limit per stage (emo-train --max-minutes); steps cap it too
    gpu: bool = False  # train on the GPU in bf16 (emo-train --gpu --mixed-precision bf16)
    loader_workers: int = 0  # DataLoader processes of each training stage
    clip_cache_mb: float = 2048.0  # decoded clips kept per loader process (emo-train --clip-cache-mb): the set fits
    snr_gamma: float = 5.0  # Min-SNR loss weighting of the diffusion stages (faster convergence)
    speeds: tuple[float, float, float] = (0.0, 25.0, 50.0)  # still, medium, fast (deg/s)
    identities: tuple[str, ...] = ("astronaut", "grace_hopper", "carphone")
    mouth_margin: float = 0.2  # the audio's mouth correlation must beat the control's by this
    speed_margin: float = 5.0  # each faster request must give a head faster by this (deg/s)
    vae_margin_db: float = 10.0  # the trained VAE must reconstruct this much better than an untrained one


PROFILES = {
    # what LEARNING.md records: about 30 minutes on 2 CPU cores
    "full": Profile(
        recordings=6, seconds=12.0, size=96,
        steps={"vae": 800, "1": 2000, "2": 1500, "3": 1700},
        batch={"vae": 4, "1": 8, "2": 2, "3": 2},
        lr={"vae": 1e-3, "1": 3e-4, "2": 3e-4, "3": 3e-4},
        generate_seconds=8.0, long_seconds=30.0, ddim_steps=15, guidance=3.0,
    ),
    # a lent GPU (pipelines/learning_check_gpu.sh): 256 px, the medium preset, each stage for a
    # fixed time; the set is made and annotated on the CPU beside it, the evaluation too
    "gpu": Profile(
        recordings=6, seconds=12.0, size=256, synth_size=512, preset="medium",
        steps={"vae": 100_000, "1": 100_000, "2": 100_000, "3": 100_000},
        minutes={"vae": 1.0, "1": 2.0, "2": 1.35, "3": 1.35},
        batch={"vae": 16, "1": 32, "2": 8, "3": 8},
        lr={"vae": 1e-3, "1": 3e-4, "2": 3e-4, "3": 3e-4},
        generate_seconds=8.0, long_seconds=30.0, ddim_steps=15, guidance=3.0, gpu=True, loader_workers=6,
    ),
    # the test suite's reduced run (under 3 minutes): every step and figure, too short to learn the
    # mouth or the head speed (that takes the full run: LEARNING.md). Its generations start from
    # the portrait, so that they hold a face the evaluation finds and every figure is measured
    "quick": Profile(
        recordings=4, seconds=6.0, size=64,
        steps={"vae": 400, "1": 100, "2": 60, "3": 40},
        batch={"vae": 4, "1": 4, "2": 1, "3": 1},
        lr={"vae": 1e-3, "1": 5e-4, "2": 5e-4, "3": 5e-4},
        generate_seconds=2.0, long_seconds=4.0, ddim_steps=5, guidance=3.0, init_strength=0.8,
        identities=("astronaut",),
    ),
}
STAGES = ("vae", "1", "2", "3")


CLI_MODULES = {"emo-annotate": "emo_annotate.cli", "emo-train": "emo_train.cli", "emo-infer": "emo_infer.cli"}


def cli(name: str) -> list[str]:
    """The command of a CLI (emo-annotate, emo-train, emo-infer) through this Python: also where
    the packages are on PYTHONPATH rather than installed (a lent GPU machine)."""
    return [sys.executable, "-m", CLI_MODULES[name]]


@dataclass
class Timer:
    """Seconds per step, kept in `path` so that a run continued later (or split between
    machines: learning_check_gpu.sh) reports every step, not only those of its last part."""

    path: Path
    seconds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.path.is_file():
            self.seconds = json.loads(self.path.read_text())

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.path.write_text(json.dumps(self.seconds, indent=2) + "\n")

    def run(self, name: str, command: list[str], env: dict | None = None) -> None:
        print(f"[learning_check] {name}: {' '.join(command[2:])}", flush=True)
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env)
        self.add(name, time.perf_counter() - start)


def one_thread_env() -> dict:
    """Generations run side by side (two on a 2-core machine), one thread each."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ------------------------------------------------------------------------------------ inputs


@dataclass
class HeldOut:
    """The inputs of the generations: a training identity's portrait and unheard audio."""

    portrait: Path
    audio: Path  # the held-out recording
    control_audio: Path  # another recording (the control of the mouth check)
    real: Path | None  # the real video of `audio` (synthetic set: its rendering), for paired metrics
    real_speed: Path | None  # per-frame head speed of `real` (its truth), requested for the paired generation


def make_set(out: Path, profile: Profile, timer: Timer) -> Path:
    set_dir = out / "set"
    if not (set_dir / "set.json").is_file():
        command = [*cli("emo-annotate"), "synth", str(set_dir), "--recordings", str(profile.recordings),
                   "--held-out", "2", "--seconds", str(profile.seconds), "--size", str(profile.synth_size), "--quiet"]
        for identity in profile.identities:
            command += ["--identity", identity]
        timer.run("synth", command)
    return set_dir


def synthetic_held_out(set_dir: Path, work: Path) -> HeldOut:
    """The first identity, the first held-out recording (its rendering is the real video) and the
    second one as the control."""
    info = json.loads((set_dir / "set.json").read_text())
    identity = info["identities"][0]["name"]
    held = [r["name"] for r in info["recordings"] if r["split"] == "held_out"]
    real = set_dir / "held_out" / f"{identity}_{held[0]}.mp4"
    truth = json.loads(real.with_suffix(".json").read_text())
    speed = work / "real_speed.npy"
    np.save(speed, np.asarray(truth["per_frame"]["speed"], np.float32))
    return HeldOut(set_dir / "portraits" / f"{identity}.png", set_dir / "audio" / f"{held[0]}.wav",
                   set_dir / "audio" / f"{held[1]}.wav", real, speed)


# ---------------------------------------------------------------------------------- training


def annotate(train_videos: Path, out: Path, profile: Profile, timer: Timer) -> Path:
    shards = out / "shards"
    if not (shards / "index.parquet").is_file():
        timer.run("annotate", [*cli("emo-annotate"), "run", str(train_videos), str(shards), "--size", str(profile.size),
                               "--num-workers", "2", "--quiet"])
    return shards


def train(shards: Path, out: Path, profile: Profile, timer: Timer) -> Path:
    previous: list[str] = []
    for stage in STAGES:
        run = out / "runs" / f"stage{stage}"
        if not (run / "summary.json").is_file():  # written when the stage has finished
            timer.run(f"train {stage}", [
                *cli("emo-train"), "--stage", stage, "--shards", str(shards), "--out", str(run), "--preset", profile.preset,
                "--size", str(profile.size), "--max-steps", str(profile.steps[stage]),
                *(["--max-minutes", str(profile.minutes[stage])] if profile.minutes else []),
                *(["--gpu", "--mixed-precision", "bf16"] if profile.gpu else []),
                "--batch-size", str(profile.batch[stage]), "--lr", str(profile.lr[stage]),
                "--save-every", str(profile.steps[stage]), "--log-every", "50",
                "--loader-workers", str(profile.loader_workers), "--clip-cache-mb", str(profile.clip_cache_mb), "--quiet",
                # stages 1-3 share one latent cache: a frame is VAE-encoded once, not every step
                *([] if stage == "vae" else ["--snr-gamma", str(profile.snr_gamma), "--latent-cache", str(out / "latents")]),
                *previous,
            ])
        previous = ["--init-from", str(run)]
    return out / "runs" / "stage3"


# -------------------------------------------------------------------------------- generation


def cut_audio(source: Path, seconds: float, target: Path) -> Path:
    """The first `seconds` of `source` (repeated when shorter) as a 16 kHz wav; silence when
    `source` is None."""
    from emo_annotate.media import AUDIO_RATE, encode_wav, read_audio

    n = int(seconds * AUDIO_RATE)
    if source is None:
        audio = np.zeros(n, np.float32)
    else:
        audio = read_audio(source)
        audio = np.tile(audio, -(-n // len(audio)))[:n]
    target.write_bytes(encode_wav(audio))
    return target


@dataclass(frozen=True)
class Job:
    name: str
    audio: Path
    speed: str  # a constant or a file
    speed_guidance: float  # emo-infer --speed-guidance


def generation_jobs(held: HeldOut, work: Path, profile: Profile) -> list[Job]:
    inputs = work / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    seconds = profile.generate_seconds
    audio = cut_audio(held.audio, seconds, inputs / "audio.wav")
    paired_speed = str(held.real_speed) if held.real_speed is not None else str(profile.speeds[1])
    guided = profile.speed_guidance
    jobs = [
        Job("audio", audio, paired_speed, guided),
        Job("control", cut_audio(held.control_audio, seconds, inputs / "control.wav"), paired_speed, guided),
        Job("silence", cut_audio(None, seconds, inputs / "silence.wav"), paired_speed, guided),
    ]
    jobs += [Job(f"speed_{int(s)}", audio, str(s), guided) for s in profile.speeds]
    # the longest first: two at a time, the short ones fill the other slot meanwhile. It asks
    # whether the identity holds over 30 s; the speed's accuracy is the speed jobs' question, so it
    # goes without speed guidance (which would make the longest generation 1.5x dearer)
    jobs.insert(0, Job("long", cut_audio(held.audio, profile.long_seconds, inputs / "long.wav"), str(profile.speeds[1]), 1.0))
    return jobs


def generate(checkpoint: Path, held: HeldOut, jobs: list[Job], work: Path, profile: Profile, timer: Timer) -> None:
    out = work / "generated"
    out.mkdir(parents=True, exist_ok=True)
    todo = [job for job in jobs if not (out / f"{job.name}.mp4").is_file()]

    def run(job: Job) -> None:
        timer.run(f"generate {job.name}", [
            *cli("emo-infer"), "--checkpoint", str(checkpoint), "--image", str(held.portrait), "--audio", str(job.audio),
            "--out", str(out / f"{job.name}.mp4"), "--speed", job.speed, "--steps", str(profile.ddim_steps),
            "--guidance", str(profile.guidance), "--speed-guidance", str(job.speed_guidance),
            "--init-strength", str(profile.init_strength), "--quiet",
        ], env=one_thread_env())

    start = time.perf_counter()
    # two at a time on 2 cores; all at once on a GPU (each process is small beside the card)
    with ThreadPoolExecutor(max_workers=max(1, len(todo)) if profile.gpu else 2) as pool:
        list(pool.map(run, todo))
    timer.add("generate (wall)", time.perf_counter() - start)


# -------------------------------------------------------------------------------- evaluation


def real_in_generation_framing(held: HeldOut, shards: Path, size: int, work: Path) -> Path | None:
    """The real video cropped as the generations are (emo-infer's crop of the portrait, which is
    that video's first frame's framing, with the crop scale of the shards trained on, at the
    training size): paired metrics need the same framing. None without a real video."""
    if held.real is None:
        return None
    target = work / "inputs" / "real.mp4"
    if target.is_file():
        return target
    import av
    from emo_annotate.config import ClipConfig
    from emo_annotate.crop import crop_square
    from emo_annotate.media import VideoWriter, read_audio
    from emo_infer.portrait import prepare_portrait
    from emo_train.data import annotation_settings, shard_sample_metadata

    crop_scale = annotation_settings(shard_sample_metadata(str(shards)))["crop_scale"] or ClipConfig().crop_scale
    portrait = prepare_portrait(held.portrait, size, crop_scale, 1.2)
    with av.open(str(held.real)) as container, VideoWriter(target, 25.0, audio=read_audio(held.real)) as writer:
        for frame in container.decode(video=0):
            writer.add(crop_square(frame.to_ndarray(format="rgb24"), portrait.crop, size))
    return target


def _compare(video: Path, kwargs: dict) -> dict:
    import emo_eval

    return emo_eval.compare(video, fid=False, progress=False, **kwargs)


def _one_thread() -> None:
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def evaluate(held: HeldOut, real: Path | None, jobs: list[Job], work: Path) -> dict[str, dict]:
    """`emo_eval.compare` of each generation (two processes side by side, one thread each); the
    mouth is always measured against the held-out audio's loudness (the control's own sound is
    another recording)."""
    calls = {}
    for job in jobs:
        speed = float(job.speed) if job.name.startswith("speed_") or job.name == "long" else None
        calls[job.name] = (work / "generated" / f"{job.name}.mp4", dict(
            real=real if job.name == "audio" else None, portraits=held.portrait,
            audio=work / "inputs" / "audio.wav" if job.name in ("control", "audio") else None,
            speed=speed, out=work / "eval" / job.name,
            # identity is asked of the paired and the long generation; the dlib embedding is most of
            # an evaluation's time (60 ms a frame)
            identity="dlib" if job.name in ("audio", "long") else "none",
        ))
    if real is not None:
        calls["real"] = (real, dict(portraits=held.portrait, audio=held.audio, out=work / "eval" / "real"))
    # spawned, not forked: the parent may hold threads of its own
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread) as pool:
        futures = {name: pool.submit(_compare, video, kwargs) for name, (video, kwargs) in calls.items()}
        return {name: future.result() for name, future in futures.items()}


def figures(reports: dict[str, dict], profile: Profile, vae: dict) -> dict:
    def video(name: str) -> dict:
        entry = next(iter(reports[name]["videos"].values()))
        return entry["metrics"]

    audio, control, silence = video("audio"), video("control"), video("silence")
    speeds = {s: video(f"speed_{int(s)}")["generated"]["head_speed_mean"] for s in profile.speeds}
    result = {
        "vae": {key: vae.get(key) for key in ("reconstruction_psnr", "untrained_reconstruction_psnr", "evaluation_frames")},
        "identity": {
            "psnr": audio.get("paired", {}).get("psnr"),
            "ssim": audio.get("paired", {}).get("ssim"),
            "csim": audio.get("paired", {}).get("csim"),
            "fsim": audio["generated"].get("fsim"),
            "fsim_real": video("real")["generated"].get("fsim") if "real" in reports else None,
            "face_frames": audio["generated"]["face_frames"],
            "frames": audio["generated"]["frames"],
        },
        "mouth": {
            "corr_audio": audio["generated"].get("lsync_corr_at_0"),
            "corr_audio_best": audio["generated"].get("lsync_corr"),
            "offset_audio": audio["generated"].get("lsync_offset"),
            "corr_control": control["generated"].get("lsync_corr_at_0"),
            "corr_control_best": control["generated"].get("lsync_corr"),
            "corr_real": video("real")["generated"].get("lsync_corr_at_0") if "real" in reports else None,
            "open_voiced": audio["generated"].get("mouth_open_voiced"),
            "open_silent": audio["generated"].get("mouth_open_silent"),
            "open_silence_video": silence["generated"].get("mouth_open_mean"),
        },
        "speed": {
            "requested": list(profile.speeds),
            "measured": [speeds[s] for s in profile.speeds],
            "ordered": all(a is not None and b is not None and a < b
                           for a, b in zip(list(speeds.values()), list(speeds.values())[1:])),
        },
        "long": {
            "seconds": profile.long_seconds,
            "identity_first_last": video("long")["generated"].get("identity_first_last"),
            "seam_flicker": video("long")["generated"].get("seam_flicker"),
        },
    }
    return result


def verdicts(result: dict, profile: Profile) -> dict[str, dict]:
    """Each question's answer with the margin it is held to: {name: {passed, detail}}."""

    def check(passed: bool, detail: str) -> dict:
        return {"passed": bool(passed), "detail": detail}

    vae, mouth, speed = result["vae"], result["mouth"], result["speed"]["measured"]
    gain = vae["reconstruction_psnr"] - vae["untrained_reconstruction_psnr"]
    corr, control = mouth["corr_audio"], mouth["corr_control"]
    steps = [b - a for a, b in zip(speed, speed[1:])] if None not in speed else []
    return {
        "vae": check(gain >= profile.vae_margin_db,
                     f"reconstruction {vae['reconstruction_psnr']:.1f} dB against {vae['untrained_reconstruction_psnr']:.1f} dB "
                     f"untrained (at least {profile.vae_margin_db:g} dB better)"),
        "audio_moves_the_mouth": check(
            corr is not None and control is not None and corr >= control + profile.mouth_margin,
            f"mouth-loudness correlation {corr} with the audio against {control} with another recording's "
            f"(at least {profile.mouth_margin:g} more)"),
        "silence_keeps_it_closed": check(
            None not in (mouth["open_silence_video"], mouth["open_voiced"])
            and mouth["open_silence_video"] < 0.5 * mouth["open_voiced"],
            f"mean opening {mouth['open_silence_video']} from silence against {mouth['open_voiced']} on voiced frames "
            "(less than half)"),
        "speed_moves_the_head": check(
            bool(steps) and min(steps) >= profile.speed_margin,
            f"measured {speed} deg/s for requested {list(profile.speeds)} (each faster by at least {profile.speed_margin:g})"),
    }


# -------------------------------------------------------------------------------------- strip


def frame_strip(held: HeldOut, work: Path, size: int, columns: int = 8) -> Path:
    """One picture a person can judge at a glance: a row per video (the real one first), the
    portrait crop in front, `columns` frames spread over each video's first seconds."""
    import av
    from PIL import Image, ImageDraw

    def frames(path: Path) -> list[np.ndarray]:
        with av.open(str(path)) as container:
            return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]

    real = work / "inputs" / "real.mp4"
    rows = [("real", real)] if real.is_file() else []
    rows += [(name, work / "generated" / f"{name}.mp4") for name in ("audio", "control", "silence")]
    rows += sorted((p.stem, p) for p in (work / "generated").glob("speed_*.mp4"))
    portrait = Image.open(held.portrait).convert("RGB")
    label_width = 80
    canvas = Image.new("RGB", (label_width + size * (columns + 1), size * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for row, (name, path) in enumerate(rows):
        video = frames(path)
        picks = np.linspace(0, min(len(video), 4 * 25) - 1, columns).round().astype(int)
        canvas.paste(portrait.resize((size, size)), (label_width, row * size))
        for column, index in enumerate(picks):
            image = Image.fromarray(video[index]).resize((size, size))
            canvas.paste(image, (label_width + size * (column + 1), row * size))
        draw.text((4, row * size + size // 2 - 6), name, fill="black")
    target = work / "strip.png"
    canvas.save(target)
    return target


# -------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/learning_check"), help="work and report folder")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--preset", help="emo-train preset (default: the profile's, small for full and quick)")
    parser.add_argument("--init-strength", type=float,
                        help="emo-infer --init-strength of the generations (default: the profile's, 1: pure noise)")
    parser.add_argument("--stop-after", choices=("annotate", "generate"),
                        help="end after this step (the next call with the same --out goes on from there)")
    parser.add_argument("--videos", type=Path, help="train on this folder of talking-head videos instead of the synthetic set")
    parser.add_argument("--portrait", type=Path, help="held-out portrait (with --videos: required)")
    parser.add_argument("--audio", type=Path, help="held-out recording (with --videos: required)")
    parser.add_argument("--control-audio", type=Path, help="another recording for the mouth control (default: --audio reversed)")
    args = parser.parse_args(argv)
    # the options that override the profile's settings (report.json records the settings run)
    overrides = {"preset": args.preset, "init_strength": args.init_strength}
    profile = replace(PROFILES[args.profile], **{k: v for k, v in overrides.items() if v is not None})
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    timer = Timer(out / "timings.json")
    started = time.perf_counter()

    if args.videos is None:
        set_dir = make_set(out, profile, timer)
        train_videos = set_dir / "train"
        held = synthetic_held_out(set_dir, out)
        if args.portrait or args.audio:
            held = HeldOut(args.portrait or held.portrait, args.audio or held.audio,
                           args.control_audio or held.control_audio, None if args.audio else held.real,
                           None if args.audio else held.real_speed)
    else:
        if args.portrait is None or args.audio is None:
            parser.error("--videos needs --portrait and --audio (the held-out inputs)")
        train_videos = args.videos
        held = HeldOut(args.portrait, args.audio, args.control_audio or args.audio, None, None)

    shards = annotate(train_videos, out, profile, timer)
    if args.stop_after == "annotate":
        timer.add("total", time.perf_counter() - started)
        return 0
    checkpoint = train(shards, out, profile, timer)
    jobs = generation_jobs(held, out, profile)
    generate(checkpoint, held, jobs, out, profile, timer)
    if args.stop_after == "generate":
        timer.add("total", time.perf_counter() - started)
        return 0
    real = real_in_generation_framing(held, shards, profile.size, out)
    started_eval = time.perf_counter()
    reports = evaluate(held, real, jobs, out)
    timer.add("evaluate", time.perf_counter() - started_eval)
    vae = json.loads((out / "runs" / "stagevae" / "summary.json").read_text())
    measured = figures(reports, profile, vae)
    result = {
        "profile": args.profile,
        "settings": asdict(profile),
        "figures": measured,
        "verdicts": verdicts(measured, profile),
        "seconds": {**timer.seconds, "total": timer.seconds.get("total", 0.0) + time.perf_counter() - started},
    }
    frame_strip(held, out, profile.size)
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["figures"], indent=2))
    for name, verdict in result["verdicts"].items():
        print(f"{'PASS' if verdict['passed'] else 'FAIL'} {name}: {verdict['detail']}")
    return 0 if all(v["passed"] for v in result["verdicts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
