"""The generated video goes back through the annotator's chain: probe, audio, face detection on
every frame, clip finding. A tiny model trained for two steps draws no face, so the annotator
skips the video for exactly that reason; with a trained model the same call yields clips with
pose and speed (the annotator's own tests cover those on real faces)."""

from __future__ import annotations

from infer_media import FAST, FPS
from emo_annotate.config import AnnotateConfig
from emo_annotate.media import AUDIO_RATE, probe, read_audio
from emo_annotate.pipeline import STATUS_SKIPPED, Annotator
from emo_annotate.segment import NO_FACE
from emo_infer import generate


def test_generated_video_is_an_annotator_input(assets, tmp_path):
    out = generate(checkpoint=assets["checkpoint"], image=assets["image"], audio=assets["speech"],
                   out=tmp_path / "talking.mp4", speed=10.0, **FAST).out
    info = probe(out)
    assert (info.width, info.height) == (64, 64) and info.source_fps == FPS
    assert abs(info.duration_s - 3.0) <= 1 / FPS
    assert abs(len(read_audio(out)) / AUDIO_RATE - 3.0) <= 1 / FPS

    annotator = Annotator(AnnotateConfig(size=64))
    try:
        outcome = annotator.annotate(out, "generated", "talking.mp4", lambda sample: None)
    finally:
        annotator.close()
    assert (outcome.status, outcome.reason) == (STATUS_SKIPPED, NO_FACE)  # read and searched, not failed
