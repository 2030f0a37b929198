"""Speed encoder: head rotation speed per frame -> speed tokens for the temporal layers' cross-attention."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from .windows import frame_windows, window_mlp


class SpeedEncoder(ModelMixin, ConfigMixin):
    """EMO's speed layers, input side: `(b, f)` speeds in degrees/second -> `(b, f, num_tokens, embed_dim)`.

    Each speed w is encoded over d buckets as `tanh((w - c_i) / r_i * 3)` (a soft thermometer code:
    about -1 below bucket i, +1 above it, the transition r_i wide); the codes of `context_frames`
    neighbours on each side are concatenated (edge frames repeated) and an MLP maps them to tokens.
    EMO does not publish the buckets; the defaults (centres 0, 10, ..., 90 deg/s, radius 10) cover
    the range of talking-head rotation speeds - re-fit them to the annotated `speed.npy` distribution.
    """

    @register_to_config
    def __init__(
        self,
        centers: tuple[float, ...] = tuple(float(c) for c in range(0, 100, 10)),
        radii: tuple[float, ...] = (10.0,) * 10,
        context_frames: int = 2,
        hidden_dim: int = 256,
        num_tokens: int = 4,
        embed_dim: int = 768,
    ):
        super().__init__()
        if len(centers) != len(radii) or any(r <= 0 for r in radii):
            raise ValueError("centers and radii need the same length and radii must be positive")
        in_dim = (2 * context_frames + 1) * len(centers)
        self.mlp = window_mlp(in_dim, hidden_dim, num_tokens * embed_dim)

    def bucket_encoding(self, speed: torch.Tensor) -> torch.Tensor:
        """`(b, f)` -> `(b, f, d)`: tanh((w - c_i) / r_i * 3) per bucket i."""
        centers = torch.tensor(self.config.centers, device=speed.device, dtype=self.dtype)
        radii = torch.tensor(self.config.radii, device=speed.device, dtype=self.dtype)
        return torch.tanh((speed.to(self.dtype)[..., None] - centers) / radii * 3)

    def forward(self, speed: torch.Tensor) -> torch.Tensor:
        batch, frames = speed.shape
        windows = frame_windows(self.bucket_encoding(speed), self.config.context_frames)  # (b, f, 2k+1, d)
        tokens = self.mlp(windows.flatten(2))  # (b, f, tokens * dim)
        return tokens.reshape(batch, frames, self.config.num_tokens, self.config.embed_dim)
