"""Model size presets: `tiny` (CPU tests and demo), `small` (learns on a CPU: the learning check),
`medium` (the learning check at 256 px on a GPU) and `sd15` (full size, loads SD1.5 + AnimateDiff
weights).

A preset holds the constructor arguments of each component; the audio attention is derived from
the backbone (one layer per transformer block). All presets have the same architecture.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EMOPreset:
    unet: dict[str, Any]  # UNet2DConditionModel kwargs, shared by the backbone and the ReferenceNet
    temporal: dict[str, Any]  # TemporalLayers
    face_locator: dict[str, Any]  # FaceLocator
    audio_projection: dict[str, Any]  # AudioProjection (its output_dim is the audio attention's key/value width)
    speed_encoder: dict[str, Any]  # SpeedEncoder (its embed_dim must equal temporal["speed_embed_dim"])
    resolution: int  # default training size in pixels (square)
    vae: dict[str, Any] | None  # AutoencoderKL kwargs of a VAE trained from scratch (`--stage vae`); None: SD's VAE


_SPEED_CENTERS = tuple(float(c) for c in range(0, 100, 10))  # deg/s


def _vae_config(**overrides) -> dict[str, Any]:
    """An AutoencoderKL with SD's interface: 4 latent channels, 3 downsamplings (factor 8)."""
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        **overrides,
    )

PRESETS: dict[str, EMOPreset] = {
    # Same block structure as SD1.5 (cross-attention blocks, then a plain block; attention in the
    # mid block), two levels of 16/32 channels; latents 4 x 8 x 8 (64 x 64 pixels).
    "tiny": EMOPreset(
        unet=dict(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(16, 32),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=16,
            attention_head_dim=4,  # diffusers' SD1.x naming: this is the number of heads
            norm_num_groups=8,
        ),
        temporal=dict(
            block_out_channels=(16, 32),
            layers_per_block=1,
            num_attention_heads=4,
            norm_num_groups=8,
            max_seq_length=32,
            num_motion_frames=4,
            speed_embed_dim=16,
        ),
        face_locator=dict(block_out_channels=(4, 8, 8, 16), latent_channels=4),
        # the annotator's default log-mel features: 4 mel frames x 80 bands per video frame
        audio_projection=dict(feature_shape=(320,), context_frames=2, hidden_dim=32, num_tokens=4, output_dim=16),
        speed_encoder=dict(
            centers=_SPEED_CENTERS, radii=(10.0,) * 10, context_frames=2, hidden_dim=32, num_tokens=2, embed_dim=16
        ),
        resolution=64,
        vae=_vae_config(block_out_channels=(8, 8, 8, 8), norm_num_groups=4, sample_size=64),
    ),
    # Learns on a CPU (the learning check, pipelines/learning_check.sh): 96 x 96 pixels, latents
    # 4 x 12 x 12, three levels of 32/64/128 channels; a VAE of its own (`--stage vae`).
    "small": EMOPreset(
        unet=dict(
            sample_size=12,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64, 128),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=64,
            attention_head_dim=4,
            norm_num_groups=8,
        ),
        temporal=dict(
            block_out_channels=(32, 64, 128),
            layers_per_block=1,
            num_attention_heads=4,
            norm_num_groups=8,
            max_seq_length=32,
            num_motion_frames=4,
            speed_embed_dim=64,
        ),
        face_locator=dict(block_out_channels=(8, 16, 32, 64), latent_channels=4),
        audio_projection=dict(feature_shape=(320,), context_frames=2, hidden_dim=128, num_tokens=4, output_dim=64),
        speed_encoder=dict(
            centers=_SPEED_CENTERS, radii=(10.0,) * 10, context_frames=2, hidden_dim=64, num_tokens=2, embed_dim=64
        ),
        resolution=96,
        vae=_vae_config(block_out_channels=(16, 32, 64, 64), norm_num_groups=8, sample_size=96),
    ),
    # The learning check on a GPU (pipelines/learning_check_gpu.sh): 256 x 256 pixels, latents
    # 4 x 32 x 32, `small`'s layout at twice the width with a fourth level (like SD1.5's); its own VAE.
    "medium": EMOPreset(
        unet=dict(
            sample_size=32,
            in_channels=4,
            out_channels=4,
            block_out_channels=(64, 128, 256, 256),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=128,
            attention_head_dim=8,
            norm_num_groups=16,
        ),
        temporal=dict(
            block_out_channels=(64, 128, 256, 256),
            layers_per_block=1,
            num_attention_heads=8,
            norm_num_groups=16,
            max_seq_length=32,
            num_motion_frames=4,
            speed_embed_dim=128,
        ),
        face_locator=dict(block_out_channels=(16, 32, 64, 128), latent_channels=4),
        audio_projection=dict(feature_shape=(320,), context_frames=2, hidden_dim=256, num_tokens=4, output_dim=128),
        speed_encoder=dict(
            centers=_SPEED_CENTERS, radii=(10.0,) * 10, context_frames=2, hidden_dim=128, num_tokens=2, embed_dim=128
        ),
        resolution=256,
        vae=_vae_config(block_out_channels=(32, 64, 128, 128), norm_num_groups=16, sample_size=256),
    ),
    # runwayml/stable-diffusion-v1-5 unet/config.json; temporal layers as the AnimateDiff v1.5-2/v3
    # motion adapters (8 heads, 2 layers per block, mid block, 32 positions); wav2vec2-base
    # features with all 13 hidden states (the annotator's wav2vec2 default).
    "sd15": EMOPreset(
        unet=dict(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=768,
            attention_head_dim=8,
            norm_num_groups=32,
            norm_eps=1e-5,
            act_fn="silu",
            center_input_sample=False,
            downsample_padding=1,
            flip_sin_to_cos=True,
            freq_shift=0,
            mid_block_scale_factor=1,
        ),
        temporal=dict(
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            transformer_layers_per_block=1,
            num_attention_heads=8,
            norm_num_groups=32,
            max_seq_length=32,
            use_mid_block=True,
            num_motion_frames=4,
            speed_embed_dim=768,
        ),
        face_locator=dict(block_out_channels=(16, 32, 64, 128), latent_channels=4),
        audio_projection=dict(feature_shape=(13, 768), context_frames=2, hidden_dim=512, num_tokens=32, output_dim=768),
        speed_encoder=dict(
            centers=_SPEED_CENTERS, radii=(10.0,) * 10, context_frames=2, hidden_dim=256, num_tokens=4, embed_dim=768
        ),
        resolution=512,
        vae=None,
    ),
}


def get_preset(name: str, *, audio_feature_shape: tuple[int, ...] | None = None) -> EMOPreset:
    """A copy of preset `name`; `audio_feature_shape` overrides the per-frame audio feature shape
    (take it from the shards' metadata: `(n_mels * k,)` for mel, `(layers, dim)` for wav2vec2)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    preset = copy.deepcopy(PRESETS[name])
    if audio_feature_shape is not None:
        preset.audio_projection["feature_shape"] = tuple(audio_feature_shape)
    return preset
