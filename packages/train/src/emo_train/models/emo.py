"""EMOModel: the components wired together, with the API the trainer and the inference use.

    ref / motion latents --ReferenceNet (once per clip)--> ReferenceFeatures
    noisy latents (b, c, f, h, w) + FaceLocator(mask) --backbone (frames in the batch)--> noise prediction
        attn1: reference attention   attn2: audio attention   after each spatial layer: temporal layer

Components (each a diffusers ModelMixin, saved to `<directory>/<component>/`): backbone
(`UNet2DConditionModel`), reference_net, face_locator, audio_projection, audio_attention,
temporal, speed_encoder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.utils.checkpoint
from diffusers import ModelMixin, MotionAdapter, UNet2DConditionModel
from diffusers.models.attention import FeedForward
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from .attention_processors import AudioAttnProcessor, ReferenceAttnProcessor
from .audio_attention import AudioAttention
from .audio_projection import AudioProjection
from .face_locator import FaceLocator
from .presets import EMOPreset, get_preset
from .reference_net import ReferenceFeatures, ReferenceNet
from .speed_encoder import SpeedEncoder
from .temporal import TemporalLayers, TemporalTransformer, load_motion_adapter, temporal_positions

logger = logging.getLogger(__name__)

COMPONENTS: dict[str, type[ModelMixin]] = {
    "backbone": UNet2DConditionModel,
    "reference_net": ReferenceNet,
    "face_locator": FaceLocator,
    "audio_projection": AudioProjection,
    "audio_attention": AudioAttention,
    "temporal": TemporalLayers,
    "speed_encoder": SpeedEncoder,
}

# Parameter groups trained in each stage (EMO section 3.3); everything else is frozen.
STAGE_GROUPS: dict[int, tuple[str, ...]] = {
    1: ("backbone", "reference_net", "face_locator"),  # images: reference frame + target frame
    2: ("temporal", "audio_attention"),  # video: 4 motion + 12 target frames
    3: ("temporal", "speed"),  # audio attention frozen on purpose (speed would take over the motion)
}


def use_channels_last(module: nn.Module) -> nn.Module:
    """Put `module`'s 4-d weights in channels-last memory format (faster convolutions on tensor
    cores); its state dict (what `save_pretrained` writes) stays in the ordinary contiguous layout."""

    def contiguous_state(module, state_dict, prefix, local_metadata) -> None:
        for key in [key for key in state_dict if key.startswith(prefix)]:
            state_dict[key] = state_dict[key].contiguous()

    module.to(memory_format=torch.channels_last)
    module.register_state_dict_post_hook(contiguous_state)
    return module


def _as_list(value):
    """Config values come back from JSON as lists; presets use tuples."""
    return list(value) if isinstance(value, (list, tuple)) else value


@dataclass
class _FrameContext:
    """Per-call inputs of the temporal layers (which sit behind forward hooks, not attention processors)."""

    num_frames: int
    motion: dict[str, torch.Tensor]  # UNet position -> (b, n, c, h, w)
    speed_tokens: torch.Tensor | None  # (b*f, tokens, dim)
    speed_keep: torch.Tensor | None  # (b*f, 1, 1): 0 where a sample's speed is dropped


class _TemporalHook:
    """Forward hook on a backbone spatial layer: passes its output through the temporal layer.

    With gradient checkpointing the temporal layer recomputes its activations in backward. Hooks
    on resnets run inside diffusers' own checkpoint of that resnet (down/up blocks without
    attention); hooks on transformer layers run after diffusers' checkpointed blocks, so they
    checkpoint the temporal layer themselves.

    A callable object (not a closure) so that `copy.deepcopy(model)` (EMA copies) rebinds it to the copy.
    """

    def __init__(self, model: "EMOModel", position: str, layer: TemporalTransformer, inside_diffusers_checkpoint: bool):
        self.model, self.position, self.layer = model, position, layer
        self.inside_diffusers_checkpoint = inside_diffusers_checkpoint

    def __call__(self, module, args, output):
        context = self.model._frame_context
        if context is None:
            return None  # keep the spatial layer's output
        hidden_states = output[0] if isinstance(output, tuple) else output  # (b*f, c, h, w)
        inputs = (hidden_states, context.num_frames, context.motion[self.position], context.speed_tokens, context.speed_keep)
        if self.model.gradient_checkpointing and not self.inside_diffusers_checkpoint and torch.is_grad_enabled():
            hidden_states = torch.utils.checkpoint.checkpoint(self.layer, *inputs, use_reentrant=False)
        else:
            hidden_states = self.layer(*inputs)
        return (hidden_states, *output[1:]) if isinstance(output, tuple) else hidden_states


class EMOModel(nn.Module):
    """All EMO components, wired into the backbone with attention processors and forward hooks.

    The backbone stays a stock `UNet2DConditionModel` (its folder loads anywhere); EMO's layers
    live in their own components and are attached here, once: to swap a component, build a new
    `EMOModel` from the components rather than assigning an attribute.
    """

    def __init__(
        self,
        backbone: UNet2DConditionModel,
        reference_net: ReferenceNet,
        face_locator: FaceLocator,
        audio_projection: AudioProjection,
        audio_attention: AudioAttention,
        temporal: TemporalLayers,
        speed_encoder: SpeedEncoder,
    ):
        super().__init__()
        self.backbone = backbone
        self.reference_net = reference_net
        self.face_locator = face_locator
        self.audio_projection = audio_projection
        self.audio_attention = audio_attention
        self.temporal = temporal
        self.speed_encoder = speed_encoder
        self._check_compatible()
        # Set by `denoise` and deliberately kept afterwards: with gradient checkpointing the
        # backbone's layers (and so the temporal hooks) run again during backward.
        self._frame_context: _FrameContext | None = None
        self.gradient_checkpointing = False  # see enable_gradient_checkpointing

        processors = {}
        for name in backbone.attn_processors:
            layer = name.removesuffix(".processor")  # ...transformer_blocks.0.attn1
            if layer.endswith(".attn1"):
                processors[name] = ReferenceAttnProcessor(layer)
            else:
                processors[name] = AudioAttnProcessor(audio_attention.layer(layer.removesuffix(".attn2")))
        backbone.set_attn_processor(processors)

        for position, temporal_path in temporal_positions(backbone).items():
            if temporal_path.startswith("mid_block.") and temporal.mid_block is None:
                continue  # AnimateDiff v1 layout: no temporal layer in the mid block
            layer = temporal.get_submodule(temporal_path)
            spatial = backbone.get_submodule(position)
            hook = _TemporalHook(self, position, layer, inside_diffusers_checkpoint=isinstance(spatial, ResnetBlock2D))
            spatial.register_forward_hook(hook)

    def _check_compatible(self) -> None:
        unet = self.backbone.config
        problems = []
        # reference attention pairs layers by name and needs equal widths: same block structure
        for key in ("block_out_channels", "layers_per_block", "down_block_types", "up_block_types"):
            if _as_list(self.reference_net.config[key]) != _as_list(unet[key]):
                problems.append(f"reference_net and backbone have different {key}")
        for key in ("block_out_channels", "layers_per_block"):
            if _as_list(self.temporal.config[key]) != _as_list(unet[key]):
                problems.append(f"temporal and backbone have different {key}")
        blocks = [name for name, _ in self.backbone.named_modules() if name.endswith(".attn2")]
        expected = sorted(name.removesuffix(".attn2") for name in blocks)
        if sorted(self.audio_attention.config.layer_names) != expected:
            problems.append("audio_attention layers do not match the backbone's transformer blocks")
        if self.audio_attention.config.cross_attention_dim != self.audio_projection.config.output_dim:
            problems.append("audio_projection output_dim differs from audio_attention cross_attention_dim")
        if self.speed_encoder.config.embed_dim != self.temporal.config.speed_embed_dim:
            problems.append("speed_encoder embed_dim differs from temporal speed_embed_dim")
        if self.face_locator.config.latent_channels != unet.in_channels:
            problems.append("face_locator latent_channels differs from the backbone's in_channels")
        if problems:
            raise ValueError("incompatible EMO components: " + "; ".join(problems))

    # ----------------------------------------------------------------------------- construction

    @classmethod
    def from_preset(cls, preset: str | EMOPreset = "tiny") -> "EMOModel":
        """Randomly initialised model (new EMO layers zero-initialised) of a preset.

        The ReferenceNet starts with the backbone's weights, as both start from SD1.5 in the
        paper: the reference features then live where the backbone's own features do, so the
        reference attention can match them from the first step."""
        preset = get_preset(preset) if isinstance(preset, str) else preset
        backbone = UNet2DConditionModel(**preset.unet)
        reference_net = ReferenceNet(**preset.unet)
        reference_net.load_state_dict(backbone.state_dict())
        return cls._assemble(backbone, reference_net, preset)

    @classmethod
    def _assemble(cls, backbone: UNet2DConditionModel, reference_net: ReferenceNet, preset: EMOPreset) -> "EMOModel":
        audio_projection = AudioProjection(**preset.audio_projection)
        return cls(
            backbone=backbone,
            reference_net=reference_net,
            face_locator=FaceLocator(**preset.face_locator),
            audio_projection=audio_projection,
            audio_attention=AudioAttention.from_unet(backbone, audio_projection.config.output_dim),
            temporal=TemporalLayers(**preset.temporal),
            speed_encoder=SpeedEncoder(**preset.speed_encoder),
        )

    @classmethod
    def from_pretrained_base(
        cls,
        base_model: str | Path,
        motion_adapter: str | Path | None = None,
        preset: str | EMOPreset = "sd15",
        **from_pretrained_kwargs,
    ) -> tuple["EMOModel", list[str]]:
        """Initialise from pretrained weights, before stage 1.

        Backbone and ReferenceNet both load `base_model`'s `unet/` (a diffusers SD1.5 folder or hub
        id); the temporal layers load an AnimateDiff `MotionAdapter` (folder or hub id) when given.
        The other components follow `preset` and start as initialised (zero outputs). Returns the
        model and the parameter names (`component.key`) that no pretrained weight initialised.
        """
        preset = get_preset(preset) if isinstance(preset, str) else preset
        backbone = UNet2DConditionModel.from_pretrained(base_model, subfolder="unet", **from_pretrained_kwargs)
        for key in ("in_channels", "block_out_channels", "layers_per_block"):
            if _as_list(backbone.config[key]) != _as_list(preset.unet[key]):
                raise ValueError(
                    f"{base_model}: unet {key} is {backbone.config[key]}, preset expects {preset.unet[key]}"
                )
        reference_net = ReferenceNet.from_pretrained(base_model, subfolder="unet", **from_pretrained_kwargs)
        model = cls._assemble(backbone, reference_net, preset)

        uninitialised = [
            f"{component}.{key}"
            for component in ("face_locator", "audio_projection", "audio_attention", "speed_encoder")
            for key in getattr(model, component).state_dict()
        ]
        if motion_adapter is None:
            temporal_missing = list(model.temporal.state_dict())
        else:
            adapter = MotionAdapter.from_pretrained(motion_adapter, **from_pretrained_kwargs)
            temporal_missing = load_motion_adapter(model.temporal, adapter)
        uninitialised += [f"temporal.{key}" for key in temporal_missing]
        counts = {}
        for name in uninitialised:
            component = name.split(".", 1)[0]
            counts[component] = counts.get(component, 0) + 1
        logger.info("tensors not initialised from pretrained weights: %s", counts)
        return model.to(backbone.device, backbone.dtype), uninitialised

    def save_pretrained(self, directory: str | Path, **kwargs) -> None:
        """Each component to `directory/<component>/` (diffusers folders, safetensors)."""
        for name in COMPONENTS:
            getattr(self, name).save_pretrained(Path(directory) / name, **kwargs)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs) -> "EMOModel":
        """Load a model written by `save_pretrained` (e.g. a trainer checkpoint `checkpoints/<step>/`)."""
        components = {name: cls_.from_pretrained(Path(directory) / name, **kwargs) for name, cls_ in COMPONENTS.items()}
        return cls(**components)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations in backward instead of keeping them: the backbone's and the
        ReferenceNet's blocks (diffusers' checkpointing) and every temporal layer (ours)."""
        self.backbone.enable_gradient_checkpointing()
        self.reference_net.enable_gradient_checkpointing()
        self.gradient_checkpointing = True

    def compile_blocks(self, **compile_options) -> None:
        """`torch.compile` the blocks that repeat, each on its own (regional compilation: blocks of
        one code share compiled graphs, shapes turn dynamic after the first recompile): resnets
        and feed-forwards of both UNets, and the temporal layers. Left eager: attention layers
        (one SDPA call each, and their processors hold per-layer Python state that would make
        every layer compile apart) and resnets that carry a temporal layer's hook."""
        import torch._dynamo

        # one compiled graph per block shape (SD1.5 has about a dozen resnet widths): let dynamo
        # keep them all rather than fall back to eager after its default 8
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        for module in (*self.backbone.modules(), *self.reference_net.modules(), *self.temporal.modules()):
            hooked = bool(getattr(module, "_forward_hooks", None))
            if isinstance(module, (ResnetBlock2D, FeedForward, TemporalTransformer)) and not hooked:
                module.compile(**compile_options)

    # ------------------------------------------------------------------------------ parameters

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by group: backbone, reference_net, face_locator, audio_attention
        (with the projection), temporal, speed (encoder + the temporal layers' speed attention).

        Weights that never take part are left out: SD1.5's text cross-attention (`attn2`) in both
        UNets, and the ReferenceNet's output head (its output is discarded).
        """

        def used(module: nn.Module, skip=lambda name: False) -> list[nn.Parameter]:
            return [p for name, p in module.named_parameters() if ".attn2." not in name and not skip(name)]

        temporal = dict(self.temporal.named_parameters())
        return {
            "backbone": used(self.backbone),
            "reference_net": used(self.reference_net, lambda name: name.startswith(("conv_norm_out.", "conv_out."))),
            "face_locator": list(self.face_locator.parameters()),
            "audio_attention": [*self.audio_projection.parameters(), *self.audio_attention.parameters()],
            "temporal": [p for name, p in temporal.items() if ".speed_" not in name],
            "speed": [*self.speed_encoder.parameters(), *(p for name, p in temporal.items() if ".speed_" in name)],
        }

    def set_trainable_stage(self, stage: int) -> list[nn.Parameter]:
        """Freeze everything but the groups of `stage` (see `STAGE_GROUPS`); return the trainable parameters."""
        if stage not in STAGE_GROUPS:
            raise ValueError(f"stage must be one of {sorted(STAGE_GROUPS)}, got {stage}")
        self.requires_grad_(False)
        groups = self.parameter_groups()
        trainable = [p for group in STAGE_GROUPS[stage] for p in groups[group]]
        for parameter in trainable:
            parameter.requires_grad_(True)
        return trainable

    # --------------------------------------------------------------------------------- forward

    def encode_reference(
        self,
        reference_latents: torch.Tensor,  # (b, c, h, w)
        motion_latents: torch.Tensor | None = None,  # (b, c, n, h, w); None for a first clip (zeros)
    ) -> ReferenceFeatures:
        """Run the ReferenceNet once for a clip; reuse the result for every denoising step."""
        return self.reference_net.encode(reference_latents, motion_latents, self.temporal.config.num_motion_frames)

    def encode_motion(self, reference: ReferenceFeatures, motion_latents: torch.Tensor) -> ReferenceFeatures:
        """`reference` with the motion features of `motion_latents` `(b, c, n, h, w)` (the previous
        clip's last frames): at inference the reference image goes through the ReferenceNet once
        per video, the motion frames once per clip."""
        return ReferenceFeatures(reference.attention, self.reference_net.encode_motion(motion_latents))

    def denoise(
        self,
        noisy_latents: torch.Tensor,  # (b, c, f, h, w)
        timesteps: torch.Tensor | float | int,  # scalar or (b,)
        reference: ReferenceFeatures,
        audio_features: torch.Tensor | None = None,  # (b, f, 2m+1, *feature_shape): see frame_windows
        face_mask: torch.Tensor | None = None,  # (b, 1, H, W) in [0, 1], H = h * 8
        speed: torch.Tensor | None = None,  # (b, f) head rotation speed, deg/s
        use_temporal: bool = True,
        keep_speed: torch.Tensor | None = None,  # (b,) 1 = use the sample's speed, 0 = as if speed were None
    ) -> torch.Tensor:
        """Noise prediction `(b, c, f, h, w)`.

        Stage 1 (images): `use_temporal=False`, no audio, no speed. Stages 2-3 and inference:
        temporal layers on (they see the reference's motion frames in front of the f frames);
        audio and speed are optional (None: no conditioning, e.g. for classifier-free guidance).
        `keep_speed` drops the speed of some samples of a batch (stage 3's speed dropout): a
        sample with 0 gets exactly the prediction it would get without `speed`.
        """
        batch, channels, frames, height, width = noisy_latents.shape
        sample = noisy_latents
        if face_mask is not None:
            scale = self.face_locator.downsampling_factor
            if tuple(face_mask.shape[-2:]) != (height * scale, width * scale):
                raise ValueError(f"face_mask must be {height * scale}x{width * scale}, got {list(face_mask.shape)}")
            sample = sample + self.face_locator(face_mask).unsqueeze(2)  # (b, c, 1, h, w) onto every frame
        sample = sample.transpose(1, 2).reshape(batch * frames, channels, height, width)  # frames into the batch

        timesteps = torch.as_tensor(timesteps, device=sample.device)
        timesteps = timesteps.expand(batch) if timesteps.ndim == 0 else timesteps
        timesteps = timesteps.repeat_interleave(frames)  # (b*f,)

        audio_tokens = None
        if audio_features is not None:
            if tuple(audio_features.shape[:2]) != (batch, frames):
                raise ValueError(
                    f"audio_features must start with [{batch}, {frames}], got {list(audio_features.shape)}"
                )
            audio_tokens = self.audio_projection(audio_features).flatten(0, 1)  # (b*f, tokens, dim)

        if use_temporal:
            motion_frames = next(iter(reference.motion.values())).shape[1]
            if motion_frames + frames > self.temporal.config.max_seq_length:
                raise ValueError(
                    f"{motion_frames} motion + {frames} target frames exceed the temporal layers' "
                    f"{self.temporal.config.max_seq_length} positions"
                )
            speed_tokens = speed_keep = None
            if speed is not None:
                if tuple(speed.shape) != (batch, frames):
                    raise ValueError(f"speed must be [{batch}, {frames}], got {list(speed.shape)}")
                speed_tokens = self.speed_encoder(speed).flatten(0, 1)  # (b*f, tokens, dim)
                if keep_speed is not None:
                    speed_keep = keep_speed.to(speed_tokens.dtype).repeat_interleave(frames).view(-1, 1, 1)  # (b*f, 1, 1)
            self._frame_context = _FrameContext(frames, reference.motion, speed_tokens, speed_keep)
        else:
            if speed is not None:
                raise ValueError("speed conditions the temporal layers: it needs use_temporal=True")
            self._frame_context = None

        prediction = self.backbone(
            sample,
            timesteps,
            encoder_hidden_states=audio_tokens,
            cross_attention_kwargs={"reference_features": reference.attention},
        ).sample  # (b*f, c, h, w)
        return prediction.reshape(batch, frames, channels, height, width).transpose(1, 2)

    def forward(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor | float | int,
        reference_latents: torch.Tensor,
        motion_latents: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        face_mask: torch.Tensor | None = None,
        speed: torch.Tensor | None = None,
        use_temporal: bool = True,
    ) -> torch.Tensor:
        """One training step's prediction: `encode_reference` then `denoise` (one module call, as DDP wants)."""
        reference = self.encode_reference(reference_latents, motion_latents)
        return self.denoise(noisy_latents, timesteps, reference, audio_features, face_mask, speed, use_temporal)
