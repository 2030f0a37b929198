"""Audio features aligned to video frames.

- mel: log-mel spectrogram (transformers' numpy audio utils, no weights), `k` mel frames per
  video frame concatenated: `[T, k * n_mels]`.
- wav2vec2: all hidden states of a `transformers` Wav2Vec2Model (loaded with `from_pretrained`
  from a local path or hub id), linearly resampled from 50 Hz to the video rate:
  `[T, layers, dim]`.
Both are stored as float16.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .config import MelConfig, Wav2Vec2Config
from .media import AUDIO_RATE


class AudioFeaturizer(Protocol):
    kind: str

    def __call__(self, audio: np.ndarray, num_frames: int, fps: float) -> np.ndarray:
        """Features `[num_frames, ...]` for `audio` (float32 16 kHz) spanning those frames."""

    def describe(self) -> dict:
        """Settings recorded in each sample's metadata (the trainer and inference need them)."""


class MelFeaturizer:
    kind = "mel"

    def __init__(self, cfg: MelConfig):
        from transformers.audio_utils import mel_filter_bank, window_function

        self.cfg = cfg
        self._window = window_function(cfg.n_fft, "hann")
        self._filters = mel_filter_bank(
            num_frequency_bins=cfg.n_fft // 2 + 1,
            num_mel_filters=cfg.n_mels,
            min_frequency=0.0,
            max_frequency=AUDIO_RATE / 2,
            sampling_rate=AUDIO_RATE,
            norm="slaney",
            mel_scale="slaney",
        )

    def __call__(self, audio: np.ndarray, num_frames: int, fps: float) -> np.ndarray:
        from transformers.audio_utils import spectrogram

        k = self.cfg.frames_per_video_frame
        hop_exact = AUDIO_RATE / fps / k
        hop = max(1, int(round(hop_exact)))
        need = int(np.ceil(num_frames * k * hop_exact)) + self.cfg.n_fft
        audio = np.pad(audio, (0, max(0, need - len(audio))))
        mel = spectrogram(
            audio,
            self._window,
            frame_length=self.cfg.n_fft,
            hop_length=hop,
            power=2.0,
            mel_filters=self._filters,
            log_mel="log10",
        )  # (n_mels, frames)
        # the mel frame nearest to each exact sub-frame time (hop may be rounded)
        idx = np.minimum(np.round(np.arange(num_frames * k) * hop_exact / hop).astype(int), mel.shape[1] - 1)
        mel = mel[:, idx].T  # (T * k, n_mels)
        return mel.reshape(num_frames, k * self.cfg.n_mels).astype(np.float16)

    def describe(self) -> dict:
        return {"kind": "mel", "n_mels": self.cfg.n_mels, "n_fft": self.cfg.n_fft,
                "frames_per_video_frame": self.cfg.frames_per_video_frame, "log": "log10 power"}


class Wav2Vec2Featurizer:
    kind = "wav2vec2"

    def __init__(self, cfg: Wav2Vec2Config, device: str = "cpu"):
        import torch
        from transformers import AutoFeatureExtractor, Wav2Vec2Model

        self.cfg = cfg
        self.device = device
        self._torch = torch
        self._extractor = AutoFeatureExtractor.from_pretrained(cfg.model)
        self._model = Wav2Vec2Model.from_pretrained(cfg.model).to(device).eval()

    def __call__(self, audio: np.ndarray, num_frames: int, fps: float) -> np.ndarray:
        torch = self._torch
        need = int(round(num_frames / fps * AUDIO_RATE))
        audio = np.pad(audio[:need], (0, max(0, need - len(audio))))
        inputs = self._extractor(audio, sampling_rate=AUDIO_RATE, return_tensors="pt")
        with torch.inference_mode():
            out = self._model(inputs.input_values.to(self.device), output_hidden_states=True)
        hidden = torch.stack(out.hidden_states, dim=1)[0]  # (layers, n, dim) at ~50 Hz
        if self.cfg.layers is not None:
            hidden = hidden[list(self.cfg.layers)]
        # (layers, dim, n) -> (layers, dim, T): linear resampling to the video frame rate
        hidden = torch.nn.functional.interpolate(
            hidden.transpose(1, 2).float(), size=num_frames, mode="linear", align_corners=True
        )
        return hidden.permute(2, 0, 1).cpu().numpy().astype(np.float16)  # (T, layers, dim)

    def describe(self) -> dict:
        config = self._model.config
        layers = list(self.cfg.layers) if self.cfg.layers is not None else list(range(config.num_hidden_layers + 1))
        return {"kind": "wav2vec2", "model": self.cfg.model, "layers": layers, "dim": config.hidden_size}


def make_featurizer(kind: str, mel: MelConfig, wav2vec2: Wav2Vec2Config) -> AudioFeaturizer:
    if kind == "mel":
        return MelFeaturizer(mel)
    if kind == "wav2vec2":
        return Wav2Vec2Featurizer(wav2vec2)
    raise ValueError(f"unknown audio feature kind {kind!r}")
