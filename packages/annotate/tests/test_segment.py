"""Clip cutting on per-frame observations."""

from __future__ import annotations

import numpy as np

from emo_annotate.config import ClipConfig
from emo_annotate.segment import NO_FACE, SEVERAL_FACES, find_clips

CFG = ClipConfig(min_frames=16, max_seconds=2.0)


def observations(counts, cut_at=(), jump_at=()):
    n = len(counts)
    boxes = np.tile(np.array([100, 100, 200, 200], np.float32), (n, 1))
    for t in jump_at:
        boxes[t:] += 300  # the face jumps elsewhere
    hists = np.zeros((n, 32), np.float32)
    hists[:, 5] = 1
    for t in cut_at:
        hists[t:] = 0
        hists[t:, 25] = 1  # a different shot from t on
    return np.array(counts), boxes, hists


def spans(counts, **kw):
    result, reason = find_clips(*observations(counts, **kw), fps=25.0, cfg=CFG)
    return [(s.start, s.stop) for s in result], reason


def test_one_continuous_face_is_one_clip():
    assert spans([1] * 40) == ([(0, 40)], None)


def test_long_tracks_split_evenly_under_max_length():
    result, _ = spans([1] * 120)  # 50 frames max at 25 fps x 2 s
    assert result == [(0, 40), (40, 80), (80, 120)]


def test_scene_cut_and_track_jump_end_clips():
    assert spans([1] * 40, cut_at=(20,))[0] == [(0, 20), (20, 40)]
    assert spans([1] * 40, jump_at=(22,))[0] == [(0, 22), (22, 40)]


def test_brief_false_second_face_is_tolerated_but_a_second_person_is_not():
    brief = [1] * 20 + [2] * 2 + [1] * 20
    assert spans(brief)[0] == [(0, 42)]
    second_person = [1] * 20 + [2] * 10 + [1] * 20
    assert spans(second_person)[0] == [(0, 20), (30, 50)]


def test_reasons_when_nothing_is_usable():
    assert spans([0] * 40) == ([], NO_FACE)
    assert spans([2] * 40) == ([], SEVERAL_FACES)
    assert spans([1] * 5)[1].startswith("too short")
    result, reason = spans([1] * 10 + [0] * 3 + [1] * 10)
    assert result == [] and "longest 10" in reason
