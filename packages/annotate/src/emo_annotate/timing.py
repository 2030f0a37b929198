"""Where a worker's time goes: seconds per stage of the pipeline, summed over videos."""

from __future__ import annotations

import time

# in the order of the pipeline: probe + audio, decode, RGB for the models, face mesh, face detector,
# per-frame signals and segmenting, keeping planes, cutting crops, H.264, pose/audio features/sample
# bytes, shard and index writing
STAGES = ("open", "decode", "to_rgb", "mesh", "detector", "signals", "keep", "crop", "encode", "labels", "write")


class StageTimes:
    """Seconds spent per stage (`STAGES`), accumulated across videos."""

    def __init__(self):
        self.seconds = dict.fromkeys(STAGES, 0.0)

    def lap(self, stage: str, since: float) -> float:
        """Charge the time since `since` to `stage`; returns now."""
        now = time.perf_counter()
        self.seconds[stage] += now - since
        return now
