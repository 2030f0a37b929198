"""What a training step and a generated frame cost at full size, counted without a GPU and
without allocating weights: the trainer's and the pipeline's own code runs on fake tensors
(shapes, dtypes and devices only), under torch's FLOP counter and a live-tensor memory tracker.

    cost = training_step_cost(stage=2, preset="sd15", mixed_precision="bf16", gradient_checkpointing=True)
    cost.flops, cost.bytes["peak"]

FLOPs are those of matrix multiplications, convolutions and attention (`torch.utils.flop_counter`:
2 per multiply-add; elementwise work is not counted), forward and backward, the VAE encoding
included; `flops` leaves out gradient checkpointing's recomputation (model FLOPs, what MFU
divides by), `hardware_flops` includes it. Memory is what the tensors alive at each moment
occupy: exact for weights, gradients and AdamW's state; activations follow the CPU autocast
policy (bf16 for matrix multiplications and convolutions, as CUDA's) and CPU attention kernels
(which keep the same output + log-sum-exp as CUDA's flash attention). Not modelled: the CUDA
caching allocator's slack, cuBLAS/cuDNN workspaces, NCCL buffers.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from dataclasses import dataclass, field

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

# runwayml/stable-diffusion-v1-5 vae/config.json (the architecture; weights come from --base-model)
SD15_VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)

# FLOPs reported apart: FlopCounterMode's module names (top-level modules by class, the rest by
# attribute path) as the trainer calls them
_PARTS = {
    "vae_encode": ("Encoder", "Conv2d"),  # AutoencoderKL.encode: encoder, then quant_conv
    "reference_net": ("TrainingForward.model.reference_net",),
    "backbone": ("TrainingForward.model.backbone",),  # with the EMO layers it calls (attention, temporal)
}


class LiveMemory(TorchDispatchMode):
    """Bytes of the tensor storages alive, and their peak, while it is active (plus those given
    to `track` before). A storage counts from the op that creates it until the last tensor using
    it is freed. Meant for fake tensors, whose Python objects live exactly as long as the tensor."""

    def __init__(self):
        super().__init__()
        self._storages: dict[int, list[int]] = {}  # storage -> [bytes, tensors using it]
        self._tensors: set[int] = set()
        self.live = self.peak = 0

    def track(self, tensor) -> None:
        if not isinstance(tensor, torch.Tensor) or id(tensor) in self._tensors:
            return
        self._tensors.add(id(tensor))
        storage = tensor.untyped_storage()
        entry = self._storages.get(storage._cdata)
        if entry is None:
            entry = self._storages[storage._cdata] = [storage.nbytes(), 0]
            self.live += entry[0]
            self.peak = max(self.peak, self.live)
        entry[1] += 1
        weakref.finalize(tensor, self._release, storage._cdata, id(tensor))

    def _release(self, key: int, tensor_id: int) -> None:
        self._tensors.discard(tensor_id)
        entry = self._storages[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self._storages[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            self.track(tensor)
        return out


@dataclass
class StepCost:
    """One optimizer step of one stage (batch `batch`, `frames` + `motion_frames` frames at `size` px)."""

    stage: int
    flops: int  # VAE encoding + forward + backward, without checkpointing's recomputation
    hardware_flops: int  # what actually runs: with recomputation when checkpointing
    flops_by_part: dict[str, int]  # forward: vae_encode, reference_net, backbone (with the EMO layers), other; backward
    parameters: int  # all weights (model + VAE)
    trainable_parameters: int
    bytes: dict[str, int] = field(default_factory=dict)  # weights, gradients, optimizer, activations, peak


def random_model(preset: str, audio_feature_shape: tuple[int, ...] | None = None):
    """A randomly initialised EMOModel of `preset` and its VAE (the preset's own, else SD1.5's architecture)."""
    from diffusers import AutoencoderKL

    from .models import EMOModel, get_preset
    from .train import preset_vae

    config = get_preset(preset, audio_feature_shape=audio_feature_shape)
    model = EMOModel.from_preset(config)
    vae = preset_vae(preset) if config.vae is not None else AutoencoderKL(**SD15_VAE_CONFIG)
    return model, vae.requires_grad_(False).eval()


def synthetic_batch(model, stage: int, batch: int, size: int, frames: int, motion_frames: int) -> dict:
    """A micro-batch as the data loader hands it out (uint8 frames, audio windows, flags)."""
    f = 1 if stage == 1 else frames
    pixels = lambda k: torch.randint(0, 256, (batch, 3, k, size, size), dtype=torch.uint8)  # noqa: E731
    out = {
        "key": [f"clip{i}" for i in range(batch)],
        "video": pixels(f),
        "reference": pixels(1)[:, :, 0],
        "mask": torch.ones(batch, 1, size, size),
        "frame_indices": torch.arange(f).repeat(batch, 1),
        "reference_index": torch.zeros(batch, dtype=torch.int64),
    }
    if stage >= 2:
        projection = model.audio_projection.config
        window = 2 * projection.context_frames + 1
        out.update({
            "motion": pixels(motion_frames),
            "motion_indices": torch.arange(motion_frames).repeat(batch, 1),
            "audio": torch.randn(batch, f, window, *projection.feature_shape),
            "speed": torch.rand(batch, f) * 30,
            **{flag: torch.zeros(batch, dtype=torch.bool) for flag in ("drop_audio", "drop_motion", "drop_speed")},
        })
    return out


def _by_part(counter: FlopCounterMode) -> dict[str, int]:
    counts = counter.get_flop_counts()
    return {part: int(sum(sum(counts.get(name, {}).values()) for name in names)) for part, names in _PARTS.items()}


def training_step_cost(
    stage: int,
    preset: str = "sd15",
    size: int | None = None,
    frames: int = 12,
    motion_frames: int = 4,
    batch: int = 1,
    mixed_precision: str = "bf16",
    gradient_checkpointing: bool = False,
    audio_feature_shape: tuple[int, ...] | None = None,
) -> StepCost:
    """FLOPs and memory of one optimizer step of `stage`, running `emo_train.train.TrainingStep`
    (VAE encoding, ReferenceNet, backbone with the EMO layers, MSE loss), backward and AdamW."""
    size = size or (64 if preset == "tiny" else 512)
    shape = tuple(audio_feature_shape) if audio_feature_shape is not None else None
    return _step_cost(stage, preset, size, frames, motion_frames, batch, mixed_precision, gradient_checkpointing, shape)


@functools.lru_cache(maxsize=None)  # a checkpointed step's model FLOPs come from the plain step's count
def _step_cost(
    stage: int,
    preset: str,
    size: int,
    frames: int,
    motion_frames: int,
    batch: int,
    mixed_precision: str,
    gradient_checkpointing: bool,
    audio_feature_shape: tuple[int, ...] | None,
) -> StepCost:
    from .config import OptimOptions
    from .train import TrainingForward, TrainingStep, make_optimizer

    dtype = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mixed_precision]

    def one_step(count_flops: bool):
        """One step on fake tensors: FLOPs (forward and backward counters) or memory, not both at
        once: the FLOP counter's module tracking keeps tensors alive until backward ends."""
        with FakeTensorMode(allow_non_fake_inputs=True):
            model, vae = random_model(preset, audio_feature_shape)
            trainable = model.set_trainable_stage(stage)
            model.train()
            if gradient_checkpointing:
                model.enable_gradient_checkpointing()
            step = TrainingStep(TrainingForward(model), vae, stage, torch.device("cpu"), dtype)
            optimizer = make_optimizer(trainable, OptimOptions(), torch.device("cpu"))
            data = synthetic_batch(model, stage, batch, size, frames, motion_frames)
            generator = torch.Generator().manual_seed(0)
            memory = LiveMemory()
            for tensor in (*model.parameters(), *model.buffers(), *vae.parameters(), *vae.buffers()):
                memory.track(tensor)
            weights = memory.live
            counters = [FlopCounterMode(display=False) if count_flops else contextlib.nullcontext() for _ in range(2)]
            with contextlib.nullcontext() if count_flops else memory:
                with counters[0]:
                    loss = step.loss(data, generator)
                activations = memory.live - weights
                with counters[1]:
                    loss.backward()
                del loss
                optimizer.step()
            sizes = {
                "weights": weights,
                "gradients": sum(p.grad.numel() * p.grad.element_size() for p in trainable if p.grad is not None),
                "optimizer": sum(value.numel() * value.element_size() for state in optimizer.state.values()
                                 for value in state.values() if isinstance(value, torch.Tensor)),
                "activations": activations,
                "peak": memory.peak,
            }
            counts = {"parameters": sum(p.numel() for p in (*model.parameters(), *vae.parameters())),
                      "trainable": sum(p.numel() for p in trainable)}
        return counters, sizes, counts

    (forward_counter, backward_counter), _, counts = one_step(count_flops=True)
    _, sizes, _ = one_step(count_flops=False)
    forward, backward = forward_counter.get_total_flops(), backward_counter.get_total_flops()
    parts = _by_part(forward_counter)
    parts["backward"] = backward
    parts["other"] = forward - sum(parts[p] for p in _PARTS)
    hardware = forward + backward
    if gradient_checkpointing:  # model FLOPs: what the same step costs without recomputation
        plain = _step_cost(stage, preset, size, frames, motion_frames, batch, mixed_precision, False, audio_feature_shape)
        model_flops = plain.flops
    else:
        model_flops = hardware
    return StepCost(
        stage=stage,
        flops=model_flops,
        hardware_flops=hardware,
        flops_by_part=parts,
        parameters=counts["parameters"],
        trainable_parameters=counts["trainable"],
        bytes=sizes,
    )


