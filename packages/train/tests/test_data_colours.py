"""Colours survive from the source video to the frames the trainer decodes.

Full-range BT.601 (phones, webcams) and BT.709 (HD cameras) sources go through the real annotator
into stored clips (BT.709 limited range, tagged) and back out through the trainer's decoder. A
full-range source stored untagged came back with greys 2/14/241/251 clipped to 0/0/255/255, and
BT.709 read as BT.601 shifts saturated reds by about 12 levels.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from emo_annotate.config import AnnotateConfig
from emo_annotate.pipeline import Annotator
from emo_annotate.sync_media import make_sync_video
from emo_train.data import decode_frames


@pytest.fixture(scope="module")
def annotator():
    annotator = Annotator(AnnotateConfig(size=160))
    yield annotator
    annotator.close()


def centre_mean(frame: np.ndarray, box, meta: dict) -> np.ndarray:
    x0, y0, x1, _ = meta["crop_box_source_px"]
    s = meta["size"] / (x1 - x0)
    cx, cy = int(round(((box[0] + box[2]) / 2 - x0) * s)), int(round(((box[1] + box[3]) / 2 - y0) * s))
    return frame[cy - 2 : cy + 3, cx - 2 : cx + 3].reshape(-1, 3).mean(axis=0)


@pytest.mark.parametrize("condition", ["full_range", "bt709"])
def test_source_colours_reach_the_trainers_frames(annotator, tmp_path, condition):
    video = make_sync_video(tmp_path, condition)
    clips: list[dict] = []
    assert annotator.annotate(video.path, "colours", video.path.name, clips.append).status == "ok"
    for clip in clips:
        meta = json.loads(clip["json"])
        middle = meta["frames"] // 2
        frame = decode_frames(clip["mp4"], [middle])[middle]  # (H, W, 3) uint8, as the loader gets it
        for level, box in video.grey_boxes.items():
            got = centre_mean(frame, box, meta)
            assert abs(got.mean() - level) <= 5 and np.abs(got - level).max() <= 8, (level, got)
        for rgb, box in video.colour_boxes.items():
            got = centre_mean(frame, box, meta)
            assert np.abs(got - np.array(rgb)).max() <= 8, (rgb, got)
