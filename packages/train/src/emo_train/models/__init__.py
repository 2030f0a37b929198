"""EMO model components (diffusers ModelMixins) and the composed `EMOModel`."""

from .audio_attention import AudioAttention
from .audio_projection import AudioProjection
from .emo import COMPONENTS, STAGE_GROUPS, EMOModel, use_channels_last
from .face_locator import FaceLocator
from .presets import PRESETS, EMOPreset, get_preset
from .reference_net import ReferenceFeatures, ReferenceNet
from .speed_encoder import SpeedEncoder
from .temporal import TemporalLayers, TemporalTransformer, load_motion_adapter, temporal_positions
from .windows import frame_windows

__all__ = [
    "COMPONENTS",
    "PRESETS",
    "STAGE_GROUPS",
    "AudioAttention",
    "AudioProjection",
    "EMOModel",
    "EMOPreset",
    "FaceLocator",
    "ReferenceFeatures",
    "ReferenceNet",
    "SpeedEncoder",
    "TemporalLayers",
    "TemporalTransformer",
    "frame_windows",
    "get_preset",
    "load_motion_adapter",
    "temporal_positions",
    "use_channels_last",
]