def generation_cost(
    preset: str = "sd15",
    size: int | None = None,
    steps: int = 40,
    guidance: float = 3.5,
    frames_per_clip: int = 12,
    motion_frames: int = 4,
    audio_feature_shape: tuple[int, ...] | None = None,
) -> dict[str, float]:
    """FLOPs per generated frame, by part, of `emo_infer`'s clip loop as it runs after the first
    clip: VAE encoding of the motion frames, ReferenceNet on them, `steps` DDIM steps (one batch
    [no audio, audio] each with guidance), VAE decoding. `per_video` is the once-per-video part
    (the reference through VAE and ReferenceNet)."""
    from diffusers import DDIMScheduler

    from .train import sd15_noise_scheduler

    size = size or (64 if preset == "tiny" else 512)
    f, n, h = frames_per_clip, motion_frames, size // 8
    use_guidance = guidance != 1.0
    counters = {part: FlopCounterMode(display=False) for part in ("vae_encode", "reference_net", "denoise", "vae_decode", "per_video")}
    # real timesteps (the scheduler indexes its tables with them), fake everything else
    scheduler = DDIMScheduler.from_config(sd15_noise_scheduler().config, set_alpha_to_one=False, steps_offset=1)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps.tolist()
    with FakeTensorMode(allow_non_fake_inputs=True), torch.inference_mode():
        model, vae = random_model(preset, audio_feature_shape)
        model.eval()
        projection = model.audio_projection.config
        with counters["per_video"]:
            reference = model.encode_reference(vae.encode(torch.randn(1, 3, size, size)).latent_dist.mode())
        with counters["vae_encode"]:
            motion = vae.encode(torch.randn(n, 3, size, size)).latent_dist.mode().transpose(0, 1)[None]
        with counters["reference_net"]:
            features = model.encode_motion(reference, motion)
        batch = 2 if use_guidance else 1
        features = type(features)(
            {k: v.repeat(batch, 1, 1) for k, v in features.attention.items()},
            {k: v.repeat(batch, 1, 1, 1, 1) for k, v in features.motion.items()},
        )
        audio = torch.randn(batch, f, 2 * projection.context_frames + 1, *projection.feature_shape)
        mask, speed = torch.ones(batch, 1, size, size), torch.full((batch, f), 15.0)
        latents = torch.randn(1, 4, f, h, h)
        with counters["denoise"]:
            for t in timesteps:
                prediction = model.denoise(torch.cat([latents] * batch), t, features, audio, mask, speed)
                latents = scheduler.step(prediction[:1], t, latents).prev_sample
        with counters["vae_decode"]:
            vae.decode(latents[0].transpose(0, 1))
    per_clip = {part: counter.get_total_flops() for part, counter in counters.items() if part != "per_video"}
    return {
        **{part: flops / f for part, flops in per_clip.items()},
        "per_frame": sum(per_clip.values()) / f,
        "per_video": counters["per_video"].get_total_flops(),
    }
