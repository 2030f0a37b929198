"""Picture, sound and labels that agree, whatever the source file.

Every sync-test video (`emo_annotate.sync_media`: a flash and a click at the same instants, in each
way real footage is encoded) and every label-problem video goes through the real annotator; the
assertions are on the stored clips: the flash frame and the click within one frame, colours as
the source had them, upright square pixels, and a reason for each clip edge and dropped stretch.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from emo_annotate.config import AnnotateConfig
from emo_annotate.media import decode_mp4, decode_wav
from emo_annotate.pipeline import Annotator
from emo_annotate.segment import FROZEN, JUMP_CUT, LOW_PICTURE_RATE, NO_AUDIO, SPLIT_SMALL_FACE
from emo_annotate.sync_media import (
    AUDIO_HOLE_S, AUDIO_LATE_S, CONDITIONS, FLASH_SECONDS, FROZEN_SPAN, JUMP_AT, PROBLEMS, SYNC_TIMES,
    make_label_video, make_sync_video,
)
from emo_annotate.verify import check_sample

CFG = AnnotateConfig(size=160)


@pytest.fixture(scope="module")
def annotator():
    annotator = Annotator(CFG)
    yield annotator
    annotator.close()


def annotate(annotator, path) -> tuple[object, list[dict]]:
    samples: list[dict] = []
    outcome = annotator.annotate(path, path.stem.replace("_", "-"), path.name, samples.append)
    return outcome, samples


@pytest.fixture(scope="module")
def synced(tmp_path_factory, annotator) -> dict:
    """{condition: (SyncVideo, outcome, samples)} for every condition."""
    d = tmp_path_factory.mktemp("sync")
    out = {}
    for condition in CONDITIONS:
        video = make_sync_video(d, condition)
        out[condition] = (video, *annotate(annotator, video.path))
    return out


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, annotator) -> dict:
    d = tmp_path_factory.mktemp("labels")
    out = {}
    for problem in PROBLEMS:
        video = make_label_video(d, problem)
        out[problem] = (video, *annotate(annotator, video.path))
    return out


def meta(sample: dict) -> dict:
    return json.loads(sample["json"])


def to_clip(box, m: dict) -> tuple[int, int, int, int]:
    """A display-pixel box of the source in the stored crop's pixels."""
    x0, y0, x1, _ = m["crop_box_source_px"]
    s = m["size"] / (x1 - x0)
    return tuple(int(round(v)) for v in ((box[0] - x0) * s, (box[1] - y0) * s, (box[2] - x0) * s, (box[3] - y0) * s))


def centre_mean(frame: np.ndarray, box) -> np.ndarray:
    """Mean RGB of the middle of a box (away from its edges, which chroma subsampling blurs)."""
    cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
    return frame[cy - 2 : cy + 3, cx - 2 : cx + 3].reshape(-1, 3).mean(axis=0)


def flash_onsets(frames: list[np.ndarray], box) -> list[int]:
    lit = [centre_mean(f, box).mean() > 128 for f in frames]
    return [k for k, on in enumerate(lit) if on and (k == 0 or not lit[k - 1])]


def click_onsets(wav: bytes) -> list[float]:
    audio, rate = decode_wav(wav)
    loud = np.abs(audio) > 0.3
    starts = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
    return [s / rate for i, s in enumerate(starts) if i == 0 or s - starts[i - 1] > 0.1 * rate]


# -- one clock ------------------------------------------------------------------------------------
@pytest.mark.parametrize("condition", CONDITIONS)
def test_flash_frame_and_click_agree_within_one_frame(synced, condition):
    video, outcome, samples = synced[condition]
    assert outcome.status == "ok" and samples, outcome
    seen = 0
    for sample in samples:
        m = meta(sample)
        start, end = m["source_span_s"]
        expected = [t - start for t in video.sync_times if start <= t and t + FLASH_SECONDS <= end]
        flashes = [k / m["fps"] for k in flash_onsets(decode_mp4(sample["mp4"]), to_clip(video.flash_box, m))]
        clicks = click_onsets(sample["wav"])
        assert len(flashes) == len(clicks) == len(expected), (m["key"], flashes, clicks, expected)
        for flash, click, truth in zip(flashes, clicks, expected):
            assert abs(flash - click) <= 1 / m["fps"], (m["key"], flash, click)
            assert abs(click - truth) <= 0.01 and -1e-6 <= flash - truth < 1 / m["fps"]
        seen += len(expected)
        assert check_sample(m["key"], {k: v for k, v in sample.items() if k != "__key__"})[0] == []
    assert seen >= 2  # the clips hold several sync instants


def test_audio_before_the_first_decodable_frame_is_not_heard_late(synced):
    """The cut TS: sound packets start before the first keyframe; the clock starts at the keyframe."""
    video, _, samples = synced["ts_cut_mid_gop"]
    assert meta(samples[0])["source_clock_zero_s"] > 0.5 and meta(samples[0])["source_span_s"][0] == 0.0
    assert all(meta(s)["quality"]["audio_coverage"] == 1.0 for s in samples)


