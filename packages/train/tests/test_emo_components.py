"""Unit tests of the small components: windows, audio projection, speed encoder, face locator, audio attention."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import UNet2DConditionModel
from emo_train.models import AudioAttention, AudioProjection, FaceLocator, SpeedEncoder, frame_windows, get_preset


def test_frame_windows_edge_padding():
    features = torch.arange(6.0).reshape(1, 6, 1).expand(2, 6, 3)  # (b, T, dim), value = frame index
    windows = frame_windows(features, 2)
    assert windows.shape == (2, 6, 5, 3)
    assert windows[0, :, :, 0].tolist() == [
        [0, 0, 0, 1, 2],
        [0, 0, 1, 2, 3],
        [0, 1, 2, 3, 4],
        [1, 2, 3, 4, 5],
        [2, 3, 4, 5, 5],
        [3, 4, 5, 5, 5],
    ]


@pytest.mark.parametrize("feature_shape", [(3, 8), (20,)], ids=["wav2vec2", "mel"])
def test_audio_projection_shapes_and_per_frame(feature_shape):
    torch.manual_seed(0)
    projection = AudioProjection(feature_shape=feature_shape, hidden_dim=16, num_tokens=3, output_dim=12)
    windows = torch.randn(2, 4, 5, *feature_shape)
    tokens = projection(windows)
    assert tokens.shape == (2, 4, 3, 12)

    changed = windows.clone()
    changed[:, 1] += 1.0
    tokens_changed = projection(changed)
    assert not torch.allclose(tokens_changed[:, 1], tokens[:, 1])
    torch.testing.assert_close(tokens_changed[:, [0, 2, 3]], tokens[:, [0, 2, 3]])  # frames are independent


def test_audio_projection_rejects_wrong_window():
    projection = AudioProjection(feature_shape=(20,), hidden_dim=8, num_tokens=2, output_dim=8)
    with pytest.raises(ValueError, match="audio features must be"):
        projection(torch.randn(1, 4, 3, 20))  # window of 3, config says 2 * 2 + 1


def test_speed_bucket_encoding_formula():
    encoder = SpeedEncoder(centers=(0.0, 30.0), radii=(10.0, 20.0), hidden_dim=8, num_tokens=1, embed_dim=4)
    speed = torch.tensor([[0.0, 30.0, 45.0]])
    expected = torch.tensor(
        [[[math.tanh(0.0), math.tanh(-4.5)], [math.tanh(9.0), math.tanh(0.0)], [math.tanh(13.5), math.tanh(2.25)]]]
    )
    torch.testing.assert_close(encoder.bucket_encoding(speed), expected)


def test_speed_encoder_window_of_neighbours():
    torch.manual_seed(0)
    encoder = SpeedEncoder(context_frames=2, hidden_dim=16, num_tokens=2, embed_dim=8)
    speed = torch.full((1, 8), 20.0)
    tokens = encoder(speed)
    assert tokens.shape == (1, 8, 2, 8)
    faster = speed.clone()
    faster[0, 0] = 80.0
    changed = (encoder(faster) - tokens).abs().amax(dim=(0, 2, 3)) > 0
    assert changed.tolist() == [True, True, True, False, False, False, False, False]  # frames 0..2 see frame 0


def test_speed_encoder_validates_buckets():
    with pytest.raises(ValueError):
        SpeedEncoder(centers=(0.0, 10.0), radii=(10.0,))
    with pytest.raises(ValueError):
        SpeedEncoder(centers=(0.0,), radii=(0.0,))


def test_face_locator_zero_at_init_then_mask_dependent():
    torch.manual_seed(0)
    locator = FaceLocator(block_out_channels=(4, 8, 8, 16), latent_channels=4)
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, :, 16:48, 16:48] = 1
    mask[1, :, 0:32, 0:32] = 1
    out = locator(mask)
    assert out.shape == (2, 4, 8, 8)
    assert torch.count_nonzero(out) == 0
    with torch.no_grad():
        locator.conv_out.weight.normal_()
    out = locator(mask)
    assert not torch.allclose(out[0], out[1])


def test_audio_attention_one_zero_output_layer_per_transformer_block():
    unet = UNet2DConditionModel(**get_preset("tiny").unet)
    audio_attention = AudioAttention.from_unet(unet, cross_attention_dim=16)
    blocks = sorted(name.removesuffix(".attn2") for name, _ in unet.named_modules() if name.endswith(".attn2"))
    assert sorted(audio_attention.config.layer_names) == blocks
    for name in blocks:
        layer = audio_attention.layer(name)
        assert layer.query_dim == unet.get_submodule(name).attn2.query_dim
        assert torch.count_nonzero(layer.to_out[0].weight) == 0
        hidden = torch.randn(3, 10, layer.query_dim)
        assert torch.count_nonzero(layer(hidden, encoder_hidden_states=torch.randn(3, 4, 16))) == 0
