"""ReferenceNet: an SD1.5-structured UNet that encodes the reference image (and motion frames) once per clip."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock

from .attention_processors import SkipCrossAttnProcessor
from .temporal import temporal_positions


@dataclass
class ReferenceFeatures:
    """What the backbone needs from the ReferenceNet, computed once per clip.

    attention: backbone self-attention layer name (`...transformer_blocks.0.attn1`) -> `(b, hw, c)`,
        the hidden states entering the ReferenceNet's self-attention at that layer for the
        reference image; appended to the backbone's keys/values (reference attention).
    motion: UNet position of a temporal layer (see `temporal_positions`) -> `(b, n, c, h, w)`, the
        ReferenceNet's features of the n motion frames at that position; zeros for a first clip.
    """

    attention: dict[str, torch.Tensor]
    motion: dict[str, torch.Tensor]


class _CaptureInput:
    """Forward pre-hook: stores the hidden states entering a self-attention layer."""

    def __init__(self, net: "ReferenceNet", name: str):
        self.net, self.name = net, name

    def __call__(self, module, args):
        if self.net._captured is not None:
            self.net._captured[self.name] = args[0]  # (B, hw, c)


class _CaptureOutput:
    """Forward hook: stores the features a spatial layer hands to the next (a temporal layer's position)."""

    def __init__(self, net: "ReferenceNet", name: str):
        self.net, self.name = net, name

    def __call__(self, module, args, output):
        if self.net._captured is not None:
            self.net._captured[self.name] = output[0] if isinstance(output, tuple) else output  # (B, c, h, w)


class ReferenceNet(UNet2DConditionModel):
    """A `UNet2DConditionModel` (same config, same weights layout: loads SD1.5's `unet/` directly)
    whose `encode` returns the features the backbone attends to.

    It gets no text: its cross-attention slots are empty. It always runs at timestep 0 (the
    reference is clean). Its output head is computed but unused.
    """

    # same signature as UNet2DConditionModel.__init__ (diffusers builds models from that signature)
    @functools.wraps(UNet2DConditionModel.__init__)
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._captured: dict[str, torch.Tensor] | None = None  # filled only while `encode` runs
        self.set_attn_processor(
            {
                name: SkipCrossAttnProcessor() if ".attn2." in name else processor
                for name, processor in self.attn_processors.items()
            }
        )
        for name, module in self.named_modules():
            if isinstance(module, BasicTransformerBlock):
                module.attn1.register_forward_pre_hook(_CaptureInput(self, f"{name}.attn1"))
        for position in temporal_positions(self):
            self.get_submodule(position).register_forward_hook(_CaptureOutput(self, position))

    def _capture(self, latents: torch.Tensor) -> dict[str, torch.Tensor]:
        """One pass at timestep 0; the features captured by the hooks, by layer / position."""
        timesteps = torch.zeros(latents.shape[0], device=latents.device, dtype=torch.long)
        self._captured = {}
        try:
            self(latents, timesteps, encoder_hidden_states=None)
            return self._captured
        finally:
            self._captured = None

    def encode(
        self,
        reference_latents: torch.Tensor,  # (b, c, h, w)
        motion_latents: torch.Tensor | None = None,  # (b, c, n, h, w) last n frames of the previous clip
        num_motion_frames: int = 4,
    ) -> ReferenceFeatures:
        """One ReferenceNet pass over the reference image and the motion frames together (training).

        Without `motion_latents` (first clip) the motion features are zeros of `num_motion_frames`
        frames. Samples do not interact, so this equals `encode` of the reference alone with
        `encode_motion` of the motion frames (what inference does: the reference once per video).
        """
        batch = reference_latents.shape[0]
        latents = reference_latents
        if motion_latents is not None:
            num_motion_frames = motion_latents.shape[2]
            motion = motion_latents.transpose(1, 2).flatten(0, 1)  # (b*n, c, h, w)
            latents = torch.cat([reference_latents, motion])  # (b + b*n, c, h, w)
        captured = self._capture(latents)

        attention = {name: features[:batch] for name, features in captured.items() if name.endswith(".attn1")}
        motion_features = {}
        for position in temporal_positions(self):
            features = captured[position]  # (B, c, h, w)
            if motion_latents is None:
                motion_features[position] = features.new_zeros(batch, num_motion_frames, *features.shape[1:])
            else:
                motion_features[position] = features[batch:].unflatten(0, (batch, num_motion_frames))  # (b, n, c, h, w)
        return ReferenceFeatures(attention=attention, motion=motion_features)

    def encode_motion(self, motion_latents: torch.Tensor) -> dict[str, torch.Tensor]:
        """Motion features alone: `(b, c, n, h, w)` latents -> position -> `(b, n, c, h, w)`."""
        batch, _, frames = motion_latents.shape[:3]
        captured = self._capture(motion_latents.transpose(1, 2).flatten(0, 1))  # (b*n, c, h, w) in
        return {position: captured[position].unflatten(0, (batch, frames)) for position in temporal_positions(self)}
