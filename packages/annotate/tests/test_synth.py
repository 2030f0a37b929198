"""The synthetic talking head against the real annotator: what MediaPipe and the pose fit measure
on the rendered video follows the ground truth in its JSON, frame by frame."""

from __future__ import annotations

import json
import subprocess
import sys

import av
import numpy as np
import pytest

from emo_annotate import samples
from emo_annotate.media import AUDIO_RATE, encode_wav
from emo_annotate.synth import SynthConfig, TalkingHead, load_identity, load_truth, render_video, synth_recording
from emo_annotate.synth.measure import agreement, annotate_rendering, mouth_seen
from emo_annotate.synth.loudness import LoudnessConfig, mouth_opening
from emo_annotate.synth.head import applied_rotation
from emo_annotate.synth.motion import FigureEight, Segment, SpeedProfile, follow, trajectory_speed

FPS = 25.0
CFG = SynthConfig()
# 1.6 s each: still, slow, fast, still (the head keeps the pose it reached)
PROFILE = SpeedProfile((Segment(0.0, 1.6, 0.0, "still"), Segment(1.6, 3.2, 15.0, "slow"),
                        Segment(3.2, 4.8, 50.0, "fast"), Segment(4.8, 6.4, 0.0, "still")), ramp=0.3)


@pytest.fixture(scope="module")
def astronaut_head():
    return TalkingHead(load_identity("astronaut", CFG.size, CFG.face_fraction), CFG)


@pytest.fixture(scope="module")
def measured(astronaut_head, tmp_path_factory):
    """A 6.4 s rendering (speech with a silent second) annotated in-process by the real
    annotator: (ground truth, what the annotator measured, their agreement)."""
    audio = synth_recording(6.4, seed=11, voice="mid").audio
    audio[int(1.0 * AUDIO_RATE) : int(2.0 * AUDIO_RATE)] = 0.0
    path = tmp_path_factory.mktemp("synth") / "astronaut_talk.mp4"
    render_video(astronaut_head, audio, path, PROFILE, phase=0.3)
    truth, seen = load_truth(path), annotate_rendering(path, size=256)
    return truth, seen, agreement(truth, seen)


def test_every_frame_is_annotated(measured):
    truth, seen, _ = measured
    assert truth["frames"] == 160
    np.testing.assert_array_equal(seen.frames, np.arange(160))


def test_mediapipe_sees_the_mouth_open_with_the_audio(measured):
    truth, seen, figures = measured
    assert figures["mouth_r"] > 0.85  # per frame (measured 0.95)
    lips = mouth_seen(seen.landmarks)  # inner-lip gap / face height
    opening = truth["per_frame"]["opening"][seen.frames]
    # the silent second is closed; wide open, MediaPipe's lips part by a good part of the drawn
    # gap (0.4 of it here: on this smiling photo its lower lip follows the lower teeth' edge)
    assert opening[(seen.frames >= 27) & (seen.frames < 48)].max() == 0.0
    closed, wide = np.median(lips[opening == 0]), np.median(lips[opening > 0.8])
    assert 0.3 * CFG.max_gap < wide - closed < 1.2 * CFG.max_gap


def test_annotated_roll_and_yaw_follow_ground_truth(measured):
    truth, _, figures = measured
    # degrees: |median offset| (the photo's pose, fit on the still photo), p95 and max per frame
    for name, max_offset, p95, worst in (("roll", 1.5, 1.5, 2.5), ("yaw", 3.0, 3.5, 6.0)):
        assert abs(figures[name]["offset"]) < max_offset, (name, figures[name])
        assert figures[name]["p95"] < p95 and figures[name]["max"] < worst, (name, figures[name])
    assert np.ptp(truth["per_frame"]["roll"]) > 15 and np.ptp(truth["per_frame"]["yaw"]) > 10  # the head did turn


def test_annotated_speed_per_segment(measured):
    speed = measured[2]["speed"]
    # the truth by the annotator's definition (a chord over two frames) is the profile within 1 %
    assert {k: v["true"] for k, v in speed.items()} == pytest.approx({"still": 0.0, "slow": 15.0, "fast": 50.0}, rel=0.01)
    still, slow, fast = (speed[k]["measured"] for k in ("still", "slow", "fast"))
    assert still < 8.0  # MediaPipe jitter on a talking, unmoving head
    assert still + 4 < slow < fast
    assert abs(slow - 15.0) < 5.0 and abs(fast - 50.0) < 0.15 * 50.0


