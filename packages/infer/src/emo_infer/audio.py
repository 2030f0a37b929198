"""The driving audio: decoded once as it is (the output's sound track) and resampled to 16 kHz
mono for the features, which are made exactly as the checkpoint's training data was."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InferError

# sample rates the AAC encoder takes; other inputs are resampled to 48 kHz for the output
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)

# wav2vec2 features are computed over windows no longer than the annotator's clips (its
# ClipConfig.max_seconds): its context then matches what the model saw in training
FEATURE_WINDOW_SECONDS = 10.0


@dataclass(frozen=True)
class DrivingAudio:
    samples: np.ndarray  # (n,) float32 mono at 16 kHz: the features' input
    track: np.ndarray  # (channels, n') float32 at `track_rate`: the output's sound
    track_rate: int
    num_frames: int  # output frames: the audio's duration at the model's fps, rounded

    @property
    def seconds(self) -> float:
        return self.track.shape[1] / self.track_rate


def load_audio(path: Path, fps: float) -> DrivingAudio:
    from emo_annotate.errors import MediaError
    from emo_annotate.media import AUDIO_RATE, read_audio_track, resample_audio

    if not path.is_file():
        raise InferError(f"--audio: no such file: {path}")
    try:
        track, rate = read_audio_track(path)
    except MediaError as err:
        raise InferError(f"--audio: cannot use {path}: {err}") from None
    layout = "stereo" if track.shape[0] == 2 else "mono"
    samples = resample_audio(track, rate, AUDIO_RATE, "mono")[0]
    if rate not in AAC_RATES:
        track, rate = resample_audio(track, rate, 48000, layout), 48000
    num_frames = max(1, round(track.shape[1] / rate * fps))
    return DrivingAudio(samples, track, rate, num_frames)


def make_featurizer(settings: dict[str, Any], audio_encoder: str | None = None, device: str = "cpu"):
    """The annotator's featurizer with the settings a checkpoint recorded (`annotation.json`)."""
    from emo_annotate.audio_features import MelFeaturizer, Wav2Vec2Featurizer
    from emo_annotate.config import MelConfig, Wav2Vec2Config

    kind = settings.get("kind")
    if kind == "mel":
        return MelFeaturizer(
            MelConfig(n_mels=settings["n_mels"], n_fft=settings["n_fft"], frames_per_video_frame=settings["frames_per_video_frame"])
        )
    if kind == "wav2vec2":
        model = audio_encoder or settings["model"]
        try:
            featurizer = Wav2Vec2Featurizer(Wav2Vec2Config(model=model, layers=tuple(settings["layers"])), device=device)
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InferError(f"cannot load the wav2vec2 audio encoder {model!r} (pass --audio-encoder): {first}") from None
        recorded = tuple(settings.get("shape", ()))
        produced = (len(settings["layers"]), featurizer.describe()["dim"])
        if recorded and recorded != produced:
            raise InferError(f"--audio-encoder {model!r} gives features {produced}, the model was trained on {recorded}")
        return featurizer
    raise InferError(f"the checkpoint records audio features of unknown kind {kind!r}")


def audio_features(featurizer, samples: np.ndarray, num_frames: int, fps: float) -> np.ndarray:
    """`[num_frames, *feature_shape]` float16 (as stored in the shards) for the 16 kHz `samples`.

    wav2vec2 runs over near-equal pieces of at most FEATURE_WINDOW_SECONDS, split as the annotator
    splits long face tracks into clips (its context and normalisation then span what they spanned
    in training); mel is local and runs once.
    """
    from emo_annotate.media import AUDIO_RATE
    from emo_annotate.segment import Span, split_span

    def piece(span: Span) -> np.ndarray:
        a0, a1 = round(span.start / fps * AUDIO_RATE), round(span.stop / fps * AUDIO_RATE)
        part = samples[a0:a1]
        return featurizer(np.pad(part, (0, max(0, (a1 - a0) - len(part)))), len(span), fps)

    whole = Span(0, num_frames)
    if featurizer.kind == "mel":
        return piece(whole)
    window = max(1, int(FEATURE_WINDOW_SECONDS * fps))
    return np.concatenate([piece(span) for span in split_span(whole, window)])
