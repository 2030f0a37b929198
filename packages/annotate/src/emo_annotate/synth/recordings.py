"""Recordings to speak: synthesised speech in several voices, Debian's espeak-ng where it is
installed, or any file FFmpeg decodes. All are float32 mono at 16 kHz.

Synthesised recordings are phrases of `samples.synth_speech` separated by silences (so that the
mouth closes between them) at phrase loudness varying by a few dB.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AnnotateError
from ..media import AUDIO_RATE, read_audio
from ..samples import synth_speech

# name: synth_speech voice (mean pitch Hz, tempo, formant scale)
VOICES = {
    "low": {"pitch": 95.0, "tempo": 0.9, "formant_shift": 0.95},
    "mid": {"pitch": 125.0, "tempo": 1.0, "formant_shift": 1.0},
    "high": {"pitch": 210.0, "tempo": 1.1, "formant_shift": 1.15},
    "quick": {"pitch": 150.0, "tempo": 1.3, "formant_shift": 1.05},
    "slow": {"pitch": 110.0, "tempo": 0.75, "formant_shift": 0.98},
}
ESPEAK_VOICES = ("en+m3", "en+f3", "en+m5", "en+f4")
WORDS = ("the cat sat on a warm mat while our old friend told stories about ships and rain "
         "people walked home early because the market closed before noon every day in summer "
         "music played softly near the open window as children laughed and birds sang loudly").split()


class RecordingError(AnnotateError):
    """A recording that cannot be made or read."""


@dataclass(frozen=True)
class Recording:
    name: str  # letters, digits and hyphens (file names are `<identity>_<recording>`)
    audio: np.ndarray = field(repr=False)  # (n,) float32 mono, 16 kHz
    description: dict = field(default_factory=dict)  # kind, seed, voice, source ...


def synth_recording(seconds: float, seed: int, voice: str) -> Recording:
    """Phrases of 1-3 s of synthesised speech separated by 0.25-0.8 s of silence."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * AUDIO_RATE))
    out = np.zeros(n, np.float32)
    t = int(rng.uniform(0.1, 0.4) * AUDIO_RATE)
    phrase = 0
    while t < n:
        length = int(rng.uniform(1.0, 3.0) * AUDIO_RATE)
        gain = 10 ** (rng.uniform(-4.0, 2.0) / 20)
        speech = synth_speech(length / AUDIO_RATE, seed=seed * 1000 + phrase, **VOICES[voice]) * gain
        end = min(n, t + len(speech))
        out[t:end] = speech[: end - t]
        t = end + int(rng.uniform(0.25, 0.8) * AUDIO_RATE)
        phrase += 1
    return Recording(f"synth{seed}-{voice}", np.clip(out, -1, 1),
                     {"kind": "synth_speech", "seed": seed, "voice": voice, **VOICES[voice]})


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def espeak_recording(seconds: float, seed: int, voice: str = "en+m3", words_per_minute: int = 160) -> Recording:
    """Sentences of random words spoken by espeak-ng, separated by 0.25-0.8 s of silence."""
    if not espeak_available():
        raise RecordingError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    rng = np.random.default_rng(seed)
    n = int(round(seconds * AUDIO_RATE))
    pieces, total, sentences = [], 0, []
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "sentence.wav"
        while total < n:
            sentence = " ".join(rng.choice(WORDS, size=int(rng.integers(5, 12))))
            pitch = int(rng.integers(35, 65))
            result = subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-p", str(pitch), "-w", str(wav), sentence],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise RecordingError(f"espeak-ng failed: {result.stderr.strip() or result.returncode}")
            speech = read_audio(wav)
            silence = np.zeros(int(rng.uniform(0.25, 0.8) * AUDIO_RATE), np.float32)
            pieces += [speech, silence]
            total += len(speech) + len(silence)
            sentences.append(sentence)
    audio = np.concatenate(pieces)[:n]
    name = f"espeak{seed}-{re.sub('[^A-Za-z0-9]+', '', voice)}"
    return Recording(name, audio, {"kind": "espeak-ng", "seed": seed, "voice": voice,
                                   "words_per_minute": words_per_minute, "text": sentences})


def file_recording(path: Path, name: str | None = None) -> Recording:
    """The first audio stream of any file FFmpeg decodes (MediaError if there is none)."""
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"no audio file at {path}")
    safe = re.sub("[^A-Za-z0-9]+", "-", name or path.stem).strip("-") or "audio"
    return Recording(safe, read_audio(path), {"kind": "file", "source": path.name})
