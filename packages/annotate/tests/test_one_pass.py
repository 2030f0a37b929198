"""The one-pass annotator: what it keeps while a video goes by, and where it runs the face detector.

Real media through the real annotator: a second real face walking into a talking head, a long
recording against a short one (memory), audio spilled to disk against audio in memory.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from emo_annotate import samples
from emo_annotate.config import AnnotateConfig, ClipConfig
from emo_annotate.layout import OutputLayout
from emo_annotate.media import decode_audio, decode_audio_spilled, write_video
from emo_annotate.pipeline import Annotator
from emo_annotate.segment import SEVERAL_FACES, ClipCutter
from emo_annotate.sync_media import make_sync_video

FPS = 25.0
SECOND_FACE = (40, 70)  # frames during which a second person is in the picture


@pytest.fixture(scope="module")
def second_face_video(tmp_path_factory) -> Path:
    """The swaying astronaut on the left; her mirror image, a second real face, on the right for
    frames 40-69; speech throughout."""
    n = 110
    grey = np.full((512, 320, 3), 128, np.uint8)
    frames = []
    for k, frame in enumerate(samples.rotated_astronaut_frames(samples.roll_trajectory(n, FPS, amplitude=8.0))):
        face = frame[:, 80:400]
        right = np.ascontiguousarray(face[:, ::-1]) if SECOND_FACE[0] <= k < SECOND_FACE[1] else grey
        frames.append(np.concatenate([face, right], axis=1))
    path = tmp_path_factory.mktemp("second_face") / "second_face.mp4"
    write_video(path, frames, FPS, audio=samples.synth_speech(n / FPS, seed=3))
    return path


def annotate(cfg: AnnotateConfig, path: Path) -> tuple[object, list[dict], Annotator]:
    annotator = Annotator(cfg)
    out: list[dict] = []
    try:
        outcome = annotator.annotate(path, "v", path.name, out.append)
    finally:
        annotator.close()
    return outcome, [json.loads(s["json"]) for s in out], annotator


def test_detector_on_few_frames_still_keeps_a_second_face_out_of_every_clip(second_face_video):
    """Detector on every frame vs on one in four inside steady stretches: the same clips, and
    none takes a frame on which the second face is visible."""
    cfg = AnnotateConfig(size=128)
    results = {}
    for every in (1, 4):
        outcome, metas, annotator = annotate(AnnotateConfig(size=128, detect_every=every), second_face_video)
        assert outcome.status == "ok", outcome
        results[every] = [(m["source_frames"], m["edges"]) for m in metas]
        for m in metas:
            start, stop = m["source_frames"]
            assert stop <= SECOND_FACE[0] or start >= SECOND_FACE[1], m["source_frames"]
        checks = annotator.tracker.checks / annotator.tracker.frames
        if every == 1:
            assert checks == 1.0
        else:
            assert checks < 0.6, checks  # the saving
    assert results[1] == results[4]
    edges = {e for _, edges in results[4] for e in edges.values()}
    assert SEVERAL_FACES in edges and len(results[4]) == 2
    assert cfg.detect_every == 4  # the default is the gated one


@pytest.fixture(scope="module")
def talking_heads(tmp_path_factory) -> dict[int, Path]:
    """The real carphone talking head played back and forth for 4 s and for 16 s."""
    import av

    with av.open(str(samples.carphone_path())) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    cycle = frames + frames[::-1]
    d = tmp_path_factory.mktemp("long")
    out = {}
    for seconds in (4, 16):
        n = int(seconds * FPS)
        out[seconds] = d / f"talk_{seconds}s.mp4"
        write_video(out[seconds], (cycle[i % len(cycle)] for i in range(n)), FPS, audio=samples.synth_speech(seconds, seed=seconds))
    return out


def test_memory_does_not_grow_with_the_length_of_the_video(talking_heads):
    """Four times the video, the same memory: the annotator keeps pixels and landmarks only for
    the frames the clip being built may take (at most max_seconds plus min_frames plus the
    segmenter's look-ahead), and reads the spilled audio back clip by clip."""
    cfg = AnnotateConfig(size=64, clip=ClipConfig(max_seconds=1.0))
    cutter = ClipCutter(FPS, cfg.clip)
    bound = cutter.max_frames + cfg.clip.min_frames + 1 + cutter.lookahead + ClipCutter.BATCH + cfg.detect_every
    peaks, kept, clips = {}, {}, {}
    for seconds, path in talking_heads.items():
        annotator = Annotator(cfg)
        tracemalloc.start()
        out: list[dict] = []
        try:
            outcome = annotator.annotate(path, "v", path.name, lambda s: out.append(len(s["mp4"])))
            peaks[seconds] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            annotator.close()
        assert outcome.status == "ok"
        kept[seconds], clips[seconds] = annotator.peak_kept_frames, outcome.clips
    assert clips[16] >= 3 * clips[4] >= 9  # the long video really went through
    assert max(kept.values()) <= bound, (kept, bound)
    # what the two-pass annotator kept for 12 s more: 300 frames of landmarks (1.7 MB) and 12 s of audio (0.8 MB)
    assert peaks[16] < peaks[4] + 1_000_000, peaks


@pytest.mark.parametrize("condition", ["audio_hole", "ts_cut_mid_gop"])
def test_spilled_audio_is_the_audio_in_memory(condition, tmp_path):
    video = make_sync_video(tmp_path, condition)
    start = decode_audio(video.path, 16000, "mono")
    with decode_audio_spilled(video.path) as spilled:
        assert spilled.covered == start.covered and spilled.length == start.samples.shape[1]
        for a, b in [(0, 1000), (-500, 700), (20000, 31000), (spilled.length - 300, spilled.length + 900)]:
            np.testing.assert_array_equal(spilled.read(a, b), start.read(a, b))
        np.testing.assert_array_equal(spilled.frame_coverage(110, FPS), start.frame_coverage(110, FPS))
        np.testing.assert_array_equal(spilled.frame_coverage(7, FPS, first=30), start.frame_coverage(110, FPS)[30:37])


def test_clearing_a_unit_removes_its_files_only(tmp_path):
    """Redoing a unit removes its committed parts, index part and temporary folder by name,
    without listing the shared folders (their size must not slow every unit down)."""
    layout = OutputLayout(tmp_path / "out")
    layout.create()
    for unit, parts in ((7, (0, 1, 3)), (8, (0,))):  # part 2 of unit 7 lost: one gap is searched past
        for part in parts:
            name = layout.shard_name(unit, part)
            layout.shard_path(name).write_bytes(b"tar")
            layout.stats_path(name).write_text("{}")
        layout.unit_path(unit).write_bytes(b"parquet")
    layout.mark_in_flight(7, 2)
    assert layout.in_flight(7) == 2
    layout.clear_unit(7)
    left = sorted(p.relative_to(layout.root).as_posix() for p in layout.root.rglob("*") if p.is_file())
    assert left == ["shards/00008-000.tar", "stats/00008-000.json", "units/00008.parquet"]
    assert layout.in_flight(7) is None


@pytest.mark.parametrize("preset, cabac", [("veryfast", b"cabac=1"), ("ultrafast", b"cabac=0")])
def test_stored_clips_are_encoded_with_the_configured_x264_preset(preset, cabac, tmp_path):
    """x264 writes its settings into the stream (an SEI message): ultrafast is the preset
    without CABAC."""
    video = samples.make_astronaut_video(tmp_path / "astronaut.mp4", samples.roll_trajectory(8, FPS, amplitude=5.0), FPS)
    out: list[dict] = []
    outcome = Annotator(AnnotateConfig(size=128, x264_preset=preset, clip=ClipConfig(min_frames=4))).annotate(
        video, "v", video.name, out.append)
    assert outcome.status == "ok" and out, outcome
    assert cabac in out[0]["mp4"]
