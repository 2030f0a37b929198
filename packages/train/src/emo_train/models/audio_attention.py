"""Audio attention: one cross-attention layer per backbone transformer block, in its cross-attention slot."""

from __future__ import annotations

from diffusers import ConfigMixin, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from torch import nn


class AudioAttention(ModelMixin, ConfigMixin):
    """Cross-attention layers from backbone features `(b*f, hw, c)` to audio tokens `(b*f, tokens, dim)`.

    `layer_names` are the backbone's transformer block paths (e.g.
    `down_blocks.0.attentions.0.transformer_blocks.0`), with their width and head count; the
    layers are new (SD1.5's text cross-attention expects CLIP text embeddings) and their output
    projections start at zero, so audio changes nothing until trained (stage 2).
    """

    @register_to_config
    def __init__(
        self,
        layer_names: list[str],
        layer_channels: list[int],
        layer_heads: list[int],
        cross_attention_dim: int = 768,
    ):
        super().__init__()
        if not len(layer_names) == len(layer_channels) == len(layer_heads):
            raise ValueError("layer_names, layer_channels and layer_heads must have the same length")
        self.layers = nn.ModuleDict()
        for name, channels, heads in zip(layer_names, layer_channels, layer_heads):
            attention = Attention(
                query_dim=channels, cross_attention_dim=cross_attention_dim, heads=heads, dim_head=channels // heads
            )
            nn.init.zeros_(attention.to_out[0].weight)
            nn.init.zeros_(attention.to_out[0].bias)
            self.layers[self._key(name)] = attention

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "_")  # module names may not contain dots

    def layer(self, name: str) -> Attention:
        """The audio attention of backbone transformer block `name`."""
        return self.layers[self._key(name)]

    @classmethod
    def from_unet(cls, unet: UNet2DConditionModel, cross_attention_dim: int) -> "AudioAttention":
        """One layer per transformer block of `unet`, as wide and with as many heads as its cross-attention."""
        blocks = [
            (name, module)
            for name, module in unet.named_modules()
            if isinstance(module, BasicTransformerBlock) and module.attn2 is not None
        ]
        return cls(
            layer_names=[name for name, _ in blocks],
            layer_channels=[block.attn2.query_dim for _, block in blocks],
            layer_heads=[block.attn2.heads for _, block in blocks],
            cross_attention_dim=cross_attention_dim,
        )
