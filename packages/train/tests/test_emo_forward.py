"""The composed model: shapes, zero-initialised additions, motion frames, ReferenceNet once per clip."""

from __future__ import annotations

import pytest
import torch

# the shapes of conftest's `inputs`
BATCH, FRAMES, MOTION_FRAMES, LATENT = 2, 3, 4, 8


def test_image_mode_shape(model, inputs):
    reference = model.encode_reference(inputs["reference_latents"])
    noisy = inputs["noisy_latents"][:, :, :1]  # (b, c, 1, h, w)
    out = model.denoise(noisy, inputs["timesteps"], reference, face_mask=inputs["face_mask"], use_temporal=False)
    assert out.shape == noisy.shape


def test_video_mode_shape(model, inputs, predict):
    out = predict(model, inputs)
    assert out.shape == inputs["noisy_latents"].shape == (BATCH, 4, FRAMES, LATENT, LATENT)


def test_scalar_timestep_equals_per_sample_timesteps(model, inputs, predict, perturb):
    perturb(model)
    same = torch.tensor([250, 250])
    torch.testing.assert_close(predict(model, inputs, timesteps=250), predict(model, inputs, timesteps=same))


def test_too_many_frames_for_the_temporal_positions(model, inputs):
    reference = model.encode_reference(inputs["reference_latents"])
    noisy = torch.randn(BATCH, 4, 29, LATENT, LATENT)  # 4 motion + 29 > 32 positions
    with pytest.raises(ValueError, match="positions"):
        model.denoise(noisy, 10, reference)


def test_speed_needs_the_temporal_layers(model, inputs):
    reference = model.encode_reference(inputs["reference_latents"])
    with pytest.raises(ValueError, match="use_temporal"):
        model.denoise(inputs["noisy_latents"], 10, reference, speed=inputs["speed"], use_temporal=False)


def test_new_layers_add_nothing_at_init(model, inputs, predict):
    """Face locator, audio attention, temporal and speed layers are zero-initialised: with every
    condition the fresh model predicts exactly what the plain image path (reference attention only) does."""
    conditioned = predict(model, inputs)
    reference = model.encode_reference(inputs["reference_latents"], inputs["motion_latents"])
    plain = model.denoise(inputs["noisy_latents"], inputs["timesteps"], reference, use_temporal=False)
    assert torch.equal(conditioned, plain)
    assert torch.count_nonzero(model.face_locator(inputs["face_mask"])) == 0


@pytest.mark.parametrize("component", ["face_locator", "audio_attention", "temporal"])
def test_each_new_layer_acts_once_trained(model, inputs, predict, perturb, component):
    before = predict(model, inputs)
    perturb(getattr(model, component))
    assert not torch.allclose(predict(model, inputs), before, atol=1e-4)


def test_speed_attention_zero_until_trained(model, inputs, predict, perturb):
    # trained temporal layers (stage 2) with fresh speed attention: speed changes nothing ...
    perturb(model.temporal)
    with torch.no_grad():
        for name, parameter in model.temporal.named_parameters():
            if ".speed_attn.to_out." in name:
                parameter.zero_()
    slow = predict(model, inputs, speed=torch.zeros(BATCH, FRAMES))
    assert torch.equal(slow, predict(model, inputs, speed=torch.full((BATCH, FRAMES), 80.0)))
    # ... until the speed attention's output projection is trained (stage 3)
    perturb(model.temporal, seed=2)
    slow = predict(model, inputs, speed=torch.zeros(BATCH, FRAMES))
    assert not torch.allclose(slow, predict(model, inputs, speed=torch.full((BATCH, FRAMES), 80.0)), atol=1e-4)


