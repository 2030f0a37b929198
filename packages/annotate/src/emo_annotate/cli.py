"""`emo-annotate`: parse options and delegate; known errors become one line and exit code 1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli_common import make_app, run_app
from .errors import AnnotateError

app = make_app("Annotate talking-head videos into WebDataset shards (head pose, speed, face masks, audio features).")

ShardsDir = Annotated[Path, typer.Argument(help="Output directory of `emo-annotate run`.")]


class UserError(AnnotateError):
    """Bad option values; `main` prints it as one line."""



@app.command()
def run(
    input_dir: Annotated[Path, typer.Argument(help="Directory searched recursively for videos.")],
    output_dir: Annotated[Path, typer.Argument(help="Where shards, index and manifest go (resumable).")],
    fps: Annotated[float, typer.Option(help="Constant output frame rate.", min=1)] = 25.0,
    size: Annotated[int, typer.Option(help="Side of the square face crop in pixels.", min=32)] = 512,
    audio_features: Annotated[str, typer.Option(help="mel | wav2vec2")] = "mel",
    audio_encoder: Annotated[Optional[str], typer.Option(help="wav2vec2 model: local path or hub id.")] = None,
    landmarks: Annotated[str, typer.Option(help="mediapipe | fan (3D FAN on MediaPipe boxes).")] = "mediapipe",
    address: Annotated[Optional[str], typer.Option(help="Existing Ray cluster address (default: start a local one).")] = None,
    num_workers: Annotated[int, typer.Option(help="Annotator workers (Ray actors).", min=1)] = 2,
    shard_size: Annotated[int, typer.Option(help="Maximum clips per shard.", min=1)] = 100,
    videos_per_task: Annotated[int, typer.Option(help="Input videos per unit of work.", min=1)] = 4,
    max_clip_seconds: Annotated[float, typer.Option(help="Longer face tracks are split.", min=1)] = 10.0,
    retries: Annotated[int, typer.Option(help="Times a video is retried after its worker died on it (then it is marked failed).", min=0)] = 2,
    no_landmarks: Annotated[bool, typer.Option("--no-landmarks", help="Do not store lmk.npy.")] = False,
    x264_preset: Annotated[str, typer.Option(help="libx264 preset of the stored clips: superfast halves the encode's CPU for about 1.1x the bytes (BENCHMARKS.md).")] = "veryfast",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Annotate every video under INPUT_DIR into shards in OUTPUT_DIR; a rerun resumes."""
    import dataclasses

    from .config import AnnotateConfig, ClipConfig, RunConfig, Wav2Vec2Config
    from .runner import run as run_annotation

    if audio_encoder and audio_features != "wav2vec2":
        raise UserError("--audio-encoder only applies with --audio-features wav2vec2")
    cfg = AnnotateConfig(  # checks its own values (ConfigError: one line)
        fps=fps,
        size=size,
        audio_features=audio_features,
        landmarks=landmarks,
        shard_size=shard_size,
        videos_per_task=videos_per_task,
        store_landmarks=not no_landmarks,
        x264_preset=x264_preset,
        clip=dataclasses.replace(ClipConfig(), max_seconds=max_clip_seconds),
        wav2vec2=Wav2Vec2Config(model=audio_encoder) if audio_encoder else Wav2Vec2Config(),
    )
    run_cfg = RunConfig(address=address, num_workers=num_workers, max_retries=retries, progress=not quiet)
    summary = run_annotation(input_dir, output_dir, cfg, run_cfg)
    typer.echo(
        f"{summary['clips']} clips ({summary['hours'] * 60:.1f} min) in {output_dir}; "
        f"{summary['skipped_inputs']} inputs skipped, {summary['failed_inputs']} failed, "
        f"{summary['dropped_stretches']} stretches dropped for label problems (see index.parquet); "
        f"{summary['units_skipped_as_done']}/{summary['units']} units were already done"
    )


@app.command()
def verify(shards: ShardsDir) -> None:
    """Read every shard and the index; check members, shapes, dtypes and agreement."""
    from .verify import verify_output

    problems, checked = verify_output(shards)
    for problem in problems:
        typer.echo(f"PROBLEM {problem}")
    if problems:
        raise typer.Exit(1)
    typer.echo(f"ok: {checked} clips verified")


