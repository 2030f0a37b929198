"""Face Locator: encodes the clip's face-region mask and adds it to the noisy latents."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


class FaceLocator(ModelMixin, ConfigMixin):
    """Light conv encoder `(b, 1, H, W)` mask in [0, 1] -> `(b, latent_channels, H/s, W/s)`.

    Each step between `block_out_channels` halves the resolution, so s = 2^(len - 1) must be the
    VAE's downsampling factor (8 with the default four widths). The output conv is zero-initialised:
    a fresh Face Locator adds exactly nothing to the latents.
    """

    @register_to_config
    def __init__(
        self,
        conditioning_channels: int = 1,
        block_out_channels: tuple[int, ...] = (16, 32, 64, 128),
        latent_channels: int = 4,
    ):
        super().__init__()
        self.conv_in = nn.Conv2d(conditioning_channels, block_out_channels[0], kernel_size=3, padding=1)
        layers = []
        for channels_in, channels_out in zip(block_out_channels[:-1], block_out_channels[1:]):
            layers += [
                nn.Conv2d(channels_in, channels_in, kernel_size=3, padding=1),
                nn.SiLU(),
                nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1, stride=2),
                nn.SiLU(),
            ]
        self.blocks = nn.Sequential(*layers)
        self.conv_out = nn.Conv2d(block_out_channels[-1], latent_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def forward(self, face_mask: torch.Tensor) -> torch.Tensor:
        x = nn.functional.silu(self.conv_in(face_mask.to(self.dtype)))  # (b, c0, H, W)
        return self.conv_out(self.blocks(x))  # (b, latent_channels, H/s, W/s)
