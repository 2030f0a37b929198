"""Parameter groups and stages, gradients, gradient checkpointing, EMA-style copies."""

from __future__ import annotations

import copy

import pytest
import torch
from emo_train.models import STAGE_GROUPS


def test_parameter_groups_partition_the_used_parameters(model):
    groups = model.parameter_groups()
    assert set(groups) == {"backbone", "reference_net", "face_locator", "audio_attention", "temporal", "speed"}
    ids = [id(p) for group in groups.values() for p in group]
    assert len(ids) == len(set(ids))  # disjoint
    left_out = {name for name, p in model.named_parameters() if id(p) not in set(ids)}
    # only SD1.5's text cross-attention and the ReferenceNet's discarded output head
    assert left_out and all(
        ".attn2." in name or name.startswith(("reference_net.conv_norm_out.", "reference_net.conv_out."))
        for name in left_out
    )
    speed_names = {name for name, p in model.named_parameters() if id(p) in {id(q) for q in groups["speed"]}}
    assert any(name.startswith("speed_encoder.") for name in speed_names)
    assert any(".speed_attn." in name for name in speed_names)


@pytest.mark.parametrize("stage", sorted(STAGE_GROUPS))
def test_set_trainable_stage(model, stage):
    trainable = model.set_trainable_stage(stage)
    groups = model.parameter_groups()
    expected = {id(p) for group in STAGE_GROUPS[stage] for p in groups[group]}
    assert {id(p) for p in trainable} == expected
    assert {id(p) for p in model.parameters() if p.requires_grad} == expected


def test_stage1_image_gradients(model, inputs):
    model.set_trainable_stage(1)
    reference = model.encode_reference(inputs["reference_latents"])
    noisy = inputs["noisy_latents"][:, :, :1]
    prediction = model.denoise(noisy, inputs["timesteps"], reference, face_mask=inputs["face_mask"], use_temporal=False)
    prediction.square().mean().backward()
    assert model.backbone.conv_in.weight.grad.abs().sum() > 0
    assert model.face_locator.conv_out.weight.grad.abs().sum() > 0  # zero-init output still learns
    reference_attn1 = model.reference_net.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    assert reference_attn1.to_q.weight.grad.abs().sum() > 0  # reference attention trains the ReferenceNet


def test_stage2_video_gradients(model, inputs, predict):
    model.set_trainable_stage(2)
    predict(model, inputs, speed=None).square().mean().backward()
    temporal_out = model.temporal.down_blocks[0].motion_modules[0].proj_out.weight
    assert temporal_out.grad.abs().sum() > 0
    audio_out = next(iter(model.audio_attention.layers.values())).to_out[0].weight
    assert audio_out.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.parameters())


def test_gradient_checkpointing_gives_the_same_gradients(model, inputs, predict, perturb):
    perturb(model)

    def gradients():
        model.zero_grad(set_to_none=True)
        predict(model, inputs).square().mean().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    model.enable_gradient_checkpointing()
    model.train()
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys()
    assert any(name.startswith("temporal.") for name in plain)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


def saved_for_backward(model, inputs, predict) -> dict[str, int]:
    """Bytes autograd keeps for backward during a stage-2 forward, split into what the temporal
    layers keep and the rest. Tensors saved inside a (non-reentrant) checkpoint are held by the
    checkpoint's own saved-tensor hooks, not the outer ones, so they are not counted: they are
    recomputed in backward."""
    temporal_layers = [m for m in model.temporal.modules() if type(m).__name__ == "TemporalTransformer"]
    running = []
    handles = [layer.register_forward_pre_hook(lambda m, a: running.append(m)) for layer in temporal_layers]
    handles += [layer.register_forward_hook(lambda m, a, o: running.pop() and None) for layer in temporal_layers]
    saved = {"temporal": 0, "rest": 0}

    def pack(tensor):
        saved["temporal" if running else "rest"] += tensor.numel() * tensor.element_size()
        return tensor

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            prediction = predict(model, inputs, speed=None)
    finally:
        for handle in handles:
            handle.remove()
    prediction.square().mean().backward()  # the graph is complete and usable
    return saved


def test_gradient_checkpointing_covers_every_temporal_layer(model, inputs, predict):
    """Stage 2 trains the temporal layers: with checkpointing none of them may keep activations
    (16 of SD1.5's 21 sit after transformer layers, which diffusers checkpoints block by block)."""
    model.set_trainable_stage(2)
    model.train()
    plain = saved_for_backward(model, inputs, predict)
    assert plain["temporal"] > 0 and plain["rest"] > 0
    model.enable_gradient_checkpointing()
    checkpointed = saved_for_backward(model, inputs, predict)
    assert checkpointed["temporal"] == 0
    assert checkpointed["rest"] < plain["rest"] / 2


def test_deepcopy_is_independent(model, inputs, predict, perturb):
    """EMA copies: the copy's hooks and processors must use the copy's layers."""
    perturb(model)
    ema = copy.deepcopy(model)
    expected = predict(model, inputs)
    torch.testing.assert_close(predict(ema, inputs), expected)
    perturb(ema.temporal, seed=5)
    perturb(ema.audio_attention, seed=6)
    assert torch.equal(predict(model, inputs), expected)
    assert not torch.allclose(predict(ema, inputs), expected, atol=1e-4)
