"""`emo_train.cost`: counts on fake tensors agree with the real computation (tiny preset)."""

from __future__ import annotations

import torch
from emo_train.cost import LiveMemory, generation_cost, random_model, synthetic_batch, training_step_cost
from emo_train.train import TrainingForward, TrainingStep
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode


def test_live_memory_follows_allocations_and_frees():
    with FakeTensorMode(), LiveMemory() as memory:
        a = torch.empty(1000)  # 4000 bytes
        b = a + 1  # 4000 more
        view = b[:10]  # no new storage
        del a
        c = torch.empty(500, dtype=torch.float16)  # 1000 bytes
        assert memory.live == 5000 and memory.peak == 8000
        del b
        assert memory.live == 5000  # the view keeps b's storage
        del view, c
        assert memory.live == 0


def test_fake_step_flops_equal_the_real_steps():
    cost = training_step_cost(2, "tiny", mixed_precision="no")
    torch.manual_seed(0)
    model, vae = random_model("tiny", None)  # outside fake mode: real tensors
    model.set_trainable_stage(2)
    model.train()
    step = TrainingStep(TrainingForward(model), vae, 2, torch.device("cpu"))
    counter = FlopCounterMode(display=False)
    with counter:
        step.loss(synthetic_batch(model, 2, 1, 64, 12, 4), torch.Generator().manual_seed(0)).backward()
    assert counter.get_total_flops() == cost.hardware_flops == cost.flops
    assert sum(cost.flops_by_part.values()) == cost.flops and cost.flops_by_part["vae_encode"] > 0


def test_memory_parts_and_checkpointing():
    plain = training_step_cost(2, "tiny", mixed_precision="bf16")
    checkpointed = training_step_cost(2, "tiny", mixed_precision="bf16", gradient_checkpointing=True)
    trainable = plain.trainable_parameters
    assert plain.bytes["gradients"] == 4 * trainable  # float32 gradients of every trainable weight
    assert 8 * trainable <= plain.bytes["optimizer"] < 8 * trainable + 4096  # AdamW moments + step counters
    assert plain.bytes["weights"] >= 4 * plain.parameters
    assert checkpointed.bytes["activations"] < plain.bytes["activations"] / 3
    assert checkpointed.bytes["peak"] < plain.bytes["peak"]
    assert checkpointed.flops == plain.flops < checkpointed.hardware_flops  # recomputation is not model FLOPs


def test_generation_flops_scale_with_steps_and_guidance():
    guided = generation_cost("tiny", steps=2, guidance=3.5)
    plain = generation_cost("tiny", steps=2, guidance=1.0)
    longer = generation_cost("tiny", steps=4, guidance=1.0)
    assert guided["denoise"] == 2 * plain["denoise"] and longer["denoise"] == 2 * plain["denoise"]
    assert guided["vae_decode"] == plain["vae_decode"] > 0
    parts = ("denoise", "vae_decode", "vae_encode", "reference_net")
    assert guided["per_frame"] == sum(guided[part] for part in parts)
