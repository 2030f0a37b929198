"""`emo-infer`: parse options and delegate to `emo_infer.generate`; known errors become one line and exit code 1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from emo_annotate.cli_common import make_app, run_app

from .errors import InferError

app = make_app("Animate a portrait with a speech or song recording: an mp4 of any length, with sound.")



@app.command()
def main_command(
    checkpoint: Annotated[Path, typer.Option(help="emo-train checkpoint: checkpoints/<step>/ or a run directory.")],
    image: Annotated[Path, typer.Option(help="The portrait (any photo with one face).")],
    audio: Annotated[Path, typer.Option(help="Speech or song (wav, mp3, m4a, flac, a video's sound...).")],
    out: Annotated[Path, typer.Option(help="The video to write (mp4, H.264 + AAC).")],
    speed: Annotated[Optional[str], typer.Option(help="Head speed in deg/s: a number, or a file with one value per frame.")] = None,
    steps: Annotated[int, typer.Option(help="DDIM steps per clip.", min=1)] = 40,
    guidance: Annotated[float, typer.Option(help="Audio classifier-free guidance scale (1: off).", min=0)] = 3.5,
    speed_guidance: Annotated[float, typer.Option(help="Head-speed guidance scale (1: off; above 1 the head follows --speed more closely).", min=0)] = 1.0,
    init_strength: Annotated[float, typer.Option(
        help="1: each clip starts from pure noise; below 1: from the portrait noised to that level "
             "(keeps its layout and colours, the head moves less).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same video).")] = 0,
    size: Annotated[Optional[int], typer.Option(help="Output side in pixels (default: the training size).", min=8)] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto | float32 | float16 | bfloat16 (auto: fp16 on GPU, fp32 on CPU).")] = "auto",
    motion_frames: Annotated[int, typer.Option(help="Frames of a clip that condition the next one.", min=1)] = 4,
    frames_per_clip: Annotated[int, typer.Option(help="Frames generated per clip.", min=1)] = 12,
    audio_encoder: Annotated[Optional[str], typer.Option(help="wav2vec2 folder or hub id (default: the one recorded in the checkpoint).")] = None,
    mask_scale: Annotated[float, typer.Option(help="Face Locator mask: the face box grown by this factor.", min=0.1)] = 1.2,
    crf: Annotated[int, typer.Option(help="H.264 quality: constant rate factor (lower is better, larger).", min=0, max=51)] = 18,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="Channels-last convolutions (GPU tensor cores).")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model's repeated blocks (long videos on a GPU).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Generate: emo-infer --checkpoint CKPT --image PORTRAIT --audio AUDIO --out OUT.mp4 [options]."""
    from .api import generate
    from .config import InferConfig
    from emo_annotate.pose import parse_speed

    cfg = InferConfig(
        checkpoint=checkpoint, image=image, audio=audio, out=out, speed=parse_speed(speed), steps=steps,
        guidance=guidance, speed_guidance=speed_guidance, init_strength=init_strength, seed=seed, size=size,
        device=device, dtype=dtype, motion_frames=motion_frames,
        frames_per_clip=frames_per_clip, audio_encoder=audio_encoder, mask_scale=mask_scale, crf=crf,
        channels_last=channels_last, compile=compile, progress=not quiet,
    )
    result = generate(cfg)
    typer.echo(
        f"wrote {result.out}: {result.frames} frames at {result.fps:g} fps ({result.clips} clips, "
        f"{result.size}x{result.size}) in {result.seconds['total']:.1f} s"
    )


def main() -> None:
    run_app(app, (InferError,), "interrupted; nothing was written to --out")


if __name__ == "__main__":
    main()