def test_dropped_speed_is_exactly_no_speed(model, inputs, perturb):
    """Stage 3's speed dropout trains the unconditional mode inference uses without --speed: a
    sample whose speed is dropped gets the prediction of a call without speed, the other keeps its speed."""
    perturb(model)
    reference = model.encode_reference(inputs["reference_latents"], inputs["motion_latents"])
    common = dict(audio_features=inputs["audio_features"], face_mask=inputs["face_mask"])
    denoise = lambda **kw: model.denoise(inputs["noisy_latents"], inputs["timesteps"], reference, **common, **kw)  # noqa: E731
    without, with_speed = denoise(), denoise(speed=inputs["speed"])
    mixed = denoise(speed=inputs["speed"], keep_speed=torch.tensor([0.0, 1.0]))
    assert not torch.allclose(without, with_speed, atol=1e-4)
    torch.testing.assert_close(mixed[0], without[0])
    torch.testing.assert_close(mixed[1], with_speed[1])


def test_audio_changes_output_only_once_trained(model, inputs, predict, perturb):
    other_audio = torch.randn_like(inputs["audio_features"])
    assert torch.equal(predict(model, inputs), predict(model, inputs, audio_features=other_audio))
    perturb(model.audio_attention)
    assert not torch.allclose(predict(model, inputs), predict(model, inputs, audio_features=other_audio), atol=1e-4)


def test_motion_frames_reach_output_only_through_trained_temporal_layers(model, inputs, predict, perturb):
    other_motion = torch.randn_like(inputs["motion_latents"])
    assert torch.equal(predict(model, inputs), predict(model, inputs, motion_latents=other_motion))
    perturb(model.temporal)
    assert not torch.allclose(predict(model, inputs), predict(model, inputs, motion_latents=other_motion), atol=1e-4)


def test_first_clip_motion_features_are_zeros(model, inputs):
    reference = model.encode_reference(inputs["reference_latents"], motion_latents=None)
    with_motion = model.encode_reference(inputs["reference_latents"], inputs["motion_latents"])
    assert reference.motion.keys() == with_motion.motion.keys()
    for position, features in reference.motion.items():
        assert features.shape == with_motion.motion[position].shape
        assert features.shape[:2] == (BATCH, MOTION_FRAMES)
        assert torch.count_nonzero(features) == 0
    # the reference image's own features do not depend on the motion frames
    for name, features in reference.attention.items():
        torch.testing.assert_close(features, with_motion.attention[name])


def test_reference_image_drives_the_prediction(model, inputs, predict):
    other_reference = torch.randn_like(inputs["reference_latents"])
    assert not torch.allclose(predict(model, inputs), predict(model, inputs, reference_latents=other_reference))


def test_reference_net_runs_once_per_clip(model, inputs):
    calls = {"reference_net": [], "backbone": 0}
    model.reference_net.register_forward_hook(lambda m, args, out: calls["reference_net"].append(args[0].shape[0]))
    model.backbone.register_forward_hook(lambda m, args, out: calls.__setitem__("backbone", calls["backbone"] + 1))

    latents = inputs["noisy_latents"]
    reference = model.encode_reference(inputs["reference_latents"], inputs["motion_latents"])
    for t in (900, 600, 300, 0):  # a few denoising steps reuse the clip's reference features
        with torch.no_grad():
            latents = latents - 0.1 * model.denoise(latents, t, reference, audio_features=inputs["audio_features"])
    assert calls["backbone"] == 4
    assert calls["reference_net"] == [BATCH * (1 + MOTION_FRAMES)]  # one pass: reference + motion frames together


def test_motion_encoded_apart_equals_one_pass(model, inputs, perturb):
    """Inference encodes the reference once per video and the motion frames once per clip: that
    must give the features of training's single ReferenceNet pass over both."""
    perturb(model.reference_net)
    with torch.no_grad():
        together = model.encode_reference(inputs["reference_latents"], inputs["motion_latents"])
        apart = model.encode_motion(model.encode_reference(inputs["reference_latents"]), inputs["motion_latents"])
    assert together.attention.keys() == apart.attention.keys() and together.motion.keys() == apart.motion.keys()
    for name in together.attention:
        torch.testing.assert_close(apart.attention[name], together.attention[name])
    for position in together.motion:
        assert torch.count_nonzero(apart.motion[position])
        torch.testing.assert_close(apart.motion[position], together.motion[position])
