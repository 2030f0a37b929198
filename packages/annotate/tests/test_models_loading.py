"""Optional models through the libraries' own loading code, with random weights saved where a
user's real weights would be (no download ever happens)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from emo_annotate import samples
from emo_annotate.config import AnnotateConfig, ClipConfig, Wav2Vec2Config
from emo_annotate.pipeline import Annotator

FPS = 25.0
SHORT_CLIPS = ClipConfig(min_frames=4)


FRAMES = 6  # FAN is slow on CPU: a clip just long enough for SHORT_CLIPS


@pytest.fixture(scope="module")
def short_astronaut(tmp_path_factory) -> Path:
    roll = samples.roll_trajectory(FRAMES, FPS, amplitude=5.0)
    return samples.make_astronaut_video(tmp_path_factory.mktemp("fan") / "astronaut.mp4", roll, FPS)


def annotate(cfg: AnnotateConfig, path: Path) -> dict:
    out: list[dict] = []
    outcome = Annotator(cfg).annotate(path, "v", path.name, out.append)
    assert outcome.status == "ok", outcome
    return out[0]


def test_fan_backend_loads_weights_from_the_torch_hub_cache(short_astronaut, tmp_path, monkeypatch):
    from face_alignment.api import FAN, ResNetDepth, models_urls

    # random FAN + depth nets saved under the file names face-alignment's loader looks for
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    fan, depth = FAN(4), ResNetDepth()
    torch.save(fan.state_dict(), checkpoints / models_urls["3DFAN-4"].rsplit("/", 1)[1])
    torch.save({"state_dict": depth.state_dict()}, checkpoints / models_urls["depth"].rsplit("/", 1)[1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    annotator = Annotator(AnnotateConfig(landmarks="fan", clip=SHORT_CLIPS))
    loaded = annotator.detector._fan.face_alignment_net.state_dict()
    for name, value in fan.state_dict().items():
        assert torch.equal(loaded[name], value), name

    out: list[dict] = []
    outcome = annotator.annotate(short_astronaut, "v", "astronaut.mp4", out.append)
    assert outcome.status == "ok"
    lmk = np.load(io.BytesIO(out[0]["lmk.npy"]), allow_pickle=False)
    pose = np.load(io.BytesIO(out[0]["pose.npy"]), allow_pickle=False)
    assert lmk.shape == (FRAMES, 68, 3) and lmk.dtype == np.float16
    assert pose.shape == (FRAMES, 6) and np.isfinite(pose).all()


def test_wav2vec2_features_from_a_saved_model(short_astronaut, tmp_path):
    from emo_annotate.samples import save_tiny_wav2vec2

    save_tiny_wav2vec2(tmp_path / "w2v")

    cfg = AnnotateConfig(audio_features="wav2vec2", wav2vec2=Wav2Vec2Config(model=str(tmp_path / "w2v")), clip=SHORT_CLIPS)
    sample = annotate(cfg, short_astronaut)
    features = np.load(io.BytesIO(sample["audio.npy"]), allow_pickle=False)
    assert features.shape == (FRAMES, 3, 32) and features.dtype == np.float16  # embeddings + 2 blocks
    assert np.isfinite(features.astype(np.float32)).all() and features.std() > 0
    import json

    meta = json.loads(sample["json"])
    assert meta["audio_features"]["kind"] == "wav2vec2" and meta["audio_features"]["shape"] == [FRAMES, 3, 32]


def test_mel_features_follow_the_audio_in_time():
    from emo_annotate.audio_features import MelFeaturizer
    from emo_annotate.config import MelConfig

    audio = np.zeros(16000 * 2, np.float32)
    audio[16000:19200] = 0.5 * np.sin(np.arange(3200) * 2 * np.pi * 1000 / 16000)  # frames 25..29
    mel = MelFeaturizer(MelConfig())(audio, 50, FPS).astype(np.float32)
    assert mel.shape == (50, 320)
    loud = mel.max(axis=1)  # a pure tone lights up a few bands
    assert set(np.flatnonzero(loud > loud.min() + 3)) <= set(range(24, 31))
    assert loud[26:29].min() > loud[:20].max() + 3
