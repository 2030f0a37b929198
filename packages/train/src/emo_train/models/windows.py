"""Per-frame context windows, shared by the audio projection and the speed encoder."""

from __future__ import annotations

import torch
from torch import nn


def frame_windows(features: torch.Tensor, context_frames: int) -> torch.Tensor:
    """Window of `context_frames` neighbours on each side of every frame.

    `features` is `[b, T, ...]`; the result is `[b, T, 2 * context_frames + 1, ...]` where entry
    `[:, t, k]` is frame `t - context_frames + k`. Frames before the first / after the last repeat
    the edge frame (edge padding), so a clip's first frames see their own audio, not silence.
    Build the windows on the whole video's features before cutting clips, so that clip edges see
    the real neighbouring frames.
    """
    if context_frames < 0:
        raise ValueError(f"context_frames must be >= 0, got {context_frames}")
    num_frames = features.shape[1]
    offsets = torch.arange(-context_frames, context_frames + 1, device=features.device)
    index = (torch.arange(num_frames, device=features.device)[:, None] + offsets).clamp(0, num_frames - 1)  # (T, 2m+1)
    return features[:, index]


def window_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """The small MLP that maps a flattened window of per-frame features to tokens (audio
    projection and speed encoder): Linear-SiLU-Linear-SiLU-Linear."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.SiLU(),
        nn.Linear(hidden_dim, hidden_dim),
        nn.SiLU(),
        nn.Linear(hidden_dim, out_dim),
    )
