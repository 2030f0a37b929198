"""The streaming dataset: shards -> (node, worker) split -> tar members -> samples -> shuffle -> training samples.

Nothing is extracted to disk: each tar is read as a stream, a sample's members are grouped by
key, and of its mp4 only the frames the training sample needs are converted (decoding stops
after the last of them; with `DataConfig.clip_cache_mb`, a clip is decoded whole once and
kept). A sample that cannot be used is skipped, counted in the shared `SkipCounter` and logged;
it never stops iteration.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
import webdataset as wds
from torch.utils.data import IterableDataset
from webdataset.tariterators import group_by_keys, tar_file_iterator
from webdataset.utils import pytorch_worker_info

from ..models.windows import frame_windows
from .clip_cache import DecodedClipCache
from .config import DataConfig
from .counter import SkipCounter
from .decode import (
    SampleError,
    check_shape,
    decode_frames,
    decode_json,
    decode_mask,
    decode_npy,
    member,
)
from .shards import open_shard, resolve_shards

logger = logging.getLogger(__name__)

# the shard contract's per-frame arrays: member -> trailing shape (None: checked separately)
_CONTRACT_ARRAYS = {"pose.npy": (6,), "speed.npy": (), "bbox.npy": (4,), "audio.npy": None, "lmk.npy": None}


class EMODataset(IterableDataset):
    """Training samples of one stage from the annotator's shards (see `DataConfig`).

    Every sample is a dict:

    - `key`, `url` (str): the clip's key and its shard;
    - `video` uint8 `(3, f, S, S)` RGB: the target frames (stage 1: f = 1);
    - `reference` uint8 `(3, S, S)`: the reference frame;
    - `mask` float32 `(1, S, S)` in {0, 1}: the clip's union face mask (`mask.png`);
    - `frame_indices` int64 `(f,)`, `reference_index` (int): positions in the clip (0-based);
    - stages 2-3 also: `motion` uint8 `(3, n, S, S)` (the n frames right before the targets),
      `motion_indices` int64 `(n,)`, `audio` float32 (`[f, 2m+1, *feature_shape]` windows, or
      `[f, *feature_shape]`; see `DataConfig.audio_windows`), `speed` float32 `(f,)` in deg/s,
      and the condition-dropout flags `drop_audio`, `drop_motion`, `drop_speed` (bool).

    Frames stay uint8 (a quarter of float32's bytes through the loader's queues and the host to
    device copy); the trainer scales them to [-1, 1] on its device (`emo_train.train.to_unit_range`).

    Frame choice. Stage 1: a uniformly random target frame and a uniformly random different
    reference frame. Stages 2-3: a uniformly random window of n + f consecutive frames (motion
    frames, then targets); the reference is a uniformly random frame of the clip outside that
    window (so the model cannot copy it into a target), or any frame when the clip is exactly
    n + f frames long. Clips shorter than needed are skipped (`too_short`).

    Splitting: the shard list (the same shuffled order everywhere) is split by node rank
    (`wds.split_by_node`) and then by DataLoader worker (`wds.split_by_worker`), so every
    sample is read once per epoch by one worker of one node; use at least as many shards as
    nodes x workers, or some workers get nothing.
    """

    def __init__(self, cfg: DataConfig, counter: SkipCounter | None = None):
        super().__init__()
        self.cfg = cfg
        self.urls = resolve_shards(cfg.shards)
        self.counter = counter if counter is not None else SkipCounter()
        self.epoch = 0
        self.clips = DecodedClipCache(cfg.clip_cache_mb) if cfg.clip_cache_mb > 0 else None

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for another epoch (call before iterating; with non-persistent loader workers,
        which copy the dataset each epoch). With `repeat`, passes reshuffle by themselves."""
        self.epoch = epoch

    # --------------------------------------------------------------------------- iteration

    def __iter__(self) -> Iterator[dict]:
        cfg = self.cfg
        rank, world_size, worker, num_workers = pytorch_worker_info()
        state = {"raw": 0, "skipped": 0, "yielded": 0}
        slot = worker

        def handler(exn: Exception) -> bool:
            self.counter.add("read_error", slot)
            logger.warning("shard read error (rest of the shard may be lost): %s", exn)
            return True  # go on with the next member / shard

        if cfg.seed is None:
            sample_seed = int.from_bytes(os.urandom(8), "little")
        else:
            sample_seed = int(np.random.SeedSequence([cfg.seed, self.epoch, rank, worker]).generate_state(1)[0])
        shards = self._shard_stream(rank, world_size, worker, num_workers, state)
        samples = group_by_keys(self._members(shards, handler), handler=handler)
        samples = self._count_raw(samples, state)
        if cfg.shuffle_buffer > 0:
            samples = wds.shuffle(cfg.shuffle_buffer, cfg.shuffle_buffer, rng=random.Random(sample_seed))(samples)
        rng = np.random.default_rng(sample_seed)
        for raw in samples:
            key, url = raw.get("__key__"), raw.get("__url__")
            try:
                item = self.make_sample(raw, rng)
            except SampleError as err:
                self.counter.add(err.reason, slot)
                state["skipped"] += 1
                level = logging.INFO if err.reason == "too_short" else logging.WARNING
                logger.log(level, "skipping sample %s of %s: %s: %s", key, url, err.reason, err)
                continue
            except Exception:
                self.counter.add("error", slot)
                state["skipped"] += 1
                logger.exception("skipping sample %s of %s: unexpected error", key, url)
                continue
            self.counter.add_yielded(slot)
            state["yielded"] += 1
            yield item

    def _shard_stream(self, rank: int, world_size: int, worker: int, num_workers: int, state: dict) -> Iterator[dict]:
        """`{"url": ...}` of this node's and worker's shards; forever when `repeat`."""
        epoch = self.epoch
        while True:
            urls = list(self.urls)
            if self.cfg.shuffle_buffer > 0:
                # the same order on every node and worker (the seed holds no rank or worker), so
                # that the splits below are disjoint
                order_seed = int(np.random.SeedSequence([self.cfg.seed or 0, epoch]).generate_state(1)[0])
                random.Random(order_seed).shuffle(urls)
            mine = list(wds.split_by_worker(wds.split_by_node(urls)))
            if not mine:
                if epoch == self.epoch:
                    logger.warning(
                        "node %d/%d worker %d/%d got none of the %d shards: use more shards than nodes x workers",
                        rank, world_size, worker, num_workers, len(urls),
                    )
                return
            for url in mine:
                yield {"url": url}
            if not self.cfg.repeat:
                return
            if state["yielded"] == 0 and state["skipped"] >= state["raw"]:
                logger.error("a full pass over %d shards gave no usable sample; stopping", len(mine))
                return
            epoch += 1

    @staticmethod
    def _members(shards: Iterator[dict], handler) -> Iterator[dict]:
        """Tar members `{"fname", "data", "__url__"}` of each shard, then `{}` (end of shard)."""
        for item in shards:
            url = item["url"]
            try:
                stream = open_shard(url)
            except Exception as exn:
                exn.args = (*exn.args, url)
                handler(exn)
                continue
            try:
                for record in tar_file_iterator(stream, handler=handler):
                    record["__url__"] = url
                    yield record
            except Exception as exn:
                exn.args = (*exn.args, url)
                handler(exn)
            finally:
                try:
                    stream.close()
                except Exception:
                    pass
            yield {}  # ends the shard's last (possibly partial) sample

    @staticmethod
    def _count_raw(samples: Iterator[dict], state: dict) -> Iterator[dict]:
        for sample in samples:
            state["raw"] += 1
            yield sample

    # ------------------------------------------------------------------------------ samples

    def make_sample(self, raw: dict, rng: np.random.Generator) -> dict:
        """One training sample from one raw WebDataset sample (bytes per member); raises
        SampleError for an unusable one."""
        cfg = self.cfg
        meta = decode_json(member(raw, "json"))
        num_frames = int(meta["frames"])
        if num_frames < cfg.min_clip_frames:
            raise SampleError("too_short", f"{num_frames} frames, stage {cfg.stage} needs {cfg.min_clip_frames}")
        mp4 = member(raw, "mp4")
        mask_png = member(raw, "mask.png")
        needed = ("audio.npy", "speed.npy") if cfg.video else ()
        arrays = {}
        for name, trailing in _CONTRACT_ARRAYS.items():
            if name not in raw and name not in needed:
                continue  # validated when present, required when used
            array = decode_npy(member(raw, name), name)
            if name == "audio.npy":
                check_shape(array, name, num_frames, cfg.audio_feature_shape, min_ndim=2)
            elif name == "lmk.npy":
                check_shape(array, name, num_frames, None, min_ndim=3)
                if array.ndim != 3 or array.shape[2] != 3:
                    raise SampleError("bad_shape", f"lmk.npy: shape {list(array.shape)}, expected [{num_frames}, N, 3]")
            else:
                check_shape(array, name, num_frames, trailing)
            arrays[name] = array
        mask = decode_mask(mask_png)

        if cfg.video:
            n, f = cfg.motion_frames, cfg.frames
            start = int(rng.integers(0, num_frames - (n + f) + 1))
            motion_idx = list(range(start, start + n))
            target_idx = list(range(start + n, start + n + f))
            outside = num_frames - (n + f)
            if outside > 0:
                ref = int(rng.integers(outside))
                ref = ref + (n + f) if ref >= start else ref
            else:
                ref = int(rng.integers(num_frames))
        else:
            motion_idx = []
            target_idx = [int(rng.integers(num_frames))]
            ref = int(rng.integers(num_frames - 1))
            ref = ref + 1 if ref >= target_idx[0] else ref
        drop_audio = bool(rng.random() < cfg.drop_audio)
        drop_motion = bool(rng.random() < cfg.drop_motion)
        drop_speed = bool(rng.random() < cfg.drop_speed)

        frames = self._decode(raw, mp4, num_frames, [ref, *motion_idx, *target_idx])
        height, width = next(iter(frames.values())).shape[:2]
        if height != width:
            raise SampleError("bad_shape", f"mp4: {width}x{height} frames, the shard contract stores square crops")
        if mask.shape != (height, width):
            raise SampleError("bad_mask", f"mask.png: {mask.shape[1]}x{mask.shape[0]}, frames are {width}x{height}")

        def pixels(indices: list[int]) -> torch.Tensor:  # (3, len(indices), S, S)
            return self._to_pixels(np.stack([frames[i] for i in indices]))

        sample = {
            "key": raw.get("__key__"),
            "url": raw.get("__url__"),
            "video": pixels(target_idx),  # (3, f, S, S)
            "reference": pixels([ref])[:, 0],  # (3, S, S)
            "mask": self._to_mask(mask),
            "frame_indices": torch.tensor(target_idx, dtype=torch.int64),
            "reference_index": ref,
        }
        if cfg.video:
            sample["motion"] = pixels(motion_idx)  # (3, n, S, S)
            sample["motion_indices"] = torch.tensor(motion_idx, dtype=torch.int64)
            sample["audio"] = self._audio(arrays["audio.npy"], target_idx)
            sample["speed"] = torch.from_numpy(arrays["speed.npy"][target_idx].astype(np.float32))
            sample["drop_audio"] = drop_audio
            sample["drop_motion"] = drop_motion
            sample["drop_speed"] = drop_speed
        return sample

    def _decode(self, raw: dict, mp4: bytes, num_frames: int, indices: list[int]) -> dict[int, np.ndarray]:
        """The RGB frames `indices` of the clip: decoded up to the last of them, or, with the clip
        cache, all `num_frames` decoded once and then taken from memory."""
        if self.clips is None:
            return decode_frames(mp4, indices)
        key = (raw.get("__url__"), raw.get("__key__"))
        clip = self.clips.get(key)
        if clip is None:
            clip = decode_frames(mp4, range(num_frames))
            self.clips.put(key, clip)
        return {i: clip[i] for i in indices}

    def _to_pixels(self, rgb: np.ndarray) -> torch.Tensor:
        """(k, H, W, 3) uint8 -> (3, k, S, S) uint8, in one copy straight into the layout the
        batch needs (the trainer converts to float on its device)."""
        x = torch.from_numpy(rgb).permute(3, 0, 1, 2).contiguous()
        if x.shape[-1] != self.cfg.size:
            # frames as channels: each is resized on its own (antialiased bilinear, rounded to uint8)
            x = F.interpolate(x, size=(self.cfg.size, self.cfg.size), mode="bilinear", antialias=True, align_corners=False)
        return x

    def _to_mask(self, mask: np.ndarray) -> torch.Tensor:
        """(H, W) uint8 -> (1, S, S) float32 in {0, 1} (area resampling, then >= 0.5)."""
        x = torch.from_numpy(mask.astype(np.float32) / 255.0)[None, None]
        if x.shape[-1] != self.cfg.size:
            x = F.interpolate(x, size=(self.cfg.size, self.cfg.size), mode="area")
        return (x[0] >= 0.5).float()

    def _audio(self, features: np.ndarray, target_idx: list[int]) -> torch.Tensor:
        """Audio of the target frames: windows over the whole clip (edge frames repeated only at the
        clip's own ends), or the raw per-frame features."""
        m = self.cfg.audio_context
        if not self.cfg.audio_windows:
            return torch.from_numpy(features[target_idx].astype(np.float32))
        lo, hi = max(0, target_idx[0] - m), min(len(features), target_idx[-1] + m + 1)
        part = torch.from_numpy(features[lo:hi].astype(np.float32))[None]  # only the span the windows touch
        windows = frame_windows(part, m)[0]  # (hi - lo, 2m+1, ...)
        return windows[[i - lo for i in target_idx]].contiguous()
