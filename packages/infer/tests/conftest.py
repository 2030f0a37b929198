"""Shared inputs: a tiny EMO checkpoint trained by the real trainer on real annotator shards,
the astronaut photo, synthesised speech in several containers."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from emo_annotate import samples
from emo_annotate.media import AUDIO_RATE, encode_wav
from emo_train.samples import tiny_checkpoint

from infer_media import SECONDS


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("infer")
    checkpoint = tiny_checkpoint(root)  # root/annotated: real shards; root/run: 2 trained steps, stage 3
    speech = samples.synth_speech(SECONDS, seed=3)
    cv2.imwrite(str(root / "astronaut.png"), cv2.cvtColor(samples.astronaut_image(), cv2.COLOR_RGB2BGR))
    (root / "speech.wav").write_bytes(encode_wav(speech))
    (root / "short.wav").write_bytes(encode_wav(speech[: AUDIO_RATE]))  # 1 s: 25 frames, 3 clips
    return {
        "root": root,
        "checkpoint": checkpoint,
        "image": root / "astronaut.png",
        "speech": root / "speech.wav",
        "short": root / "short.wav",
    }


@pytest.fixture(scope="session")
def no_face_image(tmp_path_factory) -> Path:
    """scikit-image's coffee cup: a real photo without a face."""
    path = tmp_path_factory.mktemp("noface") / "coffee.jpg"
    cv2.imwrite(str(path), cv2.imread(str(samples.package_file("skimage", "data", "coffee.png"))))
    return path