def test_json_matches_the_video_and_silence_keeps_the_mouth_shut(astronaut_head, tmp_path):
    audio = np.concatenate([np.zeros(AUDIO_RATE, np.float32), synth_recording(1.0, seed=3, voice="high").audio])
    path = tmp_path / "half_silent.mp4"
    truth = render_video(astronaut_head, audio, path, SpeedProfile.constant(20.0, 2.0))
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        audio_s = float(container.streams.audio[0].duration * container.streams.audio[0].time_base)
    assert truth["frames"] == len(frames) == 50 and audio_s == pytest.approx(2.0, abs=0.05)
    assert all(len(v) == 50 for v in truth["per_frame"].values())
    opening = np.asarray(truth["per_frame"]["opening"])
    assert opening[:25].max() == 0.0 and opening[25:].max() == 1.0
    # the requested speed, by the annotator's definition, on every frame
    np.testing.assert_allclose(truth["per_frame"]["speed"], 20.0, rtol=0.04)  # (chords: see below)
    assert json.loads(path.with_suffix(".json").read_text())["recording"] == {}

    # silent and still: every frame is the photo's frame (up to H.264)
    still = render_video(astronaut_head, np.zeros(AUDIO_RATE // 2, np.float32), tmp_path / "silent.mp4")
    with av.open(str(tmp_path / "silent.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24").astype(float) for f in container.decode(video=0)]
    assert still["frames"] == len(frames) == 12 and not any(still["per_frame"]["opening"])
    photo = astronaut_head.identity.image.astype(float)
    assert all(10 * np.log10(255**2 / np.mean((f - photo) ** 2)) > 35 for f in frames)


def test_trajectory_speed_is_exactly_the_profile():
    profile = SpeedProfile.varied(12.0, seed=5)
    assert {s.label for s in profile.segments} == {"still", "slow", "medium", "fast"}
    assert all(a.label != b.label for a, b in zip(profile.segments, profile.segments[1:]))
    steps = profile.step_speeds(300, FPS)
    _, angles = follow(FigureEight(yaw=12, roll=12, pitch=5), steps, FPS, phase=2.0, direction=-1)
    rotations = applied_rotation(*angles.T)
    turned = np.degrees((rotations[:-1].inv() * rotations[1:]).magnitude()) * FPS  # (T-1,) per step
    np.testing.assert_allclose(turned, steps, atol=1e-3)
    # the JSON's speed is the annotator's central difference, the chord over two steps: where the
    # profile holds it is the profile on the straight parts of the path and up to 7 % less where
    # the path turns fast (the ends of the eight at 50 deg/s), 1 % less on average
    speed, held = trajectory_speed(angles, FPS)[1:-1], np.diff(steps) == 0
    np.testing.assert_allclose(speed[held], steps[1:][held], rtol=0.07, atol=1e-3)
    assert np.all(speed[held] <= steps[1:][held] + 1e-3)
    assert speed[held].sum() == pytest.approx(steps[1:][held].sum(), rel=0.01)
    assert np.abs(angles).max(0) == pytest.approx([12, 5, 12], abs=0.05)


def test_loudness_maps_to_opening_in_db():
    t = np.arange(AUDIO_RATE) / AUDIO_RATE
    tone = np.sin(2 * np.pi * 220 * t).astype(np.float32)
    # 1 s loud, 1 s 12 dB quieter, 1 s silent: the loud part is the reference
    audio = np.concatenate([tone * 0.5, tone * 0.5 * 10 ** (-12 / 20), np.zeros(AUDIO_RATE, np.float32)])
    opening, db, reference = mouth_opening(audio, 75, FPS, LoudnessConfig(range_db=24.0))
    assert reference == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.1)
    assert opening[3:22] == pytest.approx(1.0, abs=0.01)
    assert opening[28:47] == pytest.approx(0.5, abs=0.02)
    assert opening[53:].max() == 0.0
    assert mouth_opening(np.zeros(AUDIO_RATE, np.float32), 25, FPS)[0].max() == 0.0


def test_synthesised_voices_differ_in_pitch():
    def fundamental(audio):
        spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
        freqs = np.fft.rfftfreq(len(audio), 1 / AUDIO_RATE)
        band = (freqs > 60) & (freqs < 400)
        return freqs[band][spectrum[band].argmax()]

    low, high = (samples.synth_speech(2.0, seed=1, pitch=p) for p in (100.0, 200.0))
    assert fundamental(low) == pytest.approx(100, rel=0.2) and fundamental(high) == pytest.approx(200, rel=0.2)
    assert len(samples.synth_speech(2.0, tempo=1.5)) == 2 * AUDIO_RATE
    # any length and seed (a fricative running past the end used to raise)
    assert all(len(samples.synth_speech(s, seed=k, tempo=1.3)) == int(s * AUDIO_RATE) for k in range(40) for s in (0.3, 0.7))


def emo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emo_annotate.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_builds_a_split_set_and_keeps_it(tmp_path):
    out = tmp_path / "set"
    args = ["synth", str(out), "--identity", "astronaut", "--identity", "carphone", "--recordings", "2", "--held-out", "1",
            "--seconds", "2", "--size", "128", "--quiet"]
    result = emo(*args)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "set.json").read_text())
    assert manifest["complete"] and len(manifest["videos"]) == 4
    assert sorted(p.name for p in (out / "held_out").glob("*.mp4")) == ["astronaut_synth1-mid.mp4", "carphone_synth1-mid.mp4"]
    assert sorted(p.name for p in (out / "train").glob("*.mp4")) == ["astronaut_synth0-low.mp4", "carphone_synth0-low.mp4"]
    assert sorted(p.name for p in (out / "audio").iterdir()) == ["synth0-low.wav", "synth1-mid.wav"]
    truth = load_truth(out / "train" / "carphone_synth0-low.mp4")
    assert truth["size"] == 128 and truth["frames"] == 50 and truth["recording"]["split"] == "train"
    assert {s["label"] for s in truth["speed_profile"]["segments"]} <= {"still", "slow", "medium", "fast"}

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}
    assert emo(*args).returncode == 0  # a rerun keeps finished videos
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")} == stamps
    other = emo(*args[:-1], "--seed", "1")
    assert other.returncode == 1 and other.stderr.startswith("error: ") and "other options" in other.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")} == stamps

    # one reference rendering of a held-out recording, head still
    wav = out / "audio" / "synth1-mid.wav"
    result = emo("synth", str(tmp_path / "ref"), "--identity", "grace_hopper", "--audio", str(wav), "--speed", "0", "--size", "128")
    assert result.returncode == 0, result.stderr
    truth = load_truth(tmp_path / "ref" / "grace_hopper_synth1-mid.mp4")
    assert truth["frames"] == 50 and not any(truth["per_frame"]["speed"]) and truth["recording"]["kind"] == "file"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--audio", "no/such.wav", "--identity", "astronaut"], "does not exist"),
        (["--audio", "AUDIO", "--identity", "astronaut", "--speed", "fast"], "--speed must be a number"),
        (["--audio", "AUDIO"], "exactly one --identity"),
        (["--speed", "10"], "only with --audio"),
        (["--recordings", "2", "--held-out", "2"], "must be smaller"),
        (["--audio", "AUDIO", "--identity", "NOFACE"], "exactly one face"),
        (["--audio", "AUDIO", "--identity", "no_such_person"], "neither a built-in identity"),
    ],
)
def test_cli_bad_input_is_one_line(args, message, tmp_path):
    (tmp_path / "a.wav").write_bytes(encode_wav(samples.synth_speech(0.5)))
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    args = [str(tmp_path / "a.wav") if a == "AUDIO" else str(tmp_path / "grey.png") if a == "NOFACE" else a for a in args]
    result = emo("synth", str(tmp_path / "out"), *args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.skipif(not __import__("shutil").which("espeak-ng"), reason="espeak-ng is not installed (optional)")
def test_espeak_recording():
    from emo_annotate.synth import espeak_recording

    recording = espeak_recording(3.0, seed=2, voice="en+f3")
    assert len(recording.audio) == 3 * AUDIO_RATE and np.abs(recording.audio).max() > 0.1
    assert "_" not in recording.name and recording.description["text"]


def test_a_photo_file_with_exif_rotation_is_the_same_identity(tmp_path):
    """A phone photo stored sideways with an EXIF orientation tag frames like the upright one."""
    from PIL import Image

    photo = tmp_path / "astronaut.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored pixels turned 90 degrees clockwise
    Image.fromarray(np.ascontiguousarray(np.rot90(samples.astronaut_image()))).save(photo, quality=95, exif=exif)
    built_in, from_file = load_identity("astronaut"), load_identity(photo)
    assert from_file.name == "astronaut" and from_file.source == "astronaut.jpg"
    assert from_file.frame_box == built_in.frame_box
    assert np.abs(from_file.landmarks[:, :2] - built_in.landmarks[:, :2]).mean() < 1.0
    error = np.mean((from_file.image.astype(float) - built_in.image.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / error) > 30
