"""Same frames, same file: the output video must not depend on what ran before in the process.

libx264's macroblock-tree rate control reads uninitialised memory at many frame sizes (64 px
among them), so identical frames used to encode to different streams depending on the heap's
contents: the first `generate()` of a process differed from later ones, and a test comparing two
generations failed on another machine. glibc's MALLOC_PERTURB_ fills fresh and freed heap memory
with a chosen byte: writers run under different fillings must produce identical streams.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import av
import numpy as np
import pytest

WRITE = """
import sys
from pathlib import Path
import cv2, numpy as np
from emo_infer.api import open_video_writer
from emo_infer.audio import DrivingAudio

rng = np.random.default_rng(0)
base = cv2.GaussianBlur(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), (0, 0), 3).astype(np.int16)
silence = np.zeros((1, 16000), np.float32)
with open_video_writer(Path(sys.argv[1]), 25.0, DrivingAudio(silence[0], silence, 16000, 25), crf=18) as writer:
    for _ in range(25):  # a still, softly textured image with per-frame noise, as a barely trained model draws
        writer.add(np.clip(base + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8))
"""


def video_packets(path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(packet) for packet in container.demux(video=0) if packet.size]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="MALLOC_PERTURB_ is glibc's")
def test_output_stream_does_not_depend_on_heap_contents(tmp_path):
    streams = []
    for fill in (1, 85, 170):
        out = tmp_path / f"fill{fill}.mp4"
        env = {**os.environ, "MALLOC_PERTURB_": str(fill)}
        subprocess.run([sys.executable, "-c", WRITE, str(out)], env=env, check=True, capture_output=True)
        streams.append(video_packets(out))
    assert len(streams[0]) == 25
    assert streams[1] == streams[0] and streams[2] == streams[0]