def test_late_sound_and_holes_end_clips_and_coverage_counts_real_samples(synced):
    _, _, late = synced["audio_late"]
    first = meta(late[0])
    assert first["source_span_s"][0] >= AUDIO_LATE_S and first["edges"]["start"] == NO_AUDIO
    _, _, holed = synced["audio_hole"]
    for sample in holed:
        start, end = meta(sample)["source_span_s"]
        assert end <= AUDIO_HOLE_S[0] + 0.04 or start >= AUDIO_HOLE_S[1] - 0.04, (start, end)
    assert NO_AUDIO in {e for s in holed for e in meta(s)["edges"].values()}
    for _, _, samples in (synced["audio_late"], synced["audio_hole"]):
        assert all(meta(s)["quality"]["audio_coverage"] >= CFG.clip.min_audio_coverage for s in samples)


# -- the picture as the viewer sees it ------------------------------------------------------------
@pytest.mark.parametrize("condition", ["plain", "full_range", "bt709", "rotated_90", "anamorphic"])
def test_colours_and_geometry_survive_into_the_stored_clip(synced, condition):
    """Grey levels 2/14/241/251 (clipped to 0/255 when full range is stored untagged) and saturated
    colours (off by ~12 levels when BT.709 is read as BT.601), at the positions of an upright,
    square-pixel picture. Two lossy encodes and a resize lie between source and clip: a few
    levels of slack, not the 14 of a range or matrix mistake."""
    video, _, samples = synced[condition]
    for sample in samples:
        m = meta(sample)
        frame = decode_mp4(sample["mp4"])[m["frames"] // 2]
        for level, box in video.grey_boxes.items():
            got = centre_mean(frame, to_clip(box, m))
            assert abs(got.mean() - level) <= 5 and np.abs(got - level).max() <= 8, (level, got)
        for rgb, box in video.colour_boxes.items():
            got = centre_mean(frame, to_clip(box, m))
            assert np.abs(got - np.array(rgb)).max() <= 8, (rgb, got)
        assert m["colour"]["matrix"] == "bt709" and m["colour"]["range"] == "limited"


def test_source_picture_facts_are_recorded(synced):
    picture = {c: meta(synced[c][2][0])["source_picture"] for c in ("rotated_90", "anamorphic", "full_range", "bt709")}
    assert picture["rotated_90"]["rotation_applied"] == 270 and meta(synced["rotated_90"][2][0])["source_size"] == [384, 512]
    assert picture["anamorphic"]["sample_aspect_ratio"] == [4, 3] and meta(synced["anamorphic"][2][0])["source_size"] == [512, 384]
    assert picture["full_range"]["colour"] == {"matrix": "bt601", "range": "full", "guessed": False}
    assert picture["bt709"]["colour"] == {"matrix": "bt709", "range": "limited", "guessed": False}


def test_anamorphic_square_stays_square(synced):
    video, _, samples = synced["anamorphic"]
    m = meta(samples[0])
    frames = decode_mp4(samples[0]["mp4"])
    box = to_clip(video.flash_box, m)
    lit = frames[flash_onsets(frames, box)[0]].mean(axis=2) > 128
    cx, cy, side = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2, box[2] - box[0]
    near = slice(cx - side, cx + side), slice(cy - side, cy + side)  # the square and its dark surround
    width, height = lit[cy, near[0]].sum(), lit[near[1], cx].sum()
    assert abs(width / height - 1.0) < 0.15, (width, height)  # squeezed by 3/4 when the aspect is ignored


# -- labels that describe the clip ----------------------------------------------------------------
def test_jump_cut_with_the_same_framing_ends_the_clip(labelled):
    _, outcome, samples = labelled["jump_cut"]
    cut = round(JUMP_AT * CFG.fps)
    edges = [(meta(s)["source_frames"], meta(s)["edges"]) for s in samples]
    assert any(abs(frames[1] - cut) <= 1 and e["end"] == JUMP_CUT for frames, e in edges), edges
    assert all(not (frames[0] < cut - 1 and frames[1] > cut + 1) for frames, _ in edges)


def test_frozen_stretch_is_dropped_with_its_reason(labelled):
    _, outcome, samples = labelled["frozen"]
    a, b = (round(t * CFG.fps) for t in FROZEN_SPAN)
    [dropped] = [d for d in outcome.dropped if d.reason.startswith(FROZEN)]
    assert abs(dropped.start - a) <= 1 and abs(dropped.stop - b) <= 1
    for sample in samples:
        start, stop = meta(sample)["source_frames"]
        assert stop <= a + 1 or start >= b - 1


def test_low_fps_source_is_dropped_with_its_reason(labelled):
    _, outcome, samples = labelled["low_fps"]
    assert samples == [] and outcome.status == "skipped"
    assert outcome.dropped and all(d.reason.startswith(LOW_PICTURE_RATE) for d in outcome.dropped)


def test_face_moving_across_is_split_until_it_fills_its_crop(labelled):
    _, outcome, samples = labelled["face_moves_across"]
    assert samples and all(meta(s)["quality"]["face_fraction"] >= CFG.clip.min_face_fraction for s in samples)
    assert SPLIT_SMALL_FACE in {e for s in samples for e in meta(s)["edges"].values()}


def test_every_label_video_still_syncs(labelled):
    """The label problems come with sound: clips on each side of a cut or freeze stay in sync."""
    for problem in ("jump_cut", "frozen"):
        _, _, samples = labelled[problem]
        for sample in samples:
            clicks = click_onsets(sample["wav"])
            start = meta(sample)["source_span_s"][0]
            assert clicks and all(min(abs(c + start - t) for t in SYNC_TIMES) < 0.01 for c in clicks)

