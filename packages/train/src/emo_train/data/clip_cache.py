"""Decoded clips kept in memory by a loader process, for sets that fit in it.

Without it every training sample decodes its clip's mp4 up to the last frame it needs: half a
clip on average for one or two frames, 30% of a stage-1 step of the learning check on a CPU
(BENCHMARKS.md). A small set (a fine-tuning set, the learning check's) is drawn from again and
again, so each process decodes a clip once, whole, and keeps its RGB frames, least recently used
out first when the budget is spent. Each loader process has its own cache: a process reads only
its own shards (`EMODataset`'s split), so the budget is per process, not shared.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


class DecodedClipCache:
    def __init__(self, capacity_mb: float):
        self.capacity = int(capacity_mb * 2**20)  # bytes
        self.used = 0
        self.hits = 0
        self.misses = 0
        self._clips: OrderedDict[tuple, tuple[dict[int, np.ndarray], int]] = OrderedDict()  # key -> (frames, bytes)

    def get(self, key: tuple) -> dict[int, np.ndarray] | None:
        """Frame index -> (H, W, 3) uint8 RGB of every frame of the clip, or None."""
        entry = self._clips.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._clips.move_to_end(key)
        self.hits += 1
        return entry[0]

    def put(self, key: tuple, clip: dict[int, np.ndarray]) -> None:
        """Keep `clip`, dropping the least recently used ones to make room; a clip larger than the
        whole budget is not kept."""
        size = sum(frame.nbytes for frame in clip.values())
        if size > self.capacity or key in self._clips:
            return
        while self.used + size > self.capacity:
            _, (_, dropped) = self._clips.popitem(last=False)
            self.used -= dropped
        self._clips[key] = (clip, size)
        self.used += size

    def __len__(self) -> int:
        return len(self._clips)

    def __getstate__(self) -> dict:
        # a loader worker starts with an empty cache of the same budget, not a copy of this one's frames
        return {"capacity_mb": self.capacity / 2**20}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["capacity_mb"])
