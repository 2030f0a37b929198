"""Attention processors that turn SD1.5 transformer blocks into EMO blocks.

Every `BasicTransformerBlock` of SD1.5 has a self-attention (`attn1`) and a text cross-attention
(`attn2`). EMO has no text, so:

- backbone `attn1` -> reference attention (`ReferenceAttnProcessor`): the ReferenceNet features of
  the same layer are appended to the keys/values, reusing SD1.5's pretrained self-attention
  weights (the Animate Anyone / Hallo / V-Express form of EMO's reference attention);
- backbone `attn2` -> audio attention (`AudioAttnProcessor`): the slot runs a new cross-attention
  layer on audio tokens; SD1.5's text weights stay in the checkpoint only so that the backbone
  folder remains a stock `UNet2DConditionModel`;
- ReferenceNet `attn2` -> nothing (`SkipCrossAttnProcessor`): there is no text to attend to.

Processors are plain callables set with `set_attn_processor`; per-call inputs arrive through the
UNet's `cross_attention_kwargs` (which diffusers forwards to every processor, and which gradient
checkpointing stores and replays), so the processors hold no per-call state.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0


class ReferenceAttnProcessor:
    """Self-attention whose keys/values also cover the reference image's features of this layer.

    `reference_features[name]` is `(b, hw, c)`: the hidden states that entered the ReferenceNet's
    self-attention at the same position (`name`, e.g.
    `down_blocks.0.attentions.0.transformer_blocks.0.attn1`). Without reference features this is
    plain self-attention.
    """

    def __init__(self, name: str):
        self.name = name
        self.attention = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,  # (b*f, hw, c): norm1 output of every frame
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        reference_features: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if reference_features is not None:
            reference = reference_features[self.name]  # (b, hw, c)
            frames = hidden_states.shape[0] // reference.shape[0]
            reference = reference.to(hidden_states.dtype).repeat_interleave(frames, dim=0)  # (b*f, hw, c)
            encoder_hidden_states = torch.cat([hidden_states, reference], dim=1)  # (b*f, 2hw, c)
        return self.attention(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class AudioAttnProcessor:
    """Runs an audio cross-attention layer in the backbone's (text) cross-attention slot.

    `encoder_hidden_states` are the audio tokens of each frame, `(b*f, tokens, dim)`; the layer's
    output projection starts at zero. Without audio (stage 1, or unconditional guidance) the slot
    contributes nothing. `attn` (SD1.5's text cross-attention) is deliberately not used.
    """

    def __init__(self, audio_attention: Attention):
        self.audio_attention = audio_attention

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,  # (b*f, hw, c): norm2 output
        encoder_hidden_states: torch.Tensor | None = None,  # (b*f, tokens, dim) audio tokens
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        # meant for attn1; accepted here so that diffusers does not warn about an unused kwarg
        reference_features: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is None:
            return torch.zeros_like(hidden_states)
        return self.audio_attention(hidden_states, encoder_hidden_states=encoder_hidden_states)


class SkipCrossAttnProcessor:
    """An empty cross-attention slot: adds nothing to the residual stream."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return torch.zeros_like(hidden_states)
