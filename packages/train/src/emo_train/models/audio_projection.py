"""Audio projection: per-frame windows of audio features -> audio tokens for the audio attention."""

from __future__ import annotations

import math

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .windows import window_mlp


class AudioProjection(ModelMixin, ConfigMixin):
    """A small MLP from a frame's audio window to `num_tokens` cross-attention tokens.

    Input `[b, f, 2m+1, *feature_shape]` with m = `context_frames` (frames f-m..f+m, see
    `frame_windows`); `feature_shape` is one frame's features as stored in the shards' `audio.npy`:
    `(layers, dim)` for wav2vec2 hidden states (the blocks are concatenated here), `(n_mels * k,)`
    for log-mel. Output `[b, f, num_tokens, output_dim]`.
    """

    @register_to_config
    def __init__(
        self,
        feature_shape: tuple[int, ...] = (13, 768),
        context_frames: int = 2,
        hidden_dim: int = 512,
        num_tokens: int = 32,
        output_dim: int = 768,
    ):
        super().__init__()
        in_dim = (2 * context_frames + 1) * math.prod(feature_shape)
        self.mlp = window_mlp(in_dim, hidden_dim, num_tokens * output_dim)
        self.norm = nn.LayerNorm(output_dim)

    def forward(self, audio_windows: torch.Tensor) -> torch.Tensor:
        window = 2 * self.config.context_frames + 1
        expected = (window, *self.config.feature_shape)
        if tuple(audio_windows.shape[2:]) != expected:
            raise ValueError(
                f"audio features must be [b, f, {', '.join(map(str, expected))}], got {list(audio_windows.shape)}"
            )
        batch, frames = audio_windows.shape[:2]
        tokens = self.mlp(audio_windows.flatten(2).to(self.dtype))  # (b, f, tokens * dim)
        return self.norm(tokens.reshape(batch, frames, self.config.num_tokens, self.config.output_dim))
