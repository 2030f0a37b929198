"""Talking-head videos with known ground truth, rendered from a real photo and a recording.

The mouth opens with the recording's loudness (`mouth`, `loudness`), the head turns along a
speed profile that the annotator's own speed definition measures exactly (`motion`, `head`);
`render` writes the mp4 with sound and a JSON of the per-frame truth, `dataset` builds a set of
identities x recordings split into training and held-out recordings, and `measure` compares what
the real annotator measures on a rendering with its truth. CLI: `emo-annotate synth`.
"""

from .dataset import SetOptions, build_set, render_one
from .identities import BUILTIN, DEFAULT_IDENTITIES, Identity, load_identity
from .measure import agreement, annotate_rendering
from .recordings import Recording, espeak_available, espeak_recording, file_recording, synth_recording
from .render import SynthConfig, TalkingHead, load_truth, render_video

__all__ = [
    "BUILTIN", "DEFAULT_IDENTITIES", "Identity", "Recording", "SetOptions", "SynthConfig", "TalkingHead", "agreement",
    "annotate_rendering", "build_set",
    "espeak_available", "espeak_recording", "file_recording", "load_identity", "load_truth", "render_one",
    "render_video", "synth_recording",
]
