"""The trainer's fast paths on the tiny preset (CPU): mixed precision reaches the VAE, fused AdamW
on CUDA, channels-last convolutions, compiled blocks, the latent cache, and scaled-dot-product
attention in every attention layer."""

from __future__ import annotations

import json
from collections import Counter

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from emo_train.checkpoint import last_checkpoint
from emo_train.config import OptimOptions
from emo_train.models import EMOModel
from emo_train.models.attention_processors import AudioAttnProcessor, ReferenceAttnProcessor, SkipCrossAttnProcessor
from emo_train.train import Trainer, make_optimizer, preset_vae, train
from torch.utils._python_dispatch import TorchDispatchMode


def losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_mixed_precision_reaches_the_vae_and_the_model(train_shards, tmp_path, train_config):
    trainer = Trainer(train_config(train_shards, tmp_path / "run", stage=2, max_steps=1, mixed_precision="bf16"))
    dtypes = {}
    for name, module in (("vae", trainer.vae.encoder.conv_in), ("backbone", trainer.model.backbone.conv_in),
                         ("temporal", trainer.model.temporal.down_blocks[0].motion_modules[0].proj_in)):
        module.register_forward_hook(lambda m, args, out, name=name: dtypes.setdefault(name, out.dtype) and None)
    loss = trainer.loss(next(iter(trainer.loader)))
    loss.backward()
    assert dtypes == {"vae": torch.bfloat16, "backbone": torch.bfloat16, "temporal": torch.bfloat16}
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in trainer.trainable)  # float32 master weights


def test_fused_adamw_on_cuda():
    parameters = [torch.nn.Parameter(torch.zeros(3))]
    assert make_optimizer(parameters, OptimOptions(), torch.device("cuda")).defaults["fused"] is True
    assert not make_optimizer(parameters, OptimOptions(), torch.device("cpu")).defaults["fused"]


def test_channels_last_same_loss_checkpoints_and_resume(train_shards, tmp_path, train_config):
    plain = Trainer(train_config(train_shards, tmp_path / "plain", max_steps=1))
    fast = Trainer(train_config(train_shards, tmp_path / "fast", max_steps=2, save_every=1, channels_last=True))
    conv = fast.model.backbone.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert fast.vae.encoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    batch = next(iter(plain.loader))
    expected = plain.loss(batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(fast.loss(batch, torch.Generator().manual_seed(0)), expected, rtol=1e-4, atol=1e-6)
    fast.fit()  # checkpoints hold ordinary contiguous tensors
    assert torch.equal(EMOModel.from_pretrained(last_checkpoint(tmp_path / "fast")).backbone.conv_in.weight, conv)
    resumed = Trainer(train_config(train_shards, tmp_path / "fast", max_steps=3, resume=True, channels_last=True))
    weight = resumed.model.backbone.conv_in.weight
    assert resumed.optimizer.state[weight]["exp_avg"].stride() == weight.stride()


def test_compiled_blocks_match_eager(model, inputs, predict, perturb):
    perturb(model)
    model.train()
    model.set_trainable_stage(2)
    model.enable_gradient_checkpointing()
    expected = predict(model, inputs)
    expected.square().mean().backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    torch._dynamo.reset()
    model.compile_blocks(backend="aot_eager")  # dynamo's tracing without code generation (fast on CPU)
    compiled = Counter(type(m).__name__ for m in model.modules() if getattr(m, "_compiled_call_impl", None))
    assert set(compiled) == {"ResnetBlock2D", "FeedForward", "TemporalTransformer"}
    prediction = predict(model, inputs)
    prediction.square().mean().backward()
    torch.testing.assert_close(prediction, expected)
    for name, gradient in gradients.items():
        torch.testing.assert_close(model.get_parameter(name).grad, gradient, msg=name)
    assert not torch._dynamo.utils.counters["graph_break"]


def test_compile_option_compiles_the_blocks(train_shards, tmp_path, train_config):
    trainer = Trainer(train_config(train_shards, tmp_path / "run", max_steps=1, compile=True))
    assert any(getattr(m, "_compiled_call_impl", None) for m in trainer.model.temporal.modules())


def test_latent_cache_encodes_each_frame_once(train_shards, tmp_path, train_config):
    """Stage 2, two steps: a cold cache encodes what an uncached run encodes and stores it; a
    warm one encodes nothing and gives the cold run's losses exactly (both through float16)."""
    cache = tmp_path / "cache"

    def run(name, latent_cache):
        trainer = Trainer(train_config(train_shards, tmp_path / name, stage=2, max_steps=2, latent_cache=latent_cache))
        encoded = []
        trainer.vae.encoder.register_forward_hook(lambda m, args, out: encoded.append(args[0].shape[0]) and None)
        trainer.fit()
        return sum(encoded), losses(tmp_path / name)

    plain_frames, plain = run("plain", None)
    cold_frames, cold = run("cold", str(cache))
    warm_frames, warm = run("warm", str(cache))
    assert plain_frames == cold_frames == 2 * 17 and warm_frames == 0
    assert len(list(cache.rglob("*.safetensors"))) == 2 * 17
    assert warm == cold
    torch.testing.assert_close(torch.tensor(cold), torch.tensor(plain), rtol=1e-2, atol=0)


class AtenOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def test_every_attention_is_scaled_dot_product_attention(model, inputs, predict):
    """Reference attention (keys twice as long), audio attention, temporal and speed attention,
    the VAE's attention: each is one fused SDPA call, never softmax over materialised scores."""
    vae = preset_vae("tiny")
    attentions = [m for m in (*model.modules(), *vae.modules()) if isinstance(m, Attention)]
    allowed = (AttnProcessor2_0, ReferenceAttnProcessor, AudioAttnProcessor, SkipCrossAttnProcessor)
    assert attentions and all(isinstance(a.processor, allowed) for a in attentions)
    with torch.no_grad(), AtenOps() as ops:
        predict(model, inputs)
        vae.decode(vae.encode(torch.rand(1, 3, 64, 64) * 2 - 1).latent_dist.mode())
    fused = sum(n for op, n in ops.counts.items() if "scaled_dot_product" in op)
    assert fused > 0
    assert not {op for op in ops.counts if op in ("aten._softmax", "aten.softmax", "aten.baddbmm", "aten.bmm")}
