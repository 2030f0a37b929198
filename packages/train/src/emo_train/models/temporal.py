"""Temporal layers: AnimateDiff-style self-attention over the frame axis, with motion frames and speed.

A temporal layer runs after every spatial layer of the 2D backbone (after each transformer block
of a cross-attention UNet block, after each resnet of a plain block), exactly where diffusers'
`UNetMotionModel` puts its motion modules, so an AnimateDiff `MotionAdapter` loads key for key.
The module layout (`down_blocks.{i}.motion_modules.{j}`, `mid_block.motion_modules.0`,
`up_blocks.{i}.motion_modules.{j}`) and the attribute names inside each module mirror
`MotionAdapter`; only the speed cross-attention (`speed_norm`, `speed_attn`) is new.

EMO additions:
- motion frames: the ReferenceNet features of the previous clip's last n frames at the same
  position are put in front of the frame axis, so the attention sees n + f frames; only the f
  target frames are written back;
- speed: per-frame speed tokens enter by cross-attention (zero-initialised output).
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin, MotionAdapter, UNet2DConditionModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from torch import nn


def temporal_positions(unet: UNet2DConditionModel) -> dict[str, str]:
    """Map each UNet submodule after which a temporal layer runs to that layer's path in `TemporalLayers`.

    E.g. `{"down_blocks.0.attentions.0": "down_blocks.0.motion_modules.0",
    "down_blocks.3.resnets.1": "down_blocks.3.motion_modules.1", "mid_block.attentions.0":
    "mid_block.motion_modules.0", ...}`, matching `UNetMotionModel`'s placement.
    """
    positions = {}
    for section, blocks in (("down_blocks", unet.down_blocks), ("up_blocks", unet.up_blocks)):
        for i, block in enumerate(blocks):
            # spatial layer j of a block = resnet j, followed by transformer j when the block has them
            kind = "attentions" if getattr(block, "attentions", None) else "resnets"
            for j in range(len(block.resnets)):
                positions[f"{section}.{i}.{kind}.{j}"] = f"{section}.{i}.motion_modules.{j}"
    if unet.mid_block is not None:
        for j in range(len(getattr(unet.mid_block, "attentions", []))):
            positions[f"mid_block.attentions.{j}"] = f"mid_block.motion_modules.{j}"
    return positions


class TemporalTransformer(nn.Module):
    """One temporal layer (`AnimateDiffTransformer3D` layout) plus EMO's motion frames and speed attention."""

    def __init__(
        self,
        channels: int,
        num_attention_heads: int,
        num_transformer_layers: int,
        norm_num_groups: int,
        max_seq_length: int,
        speed_embed_dim: int,
    ):
        super().__init__()
        head_dim = channels // num_attention_heads
        self.norm = nn.GroupNorm(num_groups=norm_num_groups, num_channels=channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, channels)
        # two temporal self-attentions + feed-forward per block, sinusoidal frame positions (AnimateDiff)
        self.transformer_blocks = nn.ModuleList(
            [
                BasicTransformerBlock(
                    channels,
                    num_attention_heads,
                    head_dim,
                    cross_attention_dim=None,
                    activation_fn="geglu",
                    attention_bias=False,
                    double_self_attention=True,
                    positional_embeddings="sinusoidal",
                    num_positional_embeddings=max_seq_length,
                )
                for _ in range(num_transformer_layers)
            ]
        )
        self.speed_norm = nn.LayerNorm(channels)
        self.speed_attn = Attention(
            query_dim=channels, cross_attention_dim=speed_embed_dim, heads=num_attention_heads, dim_head=head_dim
        )
        self.proj_out = nn.Linear(channels, channels)
        # zero outputs: a new layer leaves the pretrained image model unchanged, and speed
        # conditioning added to trained temporal layers (stage 3) starts as a no-op
        for layer in (self.proj_out, self.speed_attn.to_out[0]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        hidden_states: torch.Tensor,  # (b*f, c, h, w) backbone features of the f target frames
        num_frames: int,
        motion_frames: torch.Tensor | None = None,  # (b, n, c, h, w) ReferenceNet features of the motion frames
        speed_tokens: torch.Tensor | None = None,  # (b*f, tokens, speed_dim)
        speed_keep: torch.Tensor | None = None,  # (b*f, 1, 1): 0 drops a frame's speed attention
    ) -> torch.Tensor:
        batch_frames, channels, height, width = hidden_states.shape
        batch = batch_frames // num_frames
        frames = hidden_states.reshape(batch, num_frames, channels, height, width)  # (b, f, c, h, w)
        residual = frames
        if motion_frames is not None:
            frames = torch.cat([motion_frames.to(frames.dtype), frames], dim=1)  # (b, n+f, c, h, w)
        num_motion = frames.shape[1] - num_frames

        # GroupNorm statistics over all frames, as AnimateDiff does
        x = self.norm(frames.transpose(1, 2))  # (b, c, n+f, h, w)
        # one sequence over the frames per pixel: (b*h*w, n+f, c)
        x = x.permute(0, 3, 4, 2, 1).reshape(batch * height * width, num_motion + num_frames, channels)
        x = self.proj_in(x)

        if speed_tokens is not None:
            # per target frame: its h*w positions attend to that frame's speed tokens, before the
            # temporal attention so the speed information can be propagated along the frames
            target = x[:, num_motion:].reshape(batch, height * width, num_frames, channels)
            target = target.transpose(1, 2).reshape(batch_frames, height * width, channels)  # (b*f, hw, c)
            attended = self.speed_attn(self.speed_norm(target), encoder_hidden_states=speed_tokens)
            target = target + (attended if speed_keep is None else attended * speed_keep)
            target = target.reshape(batch, num_frames, height * width, channels).transpose(1, 2)
            x = torch.cat([x[:, :num_motion], target.reshape(batch * height * width, num_frames, channels)], dim=1)

        for block in self.transformer_blocks:
            x = block(x)  # (b*h*w, n+f, c)

        x = self.proj_out(x[:, num_motion:])  # only the target frames are written back
        x = x.reshape(batch, height, width, num_frames, channels).permute(0, 3, 4, 1, 2)  # (b, f, c, h, w)
        return (x + residual).reshape(batch_frames, channels, height, width)


