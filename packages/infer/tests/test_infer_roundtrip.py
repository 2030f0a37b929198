"""The generated video goes back through the annotator's chain (probe, audio, faces, clips)."""

from __future__ import annotations

from infer_media import FAST, FPS
from emo_annotate.config import AnnotateConfig
from emo_annotate.media import AUDIO_RATE, probe, read_audio
from emo_annotate.pipeline import STATUS_FAILED, Annotator
from emo_infer import generate


def test_generated_video_is_an_annotator_input(assets, tmp_path):
    out = generate(checkpoint=assets["checkpoint"], image=assets["image"], audio=assets["speech"],
                   out=tmp_path / "talking.mp4", speed=10.0, **FAST).out
    info = probe(out)
    assert (info.width, info.height) == (64, 64) and info.source_fps == FPS
    assert abs(info.duration_s - 3.0) <= 1 / FPS
    assert abs(len(read_audio(out)) / AUDIO_RATE - 3.0) <= 1 / FPS

    clips = []
    annotator = Annotator(AnnotateConfig(size=64))
    try:
        outcome = annotator.annotate(out, "generated", "talking.mp4", clips.append)
    finally:
        annotator.close()
    assert outcome.status != STATUS_FAILED, outcome.reason
    # A 2-step tiny random model draws no face, so the annotator skips the video for that reason;
    # a trained model's video yields clips with pose and speed like any talking-head video.
    assert outcome.status == "ok" or "face" in outcome.reason
    for clip in clips:
        assert {"pose.npy", "speed.npy", "mask.png"} <= set(clip)
