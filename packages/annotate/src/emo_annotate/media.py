"""Media I/O with PyAV (bundled FFmpeg): constant-fps frame streams, 16 kHz audio, clip encoding.

Frames are streamed one at a time; nothing here holds a whole video in memory.
"""

from __future__ import annotations

import io
import wave
from fractions import Fraction
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from .errors import MediaError

AUDIO_RATE = 16000


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    source_fps: float
    duration_s: float


def probe(path: Path) -> VideoInfo:
    """Read stream metadata; raises MediaError for anything that is not a decodable video."""
    try:
        if path.stat().st_size == 0:
            raise MediaError("empty file")
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError("no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or 0
            duration = _duration_s(container, stream)
            return VideoInfo(
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                source_fps=float(rate),
                duration_s=duration,
            )
    except MediaError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise MediaError(f"not a readable video ({_describe(err)})") from None


def _describe(err: Exception) -> str:
    """FFmpeg's own words without the file path (the index already names the file)."""
    return getattr(err, "strerror", None) or str(err).split(":")[0] or type(err).__name__


def _duration_s(container, stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def iter_frames(path: Path, fps: float, threads: int = 0) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield `(index, frame)` at a constant `fps`, dropping or repeating source frames.

    Output frame k is the source frame on screen at time k / fps (times counted from the first
    frame); a repeated frame is the same object again. Frames stay decoded-but-unconverted, so a
    caller pays for conversion (`to_rgb`, `to_yuv420`) only on frames it uses. `threads` = 0 lets
    FFmpeg pick; Ray workers pass 1 because each owns one CPU.
    """
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if threads == 1:
                stream.codec_context.thread_count = 1
            else:
                stream.thread_type = "AUTO"
            t0 = None
            k = 0
            pending = None  # (time, frame): the frame on screen until the next one arrives
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * frame.time_base)
                if t0 is None:
                    t0 = t
                t -= t0
                if pending is not None:
                    # every output time before this frame's time shows the pending frame
                    while k / fps < t - 1e-6:
                        yield k, pending[1]
                        k += 1
                pending = (t, frame)
            if pending is None:
                return
            # the last frame stays on screen for one source frame period
            period = 1.0 / float(stream.average_rate or fps)
            while k / fps < pending[0] + period - 1e-6:
                yield k, pending[1]
                k += 1
    except av.FFmpegError as err:
        raise MediaError(f"decoding failed ({_describe(err)})") from None


def to_rgb(frame: av.VideoFrame, max_side: int = 0) -> np.ndarray:
    """(h, w, 3) uint8; `max_side` > 0 downscales (with the colour conversion, in one swscale
    pass) so the long side is at most that."""
    w, h = frame.width, frame.height
    if max_side and max(w, h) > max_side:
        s = max_side / max(w, h)
        w, h = max(2, round(w * s)), max(2, round(h * s))
        return frame.reformat(width=w, height=h, format="rgb24", interpolation="FAST_BILINEAR").to_ndarray()
    return frame.to_ndarray(format="rgb24")


def to_yuv420(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U, V planes (h, w), (h/2, w/2), (h/2, w/2): no RGB round trip, no copy."""
    if frame.format.name != "yuv420p" or frame.width % 2 or frame.height % 2:
        frame = frame.reformat(width=frame.width // 2 * 2, height=frame.height // 2 * 2, format="yuv420p")
    return tuple(
        np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        for plane in frame.planes
    )


def read_audio(path: Path) -> np.ndarray:
    """The first audio stream as float32 mono at 16 kHz, aligned to the first video frame.

    Raises MediaError when there is no audio stream or it cannot be decoded.
    """
    return _decode_audio(path, AUDIO_RATE, "mono")[0][0]


def read_audio_track(path: Path) -> tuple[np.ndarray, int]:
    """The first audio stream as it is: float32 `(channels, n)` (1 or 2 channels; more are mixed
    down to stereo) at its own sample rate, aligned to the first video frame; and that rate."""
    return _decode_audio(path, None, None)


def resample_audio(audio: np.ndarray, rate: int, to_rate: int, layout: str) -> np.ndarray:
    """float32 `(channels, n)` at `rate` -> `(channels', n')` at `to_rate` in `layout` (mono, stereo)."""
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio, np.float32), format="fltp",
                                       layout="stereo" if audio.shape[0] == 2 else "mono")
    frame.sample_rate, frame.pts = rate, 0
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=to_rate)
    chunks = [out.to_ndarray() for out in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(chunks, axis=1).astype(np.float32)


def _decode_audio(path: Path, rate: int | None, layout: str | None) -> tuple[np.ndarray, int]:
    """`(channels, n)` float32 and its rate; `rate` / `layout` None keep the stream's own."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError("no audio track")
            video_start = _stream_start_s(container.streams.video[0]) if container.streams.video else 0.0
            stream = container.streams.audio[0]
            audio_start = _stream_start_s(stream)
            rate = rate or stream.codec_context.sample_rate or AUDIO_RATE
            layout = layout or ("stereo" if (stream.codec_context.channels or 1) >= 2 else "mono")
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            chunks = []
            for frame in container.decode(stream):
                chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    except av.FFmpegError as err:
        raise MediaError(f"audio decoding failed ({_describe(err)})") from None
    channels = 2 if layout == "stereo" else 1
    audio = np.concatenate(chunks, axis=1).astype(np.float32) if chunks else np.zeros((channels, 0), np.float32)
    if audio.shape[1] == 0:
        raise MediaError("audio track is empty")
    # put sample 0 at the first video frame's time
    offset = round((audio_start - video_start) * rate)
    if offset > 0:
        audio = np.concatenate([np.zeros((channels, offset), np.float32), audio], axis=1)
    elif offset < 0:
        audio = audio[:, -offset:]
    return audio, rate


def _stream_start_s(stream) -> float:
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def add_h264_stream(
    container, fps: float, width: int, height: int, crf: int, preset: str, threads: int = 0, x264_params: str | None = None
):
    """An H.264 yuv420p video stream on `container`; `threads` = 0 lets x264 choose; `x264_params`
    (`key=value:key=value`) overrides the preset's x264 settings."""
    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    stream.options = {
        "crf": str(crf), "preset": preset,
        **({"threads": str(threads)} if threads else {}),
        **({"x264-params": x264_params} if x264_params else {}),
    }
    return stream


class Mp4Writer:
    """Streams RGB frames into an in-memory H.264 (yuv420p) mp4."""

    def __init__(self, fps: float, width: int, height: int, crf: int, preset: str):
        self._buffer = io.BytesIO()
        self._container = av.open(self._buffer, mode="w", format="mp4")
        # one encoder thread: parallelism comes from Ray workers, not from each encoder
        self._stream = add_h264_stream(self._container, fps, width, height, crf, preset, threads=1)

    def add(self, rgb: np.ndarray) -> None:
        self._encode(av.VideoFrame.from_ndarray(rgb, format="rgb24"))

    def add_yuv420(self, planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Encode Y, U, V planes directly (no colour conversion); the side must be a multiple of 4."""
        y, u, v = planes
        h, w = y.shape
        i420 = np.concatenate([y, u.reshape(h // 4, w), v.reshape(h // 4, w)])
        self._encode(av.VideoFrame.from_ndarray(i420, format="yuv420p"))

    def _encode(self, frame: av.VideoFrame) -> None:
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def finish(self) -> bytes:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        return self._buffer.getvalue()


def encode_wav(audio: np.ndarray, rate: int = AUDIO_RATE) -> bytes:
    """16-bit PCM mono wav."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())
    return buffer.getvalue()


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Inverse of `encode_wav`: float32 samples and the sample rate."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        rate = wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32767.0, rate


def decode_mp4(data: bytes) -> list[np.ndarray]:
    """All frames of an in-memory video as RGB arrays (for clips, which are short)."""
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


class VideoWriter:
    """Streams RGB frames into an H.264 (yuv420p) video file, with optional audio (AAC).

    The video stream is created from the first frame's size; the audio (float32 `(n,)` mono or
    `(2, n)` stereo at `audio_rate`) is encoded when the writer closes. The container format
    follows the file name unless `container_format` is given; `x264_params` goes to the encoder
    (see `add_h264_stream`).
    """

    def __init__(
        self,
        path: Path,
        fps: float,
        audio: np.ndarray | None = None,
        audio_rate: int = AUDIO_RATE,
        crf: int = 18,
        preset: str = "veryfast",
        container_format: str | None = None,
        x264_params: str | None = None,
    ):
        self.fps = fps
        self.frames = 0
        self._container = av.open(str(path), mode="w", format=container_format)
        self._video = None
        self._audio = None if audio is None else np.atleast_2d(np.asarray(audio, np.float32))
        self._audio_stream = None
        if self._audio is not None:
            layout = "stereo" if self._audio.shape[0] == 2 else "mono"
            self._audio_stream = self._container.add_stream("aac", rate=audio_rate, layout=layout)
        self._audio_rate = audio_rate
        self._crf, self._preset, self._x264_params = crf, preset, x264_params

    def add(self, rgb: np.ndarray) -> None:
        """One (h, w, 3) uint8 frame (odd sides are cut to even)."""
        if self._video is None:
            h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
            self._video = add_h264_stream(
                self._container, self.fps, w, h, self._crf, self._preset, x264_params=self._x264_params
            )
        rgb = np.ascontiguousarray(rgb[: self._video.height, : self._video.width])
        self._container.mux(self._video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        self.frames += 1

    def close(self) -> None:
        """Flush the video, encode the audio and finish the file."""
        try:
            if self._video is not None:
                self._container.mux(self._video.encode())
            if self._audio_stream is not None:
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(np.clip(self._audio, -1.0, 1.0)), format="fltp", layout=self._audio_stream.layout.name
                )
                frame.sample_rate = self._audio_rate
                frame.pts = 0
                self._container.mux(self._audio_stream.encode(frame))
                self._container.mux(self._audio_stream.encode())
        finally:
            self._container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._container.close()


def write_video(path: Path, frames, fps: float, audio: np.ndarray | None = None, crf: int = 18) -> None:
    """Write RGB frames (H.264) and optional 16 kHz mono audio (AAC) to a video file."""
    with VideoWriter(path, fps, audio=audio, crf=crf) as writer:
        for rgb in frames:
            writer.add(rgb)
