"""`emo-eval`: thin Typer commands over `emo_eval.compare` and `emo_eval.benchmark`; known errors
become one line and exit code 1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from emo_annotate.cli_common import make_app, run_app

from .errors import EvalError

app = make_app("Measure talking-head videos: FID, FVD, Sync-C/D, identity, expression, mouth, head motion, stability.")

Opt = typer.Option
# the face embedding of F-SIM / CSIM, in both commands
Identity = Annotated[str, Opt(help="dlib | arcface | none (no F-SIM / CSIM / identity drift: much faster).")]


def _config(analysis_size, clip_frames, max_offset, identity, arcface, syncnet, i3d, fid, device, quiet) -> dict:
    return dict(analysis_size=analysis_size, clip_frames=clip_frames, max_offset=max_offset, identity=identity, arcface=arcface,
                syncnet=syncnet, i3d=i3d, fid=fid, device=device, progress=not quiet)


def _summary(report: dict, out: Path) -> str:
    dist = report["overall"].get("distribution", {})
    parts = [f"{k.upper()} {v:.2f}" for k, v in dist.items() if k in ("fid", "fvd", "efid") and isinstance(v, (int, float))]
    return f"wrote {out / 'report.json'} ({report['inputs']['videos']} videos" + (f"; {', '.join(parts)}" if parts else "") + ")"


@app.command("compare")
def compare_command(
    generated: Annotated[Path, typer.Argument(help="Generated mp4, or a folder of them.")],
    out: Annotated[Path, Opt(help="Report folder (report.json, report.md, videos/<name>/*.png).")],
    real: Annotated[Optional[Path], Opt(help="Real mp4 or folder (paired by file stem).")] = None,
    portraits: Annotated[Optional[Path], Opt(help="Portrait image or folder (by stem): F-SIM.")] = None,
    audio: Annotated[Optional[Path], Opt(help="Driving audio file or folder (by stem); default: each video's own sound.")] = None,
    speed: Annotated[Optional[str], Opt(help="Requested head speed deg/s: a number, a per-frame file, or a folder of STEM.npy/.txt.")] = None,
    syncnet: Annotated[Optional[Path], Opt(help="SyncNet syncnet_v2.model: Sync-C / Sync-D.")] = None,
    i3d: Annotated[Optional[Path], Opt(help="StyleGAN-V i3d_torchscript.pt: FVD.")] = None,
    arcface: Annotated[Optional[Path], Opt(help="ArcFace ONNX model: identity with ArcFace instead of dlib.")] = None,
    identity: Identity = "dlib",
    fid: Annotated[bool, Opt("--fid/--no-fid", help="FID with the bundled InceptionV3 (the slowest metric on a CPU).")] = True,
    analysis_size: Annotated[int, Opt(help="Long side faces are searched at (small crops are upscaled).")] = 256,
    clip_frames: Annotated[int, Opt(help="Frames per generated clip (emo-infer --frames-per-clip): seams, first/last clip.")] = 12,
    max_offset: Annotated[int, Opt(help="Sync offsets searched, +- frames.")] = 15,
    device: Annotated[str, Opt(help="Torch device for InceptionV3 / I3D / SyncNet.")] = "cpu",
    quiet: Annotated[bool, Opt("--quiet", help="No progress bar.")] = False,
) -> None:
    """Compare generated videos with real ones: every metric the inputs allow, per video and overall."""
    from emo_annotate.pose import parse_speed

    from .comparison import compare

    report = compare(generated, real=real, portraits=portraits, audio=audio, out=out, speed=parse_speed(speed),
                     **_config(analysis_size, clip_frames, max_offset, identity, arcface, syncnet, i3d, fid, device, quiet))
    typer.echo(_summary(report, out))


@app.command("benchmark")
def benchmark_command(
    checkpoint: Annotated[Path, Opt(help="emo-train checkpoint: checkpoints/<step>/ or a run directory.")],
    shards: Annotated[str, Opt(help="Test shards: an emo-annotate output folder, a shard or a brace pattern.")],
    out: Annotated[Path, Opt(help="Report folder; generated videos go to OUT/generated.")],
    limit: Annotated[Optional[int], Opt(help="At most this many clips.", min=1)] = None,
    steps: Annotated[int, Opt(help="DDIM steps per clip (as emo-infer).", min=1)] = 40,
    guidance: Annotated[float, Opt(help="Audio guidance scale (as emo-infer).", min=0)] = 3.5,
    speed: Annotated[Optional[float], Opt(help="Constant head speed deg/s instead of each clip's own mean (stage 3).", min=0)] = None,
    seed: Annotated[int, Opt(help="Random seed of generation.")] = 0,
    size: Annotated[Optional[int], Opt(help="Generated side in pixels (default: the training size).", min=8)] = None,
    gen_device: Annotated[str, Opt("--gen-device", help="Device for generation (as emo-infer --device).")] = "auto",
    syncnet: Annotated[Optional[Path], Opt(help="SyncNet syncnet_v2.model: Sync-C / Sync-D.")] = None,
    i3d: Annotated[Optional[Path], Opt(help="StyleGAN-V i3d_torchscript.pt: FVD.")] = None,
    arcface: Annotated[Optional[Path], Opt(help="ArcFace ONNX model.")] = None,
    identity: Identity = "dlib",
    fid: Annotated[bool, Opt("--fid/--no-fid", help="FID with the bundled InceptionV3.")] = True,
    analysis_size: Annotated[int, Opt(help="Long side faces are searched at.")] = 256,
    clip_frames: Annotated[int, Opt(help="Frames per generated clip.")] = 12,
    max_offset: Annotated[int, Opt(help="Sync offsets searched, +- frames.")] = 15,
    device: Annotated[str, Opt(help="Torch device for the metric networks.")] = "cpu",
    quiet: Annotated[bool, Opt("--quiet", help="No progress bars.")] = False,
) -> None:
    """Generate each test clip from its first frame and audio (and own head speed), then compare with the real clips."""
    from .benchmarking import benchmark

    report = benchmark(checkpoint, shards, out, limit=limit, steps=steps, guidance=guidance, speed=speed, seed=seed, size=size,
                       gen_device=gen_device, **_config(analysis_size, clip_frames, max_offset, identity, arcface, syncnet, i3d,
                                                    fid, device, quiet))
    typer.echo(_summary(report, out))


def main() -> None:
    run_app(app, (EvalError,), "interrupted; an earlier report in --out is left as it was")


if __name__ == "__main__":
    main()