class TemporalBlock(nn.Module):
    """The temporal layers of one UNet block (named like diffusers' `MotionModules`)."""

    def __init__(self, channels: int, num_layers: int, **layer_kwargs):
        super().__init__()
        self.motion_modules = nn.ModuleList([TemporalTransformer(channels, **layer_kwargs) for _ in range(num_layers)])


class TemporalLayers(ModelMixin, ConfigMixin):
    """All temporal layers of the backbone, laid out like diffusers' `MotionAdapter`.

    `block_out_channels` / `layers_per_block` must be the backbone's; up blocks get
    `layers_per_block + 1` layers (one per resnet). `num_motion_frames` is how many previous-clip
    frames precede the target frames (n=4 in EMO); `motion frames + target frames` may not exceed
    `max_seq_length` (the positional table).
    """

    @register_to_config
    def __init__(
        self,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        transformer_layers_per_block: int = 1,
        num_attention_heads: int = 8,
        norm_num_groups: int = 32,
        max_seq_length: int = 32,
        use_mid_block: bool = True,
        num_motion_frames: int = 4,
        speed_embed_dim: int = 768,
    ):
        super().__init__()
        layer_kwargs = dict(
            num_attention_heads=num_attention_heads,
            num_transformer_layers=transformer_layers_per_block,
            norm_num_groups=norm_num_groups,
            max_seq_length=max_seq_length,
            speed_embed_dim=speed_embed_dim,
        )
        self.down_blocks = nn.ModuleList(
            [TemporalBlock(channels, layers_per_block, **layer_kwargs) for channels in block_out_channels]
        )
        self.mid_block = TemporalBlock(block_out_channels[-1], 1, **layer_kwargs) if use_mid_block else None
        self.up_blocks = nn.ModuleList(
            [TemporalBlock(channels, layers_per_block + 1, **layer_kwargs) for channels in reversed(block_out_channels)]
        )

    def motion_adapter_config(self) -> dict:
        """The `MotionAdapter` config entries this architecture corresponds to (per-block values as tuples)."""
        blocks = len(self.config.block_out_channels)
        return {
            "block_out_channels": tuple(self.config.block_out_channels),
            "motion_layers_per_block": (self.config.layers_per_block,) * blocks,
            "motion_transformer_layers_per_block": (self.config.transformer_layers_per_block,) * blocks,
            "motion_num_attention_heads": (self.config.num_attention_heads,) * blocks,
            "motion_norm_num_groups": self.config.norm_num_groups,
            "motion_max_seq_length": self.config.max_seq_length,
        }


def _as_per_block(value, blocks: int):
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * blocks


def load_motion_adapter(temporal: TemporalLayers, adapter: MotionAdapter) -> list[str]:
    """Copy an AnimateDiff `MotionAdapter`'s weights into `temporal`; return the keys it did not provide.

    The parameter names are identical, so this is a state-dict copy after checking that the
    architectures agree (the head count, for one, changes no weight shape and would otherwise load
    silently into a different model). The returned keys are the speed attention's and, for an
    adapter without a mid block (AnimateDiff v1), the mid block's; they keep their zero-initialised
    outputs.
    """
    config = adapter.config
    blocks = len(config.block_out_channels)
    found = {
        "block_out_channels": tuple(config.block_out_channels),
        "motion_layers_per_block": _as_per_block(config.motion_layers_per_block, blocks),
        "motion_transformer_layers_per_block": _as_per_block(config.motion_transformer_layers_per_block, blocks),
        "motion_num_attention_heads": _as_per_block(config.motion_num_attention_heads, blocks),
        "motion_norm_num_groups": config.motion_norm_num_groups,
        "motion_max_seq_length": config.motion_max_seq_length,
    }
    expected = temporal.motion_adapter_config()
    if temporal.mid_block is not None and config.use_motion_mid_block:
        found["mid"] = (
            config.motion_mid_block_layers_per_block,
            _as_per_block(config.motion_transformer_layers_per_mid_block, 1),
        )
        expected["mid"] = (1, (temporal.config.transformer_layers_per_block,))
    mismatched = {key: (found[key], value) for key, value in expected.items() if found[key] != value}
    if mismatched:
        details = ", ".join(f"{key}: adapter {got}, model {want}" for key, (got, want) in mismatched.items())
        raise ValueError(f"motion adapter does not match the temporal layers ({details})")
    missing, unexpected = temporal.load_state_dict(adapter.state_dict(), strict=False)
    if unexpected:
        raise ValueError(f"motion adapter has weights with no place in the temporal layers: {unexpected}")
    return missing
