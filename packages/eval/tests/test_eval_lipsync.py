"""Landmark sync known answers: a real talking head whose audio loudness follows its mouth
opening k frames early gives offset k; shuffled audio gives a low correlation; silence is silent."""

from __future__ import annotations

import numpy as np
import pytest
from eval_media import FPS, audio_following, write_talking
from emo_annotate.media import AUDIO_RATE
from emo_eval import audio_envelope, compare, landmark_sync
from emo_eval.lipsync import mouth_summary

LAG = 3  # the mouth follows the audio 3 frames (120 ms) late


def shifted(values: np.ndarray, k: int) -> np.ndarray:
    """values[t + k], edge values past the ends."""
    idx = np.clip(np.arange(len(values)) + k, 0, len(values) - 1)
    return values[idx]


def test_envelope_is_rms_per_frame():
    t = np.arange(AUDIO_RATE) / AUDIO_RATE
    sine = 0.5 * np.sin(2 * np.pi * 200 * t)  # 1 s: 25 frames of 8 full periods
    env = audio_envelope(sine, AUDIO_RATE, FPS, 30)
    assert np.allclose(env[:25], 0.5 / np.sqrt(2), rtol=1e-3)
    assert np.all(env[25:] == 0)  # past the audio's end


def test_offset_of_a_talking_head_and_its_lagged_audio(talking_crops, measured_mouth, tmp_path):
    audio = audio_following(shifted(measured_mouth, LAG))  # the loudness leads the mouth by LAG frames
    video = write_talking(tmp_path / "talking.mp4", talking_crops, audio)
    report = compare(video, out=tmp_path / "report", portraits=None, fid=False, progress=False, speed=0.0)
    metrics = report["videos"]["talking"]["metrics"]["generated"]
    assert metrics["face_frames"] == metrics["frames"] == len(talking_crops)
    assert metrics["lsync_offset"] == LAG
    assert metrics["lsync_corr"] > 0.8
    assert metrics["lsync_corr_at_0"] < metrics["lsync_corr"] - 0.2
    # a synchronous recording: offset 0 (function level, the same measured mouth)
    sync = landmark_sync(measured_mouth, audio_envelope(audio_following(measured_mouth), AUDIO_RATE, FPS, len(measured_mouth)))
    assert sync.offset == 0 and sync.correlation > 0.9
    assert (tmp_path / "report" / "videos" / "talking" / "mouth.png").stat().st_size > 0


@pytest.mark.parametrize("seed", [1, 2])
def test_shuffled_audio_correlates_little(measured_mouth, seed):
    order = np.random.default_rng(seed).permutation(len(measured_mouth))
    audio = audio_following(measured_mouth[order], seed=seed)
    sync = landmark_sync(measured_mouth, audio_envelope(audio, AUDIO_RATE, FPS, len(measured_mouth)))
    matched = landmark_sync(measured_mouth, audio_envelope(audio_following(measured_mouth), AUDIO_RATE, FPS, len(measured_mouth)))
    assert sync.correlation < 0.45 < matched.correlation


def test_mouth_during_silence_and_speech(measured_mouth):
    n = len(measured_mouth)
    silence = audio_envelope(np.zeros(n * 640, np.float32), AUDIO_RATE, FPS, n)
    quiet = mouth_summary(measured_mouth, silence)
    assert quiet["silent_fraction"] == 1.0 and quiet["mouth_open_voiced"] is None
    assert quiet["mouth_open_silent"] == pytest.approx(float(np.mean(measured_mouth)), rel=1e-5)
    # loud where the mouth is open: the voiced frames have the wider mouth
    speech = audio_envelope(audio_following(np.where(measured_mouth > 0.1, 1.0, 0.0), floor=0.0), AUDIO_RATE, FPS, n)
    split = mouth_summary(measured_mouth, speech)
    assert split["mouth_open_voiced"] > 0.1 > split["mouth_open_silent"]
