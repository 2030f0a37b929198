"""Training data: the annotator's WebDataset shards streamed into EMO training batches.

    cfg = DataConfig(shards="annotated/", stage=2, size=512)
    loader = make_dataloader(cfg, batch_size=4, num_workers=8)
    for batch in loader:          # video (b,3,12,S,S), motion (b,3,4,S,S), reference (b,3,S,S),
        ...                       # mask (b,1,S,S), audio (b,12,5,*feat), speed (b,12), flags (b,)
    print(loader.dataset.counter.summary())   # yielded / skipped samples, by reason

See `EMODataset` for the sample fields and the frame choices, `DataConfig` for the options.
"""

from .clip_cache import DecodedClipCache
from .config import DataConfig
from .counter import REASONS, SkipCounter
from .dataset import EMODataset
from .decode import SampleError, decode_frames
from .loader import collate, make_dataloader
from .shards import (
    annotation_settings,
    open_shard,
    resolve_shards,
    shard_audio_feature_shape,
    shard_sample_metadata,
)

__all__ = [
    "REASONS",
    "annotation_settings",
    "DataConfig",
    "DecodedClipCache",
    "EMODataset",
    "SampleError",
    "SkipCounter",
    "collate",
    "decode_frames",
    "make_dataloader",
    "open_shard",
    "resolve_shards",
    "shard_audio_feature_shape",
    "shard_sample_metadata",
]
