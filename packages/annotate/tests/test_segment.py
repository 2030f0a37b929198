"""Clip cutting on per-frame signals: every edge and every dropped stretch has its reason."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from emo_annotate.config import ClipConfig
from emo_annotate.pipeline import Observations, fill_missing_landmarks
from emo_annotate.pose import canonical_face_model, clip_pose
from emo_annotate.segment import (
    FROZEN, JUMP_CUT, LOW_PICTURE_RATE, NO_AUDIO, NO_FACE, SCENE_CUT, SEVERAL_FACES, SMALL_FACE, SPLIT_LONG,
    SPLIT_SMALL_FACE, TRACK_JUMP, VIDEO_END, VIDEO_START, ClipCutter, FrameSignals, find_clips,
)

CFG = ClipConfig(min_frames=16, max_seconds=2.0)


def signals(counts, cut_at=(), jump_at=(), step_at=(), still=(), no_audio=(), slide=0.0) -> FrameSignals:
    n = len(counts)
    boxes = np.tile(np.array([100, 100, 200, 200], np.float32), (n, 1))
    boxes[:, [0, 2]] += (slide * np.arange(n))[:, None]  # the face moves `slide` px a frame
    for t in jump_at:
        boxes[t:] += 300  # the face jumps elsewhere
    hists = np.zeros((n, 32), np.float32)
    hists[:, 5] = 1
    for t in cut_at:
        hists[t:] = 0
        hists[t:, 25] = 1  # a different shot from t on
    steps = 0.01 + 0.002 * np.sin(np.arange(n))  # ordinary landmark motion, face sides a frame
    steps[0] = np.nan
    for t in step_at:
        steps[t] = 0.09  # the landmarks jump, same framing
    fresh = np.ones(n, bool)
    for a, b in still:
        fresh[a:b] = False
    coverage = np.ones(n)
    for a, b in no_audio:
        coverage[a:b] = 0.0
    return FrameSignals(np.array(counts), boxes, hists, steps, fresh, coverage)


def spans(counts, frame_size=None, **kw):
    cut = find_clips(signals(counts, **kw), fps=25.0, cfg=CFG, frame_size=frame_size)
    return [(s.start, s.stop) for s in cut.spans], cut


def test_one_continuous_face_is_one_clip():
    result, cut = spans([1] * 40)
    assert result == [(0, 40)] and cut.reason is None and cut.dropped == []
    assert (cut.spans[0].start_reason, cut.spans[0].end_reason) == (VIDEO_START, VIDEO_END)


def test_long_tracks_split_under_max_length_as_they_go():
    """50 frames max at 25 fps x 2 s: a track up to max + min_frames frames is halved evenly; a
    longer one gives pieces of 50 while it lasts (decided without knowing its end) and what is
    left, at least min_frames, is shared by the last one or two pieces."""
    result, cut = spans([1] * 60)
    assert result == [(0, 30), (30, 60)]
    result, cut = spans([1] * 120)
    assert result == [(0, 50), (50, 100), (100, 120)]
    assert [s.end_reason for s in cut.spans] == [SPLIT_LONG, SPLIT_LONG, VIDEO_END]
    assert [s.start_reason for s in cut.spans] == [VIDEO_START, SPLIT_LONG, SPLIT_LONG]
    result, _ = spans([1] * 160)
    assert result == [(0, 50), (50, 100), (100, 130), (130, 160)]
    for n in range(16, 400, 7):
        lengths = [b - a for a, b in spans([1] * n)[0]]
        assert sum(lengths) == n and min(lengths) >= CFG.min_frames and max(lengths) <= 50, (n, lengths)


def busy_signals(n: int, seed: int) -> FrameSignals:
    """A long video with every kind of event at random places."""
    rng = np.random.default_rng(seed)
    counts = np.ones(n, int)
    for _ in range(n // 60):
        t = int(rng.integers(0, n - 8))
        counts[t : t + int(rng.integers(1, 8))] = rng.choice([0, 2])
    events = {k: sorted(rng.choice(n, size=n // 150, replace=False).tolist()) for k in ("cut", "jump", "step")}
    still = [(int(t), int(t + rng.integers(1, 12))) for t in rng.choice(n - 12, size=n // 100, replace=False)]
    sig = signals(counts.tolist(), cut_at=events["cut"], jump_at=events["jump"], step_at=events["step"], still=still,
                  no_audio=[(int(t), int(t) + 3) for t in rng.choice(n - 3, size=n // 300, replace=False)], slide=0.2)
    sig.kept = rng.random(n) > 0.002
    return sig


def test_deciding_frame_by_frame_equals_deciding_the_whole_video_at_once():
    """The cutter decides frames in batches with a bounded look-ahead and look-back; on a video
    full of events that gives exactly what one decision over all frames gives."""
    for seed in range(3):
        sig = busy_signals(1500, seed)
        results = []
        for batch in (1, 16, 10**9):  # 10**9: nothing is decided before the end
            cutter = ClipCutter(25.0, CFG, (1280, 720))
            cutter.BATCH = batch
            lag = 0
            for t in range(len(sig)):
                cutter.push(int(sig.face_counts[t]), sig.boxes[t], sig.histograms[t], float(sig.landmark_steps[t]),
                            bool(sig.fresh[t]), float(sig.audio_coverage[t]), bool(sig.kept[t]))
                lag = max(lag, cutter.n - cutter.horizon)
            cutter.finish()
            seg = cutter.result()
            results.append((seg.spans, seg.dropped, seg.reason))
            if batch == 16:  # what the caller must keep: one piece under construction and the look-ahead
                assert lag <= cutter.max_frames + CFG.min_frames + 1 + cutter.lookahead + batch
        assert results[0] == results[1] == results[2]
        assert len(results[0][0]) > 10 and {d.reason.split(" (")[0] for d in results[0][1]} >= {FROZEN}


def test_scene_cut_track_jump_and_jump_cut_end_clips_with_their_reason():
    for kw, reason in (({"cut_at": (20,)}, SCENE_CUT), ({"jump_at": (22,)}, TRACK_JUMP), ({"step_at": (21,)}, JUMP_CUT)):
        result, cut = spans([1] * 42, **kw)
        t = next(iter(kw.values()))[0]
        assert result == [(0, t), (t, 42)], kw
        assert cut.spans[0].end_reason == cut.spans[1].start_reason == reason


def test_fast_but_smooth_motion_is_no_jump_cut():
    sig = signals([1] * 40)
    sig.landmark_steps[10:30] = np.linspace(0.01, 0.09, 20)  # a head turn speeding up
    assert [(s.start, s.stop) for s in find_clips(sig, 25.0, CFG).spans] == [(0, 40)]


def test_brief_false_second_face_is_tolerated_but_a_second_person_is_not():
    assert spans([1] * 20 + [2] * 2 + [1] * 20)[0] == [(0, 42)]
    result, cut = spans([1] * 20 + [2] * 10 + [1] * 20)
    assert result == [(0, 20), (30, 50)]
    assert cut.spans[0].end_reason == cut.spans[1].start_reason == SEVERAL_FACES


def test_frames_without_sound_end_clips():
    result, cut = spans([1] * 60, no_audio=((25, 30),))
    assert result == [(0, 25), (30, 60)]
    assert cut.spans[0].end_reason == NO_AUDIO and cut.dropped == []


def test_a_frozen_stretch_is_dropped_with_its_reason_and_short_repeats_are_not():
    result, cut = spans([1] * 60, still=((20, 35),))
    assert result == [(0, 20), (35, 60)]
    assert [(d.start, d.stop) for d in cut.dropped] == [(20, 35)] and cut.dropped[0].reason.startswith(FROZEN)
    assert cut.spans[0].end_reason == FROZEN
    # 29.97 -> 25 fps never repeats, 20 -> 25 repeats one frame in five: no freeze, enough pictures
    assert spans([1] * 40, still=[(t, t + 1) for t in range(4, 40, 5)])[0] == [(0, 40)]


def test_low_picture_rate_drops_the_clip():
    result, cut = spans([1] * 50, still=[(t, t + 2) for t in range(1, 50, 3)])  # a 8.3 fps source
    assert result == [] and cut.dropped[0].reason.startswith(LOW_PICTURE_RATE)
    assert cut.reason.startswith("every clip was dropped: " + LOW_PICTURE_RATE)


def test_a_face_moving_across_the_frame_is_split_until_it_fills_its_crop():
    # 100 px face moving 9 px a frame: a 32-frame clip's crop would be 4x the face
    result, cut = spans([1] * 64, frame_size=(1280, 720), slide=9.0)
    assert len(result) >= 2 and cut.dropped == []
    assert SPLIT_SMALL_FACE in {s.end_reason for s in cut.spans}
    # too fast to fix by halving: dropped with its reason
    result, cut = spans([1] * 20, frame_size=(1280, 720), slide=20.0)
    assert result == [] and cut.dropped[0].reason.startswith(SMALL_FACE)


def test_reasons_when_nothing_is_usable():
    assert spans([0] * 40)[1].reason == NO_FACE
    assert spans([2] * 40)[1].reason == SEVERAL_FACES
    assert spans([1] * 5)[1].reason.startswith("too short")
    assert spans([1] * 40, no_audio=((0, 40),))[1].reason == f"{NO_AUDIO} where the face is"
    result, cut = spans([1] * 10 + [0] * 3 + [1] * 10)
    assert result == [] and "longest 10" in cut.reason


def test_transient_frames_without_landmarks_are_interpolated_not_zero():
    """A frame with two detections and no confirmed mesh inside a still-head track: its landmarks
    come from its neighbours, so the head speed stays ~0 (zeros gave a 100+ deg/s spike)."""
    n = 30
    rot = Rotation.from_euler("YXZ", [10.0, -5.0, 3.0], degrees=True)
    face = rot.apply(canonical_face_model()) * 12.0 * np.array([1.0, -1.0, -1.0]) + np.array([320.0, 240.0, 0.0])
    landmarks = np.repeat(face[None].astype(np.float32), n, axis=0)
    known = np.ones(n, bool)
    counts = np.ones(n, int)
    known[14:16], counts[14:16] = False, 2
    landmarks[14:16] = 0.0  # what pass 1 stores for a frame without a mesh
    boxes = np.tile(np.array([200, 120, 440, 360], np.float32), (n, 1))
    obs = Observations(counts, boxes, landmarks, known, np.zeros((n, 32), np.float32), np.ones(n, bool))
    sig = signals(counts.tolist())
    cut = find_clips(sig, 25.0, CFG)
    assert [(s.start, s.stop) for s in cut.spans] == [(0, n)]
    assert fill_missing_landmarks(obs, cut.spans) == [2]
    crop = np.array([160.0, 80.0, 320.0])
    _, speed = clip_pose(obs.landmarks, "mediapipe", crop, 25.0, CFG.smoothing_seconds)
    assert speed.max() < 0.5
