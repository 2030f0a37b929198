"""Typed options of one generation (the CLI's flags, `generate`'s arguments)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import InferError

Dtype = Literal["auto", "float32", "float16", "bfloat16"]


@dataclass
class InferConfig:
    """One portrait + one recording -> one video."""

    checkpoint: Path
    """`emo-train` checkpoint: `RUN_DIR/checkpoints/<step>/`, a `checkpoints/` folder or a run
    directory (its `last`). Stage 3 for head-speed control, stage 2 without it."""
    image: Path
    """The portrait: any photo Pillow (or FFmpeg) reads, with one face."""
    audio: Path
    """Speech or song: anything FFmpeg decodes (wav, mp3, m4a, flac, a video's audio track)."""
    out: Path
    """The video to write, H.264 + AAC: `.mp4` (or `.mov`, `.m4v`, `.mkv`)."""
    speed: float | Path | None = None
    """Head rotation speed in degrees/second: a constant, or a file with one value per output frame
    (.npy, or text separated by spaces, commas or newlines). None: no speed conditioning, the head
    moves as the model learnt from its speed-dropout samples (refused for a stage-3 checkpoint
    trained without speed dropout, which never saw that input)."""
    steps: int = 40
    """DDIM denoising steps per clip (EMO uses 40)."""
    guidance: float = 3.5
    """Classifier-free guidance scale on the audio (1: no guidance, half the compute)."""
    speed_guidance: float = 1.0
    """Classifier-free guidance scale on the head speed (1: off): above 1 the head follows the
    requested speed more closely than the model alone, for 1.5x the compute. Needs a stage-3
    checkpoint trained with speed dropout (the model's speed-free prediction) and a `speed`."""
    init_strength: float = 1.0
    """Where each clip's denoising starts: 1 is pure noise (the model draws every clip from
    nothing); below 1, the portrait's latents noised to that share of the schedule (image-to-image),
    and only that share of `steps` runs. The clips keep the portrait's layout and colours, and a
    model that draws faces poorly from noise draws them whole; the head moves less (it starts
    each clip from the portrait's pose). LEARNING.md compares 0.8 with 1."""
    seed: int = 0
    """Seeds the initial noise of every clip: the same seed gives the same video."""
    size: int | None = None
    """Output side in pixels (multiple of 8); None: the checkpoint's training resolution."""
    device: str = "auto"
    """`cpu`, `cuda`, `cuda:1`, ...; `auto`: the first GPU when there is one."""
    dtype: Dtype = "auto"
    """Weights and activations: `auto` is float16 on a GPU, float32 on the CPU."""
    motion_frames: int = 4
    """Last frames of a clip that condition the next clip (EMO: 4)."""
    frames_per_clip: int = 12
    """Frames generated per clip (EMO: 12)."""
    audio_encoder: str | None = None
    """wav2vec2 folder or hub id to use instead of the one the checkpoint's data was annotated with."""
    mask_scale: float = 1.2
    """The Face Locator mask is the portrait's face box grown by this factor about its centre:
    training masks are unions of a moving face's boxes, larger than one box."""
    crf: int = 18
    """H.264 constant rate factor of the output."""
    channels_last: bool = False
    """Convolutions (UNets, Face Locator, VAE) in channels-last memory format (GPU tensor cores)."""
    compile: bool = False
    """`torch.compile` the model's repeated blocks: a slower first clip, faster clips after it."""
    progress: bool = True
    """Show a progress bar over clips and denoising steps."""

    def __post_init__(self) -> None:
        self.checkpoint, self.image, self.audio, self.out = (
            Path(p) for p in (self.checkpoint, self.image, self.audio, self.out)
        )

        def check(ok: bool, message: str) -> None:
            if not ok:
                raise InferError(message)

        check(self.steps >= 1, "--steps must be >= 1")
        check(self.guidance >= 0, "--guidance must be >= 0")
        check(self.speed_guidance >= 0, "--speed-guidance must be >= 0")
        check(0 < self.init_strength <= 1, "--init-strength must be in (0, 1]: the share of the noise schedule to run")
        check(self.frames_per_clip >= 1, "--frames-per-clip must be >= 1")
        check(1 <= self.motion_frames <= self.frames_per_clip, "--motion-frames must be between 1 and --frames-per-clip")
        check(self.size is None or (self.size >= 8 and self.size % 8 == 0), "--size must be a multiple of 8")
        check(self.dtype in ("auto", "float32", "float16", "bfloat16"), "--dtype must be auto, float32, float16 or bfloat16")
        check(self.mask_scale > 0, "--mask-scale must be > 0")
        check(0 <= self.crf <= 51, "--crf must be in 0..51")
        if isinstance(self.speed, str):
            from emo_annotate.pose import parse_speed

            self.speed = parse_speed(self.speed)
        if isinstance(self.speed, (int, float)):
            check(self.speed >= 0, "--speed must be >= 0 degrees/second")
            self.speed = float(self.speed)
