"""Media helpers of the inference tests (a uniquely named module: every package's tests share one pytest run)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from emo_annotate.media import AUDIO_RATE, write_video

FPS = 25.0
SECONDS = 3.0  # 75 frames: 7 clips of 12
FAST = dict(steps=2, progress=False)  # few DDIM steps: the tests check the plumbing, not the quality


def write_audio(path: Path, audio: np.ndarray, codec: str, rate: int = AUDIO_RATE, stereo: bool = False) -> Path:
    """Encode mono 16 kHz float audio with PyAV's FFmpeg (resampled to `rate`, optionally stereo)."""
    layout = "stereo" if stereo else "mono"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate, frame.pts = AUDIO_RATE, 0
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=rate)
        for part in [*resampler.resample(frame), *resampler.resample(None)]:
            container.mux(stream.encode(part))
        container.mux(stream.encode())
    return path


def decode(path: Path) -> tuple[list[np.ndarray], dict]:
    """All frames of a video and facts of its streams."""
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        facts = {
            "codec": video.codec_context.name, "audio_codec": audio.codec_context.name,
            "fps": float(video.average_rate), "width": video.width, "height": video.height,
            "audio_rate": audio.codec_context.sample_rate, "audio_channels": audio.codec_context.channels,
        }
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return frames, facts


def write_talking_video(path: Path, audio: np.ndarray) -> Path:
    """A video file whose sound track drives the generation (audio from a video container)."""
    frames = [np.full((64, 64, 3), 90, np.uint8)] * int(len(audio) / AUDIO_RATE * FPS)
    write_video(path, frames, FPS, audio=audio)
    return path