@app.command()
def stats(
    shards: ShardsDir,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Clips, hours, failure reasons, speed percentiles and histogram."""
    from .stats import compute_stats, format_stats

    result = compute_stats(shards)
    typer.echo(json.dumps(result, indent=2) if as_json else format_stats(result))


@app.command()
def inspect(
    shards: ShardsDir,
    key: Annotated[str, typer.Option(help="Clip key, e.g. myvideo-1a2b3c4d_000.")],
    out: Annotated[Path, typer.Option(help="Directory for the overlay video and the plot.")],
) -> None:
    """Write an overlay video (landmarks, pose axes, face box, mask) and a pose/speed plot."""
    from .inspect import inspect_clip

    for path in inspect_clip(shards, key, out):
        typer.echo(str(path))


@app.command()
def demo(
    work_dir: Annotated[Path, typer.Argument(help="Where the sample video and its shards go.")] = Path("data/demo"),
    num_workers: Annotated[int, typer.Option(help="Annotator workers (Ray actors).", min=1)] = 2,
) -> None:
    """Make the bundled sample (the real carphone talking head + synthesised speech), annotate it on
    a local Ray instance with MediaPipe and mel features, and verify the shards."""
    from .config import AnnotateConfig, RunConfig
    from .runner import run as run_annotation
    from .samples import make_carphone_video
    from .verify import verify_output

    videos = work_dir / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    sample = videos / "carphone.mp4"
    if not sample.exists():
        make_carphone_video(sample)
    typer.echo(f"sample video: {sample}")
    shards = work_dir / "shards"
    summary = run_annotation(videos, shards, AnnotateConfig(), RunConfig(num_workers=num_workers))
    problems, checked = verify_output(shards)
    for problem in problems:
        typer.echo(f"PROBLEM {problem}")
    typer.echo(f"{summary['clips']} clips written to {shards}, {checked} verified; try:")
    typer.echo(f"  emo-annotate stats {shards}")
    if problems:
        raise typer.Exit(1)


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Where the set (or the one video with --audio) goes.")],
    identity: Annotated[Optional[list[str]], typer.Option("--identity", help="Built-in identity (astronaut, grace_hopper, carphone) or a photo file; repeat for several (default: the built-ins).")] = None,
    audio: Annotated[Optional[Path], typer.Option(help="Render one video of one --identity speaking this file (anything FFmpeg decodes) instead of a set.", exists=True, dir_okay=False)] = None,
    name: Annotated[Optional[str], typer.Option(help="With --audio: the recording's name in the file name (default: the file's stem).")] = None,
    speed: Annotated[str, typer.Option(help="With --audio: head speed in deg/s (0 = still) or 'varied' (segments from still to fast).")] = "varied",
    recordings: Annotated[int, typer.Option(help="Synthesised recordings in the set (voices cycle).", min=1)] = 6,
    held_out: Annotated[int, typer.Option(help="How many of them (the last) are held out of training.", min=0)] = 2,
    espeak_recordings: Annotated[int, typer.Option(help="Extra training recordings spoken by espeak-ng (must be installed).", min=0)] = 0,
    seconds: Annotated[float, typer.Option(help="Length of each recording and video in the set.", min=1)] = 8.0,
    seed: Annotated[int, typer.Option(help="Seeds recordings, speed profiles and starting poses.")] = 0,
    size: Annotated[int, typer.Option(help="Side of the square frame in pixels (even).", min=64)] = 256,
    face_fraction: Annotated[float, typer.Option(help="Face size as a fraction of the frame side.", min=0.1, max=0.8)] = 0.4,
    fps: Annotated[float, typer.Option(help="Frame rate.", min=1)] = 25.0,
    max_gap: Annotated[float, typer.Option(help="Lip gap at full opening, in face heights.", min=0.01, max=0.3)] = 0.1,
    yaw: Annotated[float, typer.Option(help="Yaw amplitude of the head's path (degrees).", min=0, max=25)] = 12.0,
    roll: Annotated[float, typer.Option(help="Roll amplitude of the head's path (degrees).", min=0, max=30)] = 12.0,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Render talking heads with known ground truth: the mouth opens with the audio's loudness, the
    head turns at a known speed; mp4 with sound + per-frame JSON (see the README)."""
    if size % 2:
        raise UserError(f"--size must be even (H.264 4:2:0), not {size}")
    if not audio and (name or speed != "varied"):
        raise UserError("--name and --speed apply only with --audio (a set uses varied speeds)")
    head_speed = None
    if speed != "varied":
        try:
            head_speed = float(speed)
        except ValueError:
            raise UserError(f"--speed must be a number of deg/s or 'varied', not {speed!r}") from None
        if not 0 <= head_speed <= 360:
            raise UserError(f"--speed must be between 0 and 360 deg/s, not {speed}")
    if audio and (not identity or len(identity) != 1):
        raise UserError("--audio renders one video: give exactly one --identity")
    if not audio and held_out >= recordings:
        raise UserError(f"--held-out ({held_out}) must be smaller than --recordings ({recordings})")
    from .synth import SetOptions, SynthConfig, build_set, file_recording, render_one

    cfg = SynthConfig(size=size, face_fraction=face_fraction, fps=fps, max_gap=max_gap, yaw_amplitude=yaw, roll_amplitude=roll)
    if audio:
        path = render_one(out_dir, identity[0], file_recording(audio, name), head_speed, cfg, seed)
        typer.echo(str(path))
        return
    opts = SetOptions(recordings=recordings, held_out=held_out, espeak_recordings=espeak_recordings, seconds=seconds, seed=seed,
                      **({"identities": tuple(identity)} if identity else {}))
    manifest = build_set(out_dir, opts, cfg, progress=not quiet)
    splits = [v["split"] for v in manifest["videos"]]
    typer.echo(f"{len(splits)} videos in {out_dir}: {splits.count('train')} to train on (annotate {out_dir / 'train'}), "
               f"{splits.count('held_out')} held out; ground truth in each video's .json, the set in set.json")


def main() -> None:
    run_app(
        app,
        (AnnotateError, FileNotFoundError, NotADirectoryError, PermissionError),
        "interrupted; rerun the same command to resume",
    )


if __name__ == "__main__":
    main()
