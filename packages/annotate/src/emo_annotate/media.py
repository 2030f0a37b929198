"""Media I/O with PyAV (bundled FFmpeg): constant-fps frame streams, 16 kHz audio, clip encoding.

Frames are streamed one at a time; nothing here holds a whole video in memory. PyAV leaves three
things to its caller, all handled here: frames are decoded sideways unless the display matrix is
applied (`Picture.rotation`), anamorphic sources need their pixel aspect (`Picture.sample_aspect`),
and YUV -> RGB needs the source's own matrix and range (`frame_colour`; untagged FFmpeg assumes
BT.601 limited). Audio chunks are placed by their own timestamps on the clock of the video frames
(`decode_audio`). Everything written is BT.709 limited range, tagged (`STORED_COLOUR`).
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import wave
from fractions import Fraction
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from .errors import MediaError

AUDIO_RATE = 16000


# -- colour ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Colour:
    """How Y'CbCr samples map to RGB: the matrix and whether the samples use the full 0-255 range
    (JPEG/"pc") or the limited 16-235/16-240 range (MPEG/"tv")."""

    matrix: str  # "bt601" | "bt709" | "bt2020" | "smpte240m" | "fcc"
    full_range: bool

    def describe(self) -> dict:
        return {"matrix": self.matrix, "range": "full" if self.full_range else "limited"}


# Every clip the annotator stores and every video this project writes: BT.709 matrix, primaries and
# transfer, limited range, tagged in the H.264 stream (VUI) and the container.
STORED_COLOUR = Colour("bt709", full_range=False)
STORED_COLOUR_TAGS = {"colorspace": 1, "color_range": 1, "color_primaries": 1, "color_trc": 1}  # AVCOL_*: BT709, MPEG

# FFmpeg's AVColorSpace values -> our matrix names; swscale's names of those matrices
_MATRIX_OF_AVCOL = {1: "bt709", 4: "fcc", 5: "bt601", 6: "bt601", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}
_SWS_MATRIX = {"bt709": "ITU709", "bt601": "ITU601", "bt2020": "BT2020", "smpte240m": "SMPTE240M", "fcc": "FCC"}
_AVCOL_RANGE_JPEG = 2
_ACCURATE = Interpolation.BILINEAR | Interpolation.ACCURATE_RND


def frame_colour(frame: av.VideoFrame) -> tuple[Colour, bool]:
    """The colour of a decoded frame from its tags, and whether it had to be guessed.

    Untagged matrices are guessed as players do (mpv, browsers): BT.709 for HD pictures (wider
    than 1024 or taller than 576 pixels), BT.601 below. Untagged range is limited, except for the
    `yuvj*` pixel formats, which are full range by definition.
    """
    matrix = _MATRIX_OF_AVCOL.get(frame.colorspace)
    guessed = matrix is None
    if guessed:
        matrix = "bt709" if frame.width > 1024 or frame.height > 576 else "bt601"
    full = frame.color_range == _AVCOL_RANGE_JPEG or frame.format.name.startswith("yuvj")
    return Colour(matrix, full), guessed


def _sws_source(colour: Colour) -> dict:
    return {"src_colorspace": _SWS_MATRIX[colour.matrix], "src_color_range": "JPEG" if colour.full_range else "MPEG"}


def _sws_stored() -> dict:
    return {"dst_colorspace": _SWS_MATRIX[STORED_COLOUR.matrix], "dst_color_range": "JPEG" if STORED_COLOUR.full_range else "MPEG"}


_local = threading.local()


def _reformat(frame: av.VideoFrame, **options) -> av.VideoFrame:
    """`frame.reformat(**options)` through one reformatter per thread: it keeps its swscale context
    from frame to frame (PyAV's `frame.reformat` builds and frees one for every frame, which costs
    more than the conversion itself)."""
    reformatter = getattr(_local, "reformatter", None)
    if reformatter is None:
        reformatter = _local.reformatter = VideoReformatter()
    return reformatter.reformat(frame, **options)


def tag_stored_colour(frame: av.VideoFrame) -> av.VideoFrame:
    for name, value in STORED_COLOUR_TAGS.items():
        setattr(frame, name, value)
    return frame


def rgb_to_stored_frame(rgb: np.ndarray) -> av.VideoFrame:
    """(h, w, 3) uint8 RGB (even sides) -> a yuv420p frame in the stored colour, tagged."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return tag_stored_colour(_reformat(frame, format="yuv420p", interpolation=_ACCURATE, **_sws_stored()))


def convert_yuv420(planes: tuple[np.ndarray, np.ndarray, np.ndarray], source: Colour) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, U, V planes in `source` colour -> the same picture in STORED_COLOUR (a copy only when the
    colours differ; swscale with accurate rounding: within 3 levels of an exact RGB round trip)."""
    if source == STORED_COLOUR:
        return planes
    y, u, v = planes
    h, w = y.shape
    frame = av.VideoFrame.from_ndarray(np.concatenate([y, u.reshape(h // 4, w), v.reshape(h // 4, w)]), format="yuv420p")
    out = _reformat(frame, format="yuv420p", interpolation=_ACCURATE, threads=1, **_sws_source(source), **_sws_stored())
    return _planes(out)


# -- geometry and metadata of a source ------------------------------------------------------------
@dataclass(frozen=True)
class Picture:
    """How a source's decoded frames become what a viewer sees: turned upright by the display
    matrix, stretched to square pixels, decoded with the source's own colour matrix and range.

    "Display pixels" (what `width`/`height`, face boxes, landmarks and crop boxes use) are the
    square pixels of the upright picture.
    """

    coded_width: int
    coded_height: int
    rotation: int = 0  # degrees counter-clockwise that turn the decoded frame upright: 0, 90, 180, 270
    sample_aspect: Fraction = Fraction(1)  # width / height of one coded pixel
    colour: Colour = STORED_COLOUR
    colour_guessed: bool = False

    @property
    def unrotated_size(self) -> tuple[int, int]:
        """(w, h) in square pixels before rotation."""
        return max(2, round(self.coded_width * self.sample_aspect)), self.coded_height

    @property
    def width(self) -> int:
        w, h = self.unrotated_size
        return h if self.rotation % 180 else w

    @property
    def height(self) -> int:
        w, h = self.unrotated_size
        return w if self.rotation % 180 else h

    @classmethod
    def of_frame(cls, frame: av.VideoFrame, sample_aspect: Fraction | None = None) -> "Picture":
        colour, guessed = frame_colour(frame)
        rotation = int(round((frame.rotation or 0) / 90.0)) * 90 % 360  # other angles: nearest quarter turn
        sar = sample_aspect if sample_aspect and sample_aspect > 0 else Fraction(1)
        return cls(frame.width, frame.height, rotation, sar, colour, guessed)

    def describe(self) -> dict:
        return {
            "rotation_applied": self.rotation,
            "sample_aspect_ratio": [self.sample_aspect.numerator, self.sample_aspect.denominator],
            "coded_size": [self.coded_width, self.coded_height],
            "colour": {**self.colour.describe(), "guessed": self.colour_guessed},
        }


@dataclass(frozen=True)
class VideoInfo:
    width: int  # display pixels: upright, square pixels
    height: int
    source_fps: float
    duration_s: float
    start_s: float = 0.0  # time of the first decodable frame: zero of the clock frames and audio share
    picture: Picture | None = None


def probe(path: Path) -> VideoInfo:
    """Read stream metadata and the first decodable frame (its time starts the clock that frames
    and audio share, and it carries the rotation and colour tags); raises MediaError for anything
    that is not a decodable video."""
    try:
        if path.stat().st_size == 0:
            raise MediaError("empty file")
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError("no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or 0
            duration = _duration_s(container, stream)
            first = _first_frame(container, stream)
            if first is None:
                raise MediaError("no decodable video frame")
            picture = Picture.of_frame(first, stream.sample_aspect_ratio)
            return VideoInfo(
                width=picture.width,
                height=picture.height,
                source_fps=float(rate),
                duration_s=duration,
                start_s=float(first.pts * first.time_base),
                picture=picture,
            )
    except MediaError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise MediaError(f"not a readable video ({_describe(err)})") from None


def _first_frame(container, stream) -> av.VideoFrame | None:
    """The first frame the decoder returns with a timestamp (after a cut mid-GOP, the first
    keyframe's: frames before it cannot be decoded)."""
    for frame in container.decode(stream):
        if frame.pts is not None:
            return frame
    return None


def _first_frame_time(path: Path) -> float | None:
    with av.open(str(path)) as container:
        first = _first_frame(container, container.streams.video[0])
        return float(first.pts * first.time_base) if first is not None else None


def _describe(err: Exception) -> str:
    """FFmpeg's own words without the file path (the index already names the file)."""
    return getattr(err, "strerror", None) or str(err).split(":")[0] or type(err).__name__


def _duration_s(container, stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


# -- frames ---------------------------------------------------------------------------------------
def iter_frames(path: Path, fps: float, threads: int = 0) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield `(index, frame)` at a constant `fps`, dropping or repeating source frames.

    Output frame k is the source frame on screen at time k / fps, times counted from the first
    decodable frame (`VideoInfo.start_s`, the zero of the audio too); a repeated frame is the same
    object again. Frames stay decoded-but-unconverted, so a caller pays for conversion (`to_rgb`,
    `to_yuv420`) only on frames it uses. `threads` = 0 lets FFmpeg pick; Ray workers pass 1
    because each owns one CPU.
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


def to_rgb(frame: av.VideoFrame, max_side: int = 0, picture: Picture | None = None) -> np.ndarray:
    """(h, w, 3) uint8 RGB as a viewer sees the frame: its own colour matrix and range, square
    pixels, upright. `max_side` > 0 downscales so the long side is at most that. The colour
    conversion runs at the coded size (swscale's unscaled path, several times faster than a
    scaled one), then OpenCV resizes (pixel aspect, `max_side`), then a quarter turn if the
    display matrix asks for one. `picture` None reads everything but the pixel aspect from the
    frame itself."""
    picture = picture or Picture.of_frame(frame)
    w, h = picture.unrotated_size
    if max_side and max(w, h) > max_side:
        s = max_side / max(w, h)
        w, h = max(2, round(w * s)), max(2, round(h * s))
    rgb = _reformat(frame, format="rgb24", **_sws_source(picture.colour)).to_ndarray()
    if rgb.shape[:2] != (h, w):
        # linear is sharp and alias-free down to half size; area averaging beyond that
        shrink = min(rgb.shape[1] / w, rgb.shape[0] / h)
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink >= 2 else cv2.INTER_LINEAR)
    return upright(rgb, picture.rotation)


def first_frame_rgb(path: Path) -> np.ndarray:
    """The first decodable frame of a video or image file as a viewer sees it (`to_rgb`: upright,
    square pixels, its own colours); MediaError when FFmpeg finds none."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError("no video stream")
            stream = container.streams.video[0]
            frame = _first_frame(container, stream)
            if frame is None:
                raise MediaError("no decodable video frame")
            return to_rgb(frame, picture=Picture.of_frame(frame, stream.sample_aspect_ratio))
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise MediaError(f"not a readable image or video ({_describe(err)})") from None


def read_image(path: Path) -> np.ndarray:
    """(h, w, 3) uint8 RGB of any photo Pillow reads (EXIF rotation applied), else the first
    frame FFmpeg decodes (a video file, an image format Pillow lacks), decoded as training videos
    are (`first_frame_rgb`); MediaError when neither can read it."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.is_file():
        raise MediaError(f"no such file: {path}")
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError):
        pass
    try:
        return first_frame_rgb(path)
    except MediaError:
        raise MediaError(f"{path} is not an image Pillow or FFmpeg can read") from None


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Turn an image (or plane) `rotation` degrees counter-clockwise (multiples of 90)."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def to_yuv420(frame: av.VideoFrame, picture: Picture | None = None) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], Colour]:
    """Y, U, V planes (h, w), (h/2, w/2), (h/2, w/2) of the coded (not yet upright) frame and
    their colour: views, no copy, for 8-bit 4:2:0 sources with even sides; other sources (4:2:2,
    10-bit, odd sides) are converted, straight into the stored colour."""
    picture = picture or Picture.of_frame(frame)
    if frame.format.name in ("yuv420p", "yuvj420p") and not (frame.width % 2 or frame.height % 2):
        return _planes(frame), picture.colour
    converted = _reformat(frame, width=frame.width // 2 * 2, height=frame.height // 2 * 2, format="yuv420p",
                          interpolation=_ACCURATE, **_sws_source(picture.colour), **_sws_stored())
    return _planes(converted), STORED_COLOUR


def _planes(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(
        np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        for plane in frame.planes
    )


# -- audio ----------------------------------------------------------------------------------------
# Audio frames whose timestamp is further than this from where the previous frame ended start a
# new stretch at their own time (a hole, an overlap, a jump); smaller jitter is absorbed.
AUDIO_JITTER_S = 0.01


class PlacedAudio:
    """Audio on the video's clock: sample i plays at `start_s + i / rate` of the source, zeros
    where the source has no audio (before the sound starts, holes, after it ends); `covered`
    lists the sorted, disjoint [start, stop) sample ranges decoded from the source."""

    rate: int
    covered: list[tuple[int, int]]

    def read(self, start: int, stop: int) -> np.ndarray:
        """(stop - start,) float32 mono samples, zeros outside the track."""
        raise NotImplementedError

    def coverage(self, start: int, stop: int) -> float:
        """Share of the samples [start, stop) that were decoded from the source."""
        if stop <= start:
            return 0.0
        real = sum(max(0, min(stop, b) - max(start, a)) for a, b in self.covered)
        return real / (stop - start)

    def frame_coverage(self, num_frames: int, fps: float, first: int = 0) -> np.ndarray:
        """(num_frames,) coverage of the audio [k / fps, (k + 1) / fps) of video frames
        k = first, ..., first + num_frames - 1."""
        edges = np.round(np.arange(first, first + num_frames + 1) / fps * self.rate).astype(np.int64)
        real = np.zeros(num_frames + 1)
        for a, b in self.covered:  # cumulative real samples up to each edge
            if b > edges[0] and a < edges[-1]:
                real += np.clip(edges, a, b) - a
        return np.diff(real) / np.maximum(np.diff(edges), 1)


@dataclass
class AudioTrack(PlacedAudio):
    """Placed audio held in memory (`samples`, (channels, n) float32)."""

    samples: np.ndarray
    rate: int
    covered: list[tuple[int, int]]

    def read(self, start: int, stop: int) -> np.ndarray:
        return _window(self.samples[0], start, stop)


class SpilledAudio(PlacedAudio):
    """Placed mono float32 audio kept in an unnamed temporary file (gone when closed or when the
    process dies), read back window by window: a recording of any length costs no memory."""

    def __init__(self, file, length: int, rate: int, covered: list[tuple[int, int]]):
        self._file = file
        self.length = length
        self.rate = rate
        self.covered = covered

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.zeros(max(0, stop - start), np.float32)
        lo, hi = max(start, 0), min(stop, self.length)
        if hi > lo:
            data = os.pread(self._file.fileno(), (hi - lo) * 4, lo * 4)
            out[lo - start : lo - start + len(data) // 4] = np.frombuffer(data, "<f4")
        return out

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "SpilledAudio":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _window(samples: np.ndarray, start: int, stop: int) -> np.ndarray:
    out = np.zeros(max(0, stop - start), np.float32)
    lo, hi = max(start, 0), min(stop, len(samples))
    if hi > lo:
        out[lo - start : hi - start] = samples[lo:hi]
    return out


def read_audio(path: Path) -> np.ndarray:
    """The first audio stream as float32 mono at 16 kHz, sample 0 at the first decodable video
    frame (holes and a late start are zeros at their place).

    Raises MediaError when there is no audio stream or it cannot be decoded.
    """
    return decode_audio(path, AUDIO_RATE, "mono").samples[0]


def read_audio_track(path: Path) -> tuple[np.ndarray, int]:
    """The first audio stream as it is: float32 `(channels, n)` (1 or 2 channels; more are mixed
    down to stereo) at its own sample rate, placed like `read_audio`; and that rate."""
    track = decode_audio(path)
    return track.samples, track.rate


def resample_audio(audio: np.ndarray, rate: int, to_rate: int, layout: str) -> np.ndarray:
    """float32 `(channels, n)` at `rate` -> `(channels', n')` at `to_rate` in `layout` (mono, stereo)."""
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio, np.float32), format="fltp",
                                       layout="stereo" if audio.shape[0] == 2 else "mono")
    frame.sample_rate, frame.pts = rate, 0
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=to_rate)
    chunks = [out.to_ndarray() for out in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(chunks, axis=1).astype(np.float32)


def decode_audio(path: Path, rate: int | None = None, layout: str | None = None, start_s: float | None = None) -> AudioTrack:
    """The first audio stream placed by its own timestamps on the video's clock, in memory.

    Every decoded chunk goes where its timestamp says, relative to `start_s` (None: the first
    decodable video frame's time, or the first audio timestamp of a file without video). Runs of
    chunks that follow each other go through one resampler; a chunk more than AUDIO_JITTER_S away
    from where the previous one ended (a hole, a jump, an overlap) starts a new run at its own
    place. Sound before `start_s` is dropped. `rate` / `layout` None keep the stream's own.
    """
    placed: list[tuple[int, np.ndarray]] = []
    rate, channels, covered, length = _decode_placed(path, rate, layout, start_s, lambda at, chunk: placed.append((at, chunk)))
    samples = np.zeros((channels, length), np.float32)
    for at, chunk in placed:  # in decoding order: a later run overwrites an overlap
        samples[:, at : at + chunk.shape[1]] = chunk
    return AudioTrack(samples, rate, covered)


def decode_audio_spilled(path: Path, start_s: float | None = None, directory: Path | None = None) -> SpilledAudio:
    """`decode_audio` as 16 kHz mono written chunk by chunk into an unnamed temporary file (in
    `directory`, default the system's): memory stays that of one decoded chunk, whatever the length."""
    file = tempfile.TemporaryFile(dir=directory)
    try:
        fd = file.fileno()
        rate, _, covered, length = _decode_placed(
            path, AUDIO_RATE, "mono", start_s, lambda at, chunk: os.pwrite(fd, chunk[0].astype("<f4").tobytes(), at * 4)
        )
        os.ftruncate(fd, length * 4)  # holes and the tail read as zeros
    except BaseException:
        file.close()
        raise
    return SpilledAudio(file, length, rate, covered)


def _decode_placed(path: Path, rate: int | None, layout: str | None, start_s: float | None, write) -> tuple[int, int, list, int]:
    """Decode the first audio stream and hand each resampled chunk to `write(at, chunk)` at its
    sample position (>= 0; chunks in decoding order, a later one wins an overlap); returns
    (rate, channels, covered ranges, length in samples)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError("no audio track")
            if start_s is None and container.streams.video:
                start_s = _first_frame_time(path)
            stream = container.streams.audio[0]
            rate = rate or stream.codec_context.sample_rate or AUDIO_RATE
            layout = layout or ("stereo" if (stream.codec_context.channels or 1) >= 2 else "mono")
            covered: list[tuple[int, int]] = []
            length, found = 0, False
            for t, offset, chunk in _decode_chunks(container, stream, rate, layout):
                found = True
                if start_s is None:
                    start_s = t
                at = round((t - start_s) * rate) + offset
                stop = at + chunk.shape[1]
                length = max(length, stop)
                if stop > max(0, at):
                    lo = max(0, at)
                    write(lo, chunk[:, lo - at :])
                    covered.append((lo, stop))
    except av.FFmpegError as err:
        raise MediaError(f"audio decoding failed ({_describe(err)})") from None
    if not found:
        raise MediaError("audio track is empty")
    return rate, 2 if layout == "stereo" else 1, _merge_ranges(covered), length


def _decode_chunks(container, stream, rate: int, layout: str) -> Iterator[tuple[float, int, np.ndarray]]:
    """Yield (source time of the run's first sample, offset of the chunk in its run, (channels, n)
    float32) for every non-empty resampled chunk, runs being stretches of contiguous audio."""
    resampler = None
    expected = None  # where the previous decoded frame ended, seconds
    run_time, offset = 0.0, 0

    def emit(frames):
        nonlocal offset
        for out in frames:
            chunk = out.to_ndarray().astype(np.float32)
            if chunk.shape[1]:
                yield run_time, offset, chunk
                offset += chunk.shape[1]

    for frame in container.decode(stream):
        t = float(frame.pts * frame.time_base) if frame.pts is not None else expected
        if t is None:
            t = 0.0
        if resampler is None or abs(t - expected) > AUDIO_JITTER_S:
            if resampler is not None:
                yield from emit(resampler.resample(None))
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            run_time, offset = t, 0
        yield from emit(resampler.resample(frame))
        expected = t + frame.samples / frame.sample_rate
    if resampler is not None:
        yield from emit(resampler.resample(None))


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def add_h264_stream(
    container, fps: float, width: int, height: int, crf: int, preset: str, threads: int = 0, x264_params: str | None = None
):
    """An H.264 yuv420p video stream on `container` in the stored colour (BT.709, limited range,
    tagged); `threads` = 0 lets x264 choose; `x264_params` (`key=value:key=value`) overrides the
    preset's x264 settings."""
    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    for name, value in STORED_COLOUR_TAGS.items():  # written into the H.264 VUI and the container
        setattr(stream.codec_context, name, value)
    stream.options = {
        "crf": str(crf), "preset": preset,
        **({"threads": str(threads)} if threads else {}),
        **({"x264-params": x264_params} if x264_params else {}),
    }
    return stream


# libx264 (as PyAV's wheel bundles it) reads uninitialised memory in its macroblock-tree rate control
# at many frame sizes (96, 264, 520 px among them; not 128, 256, 512): the same frames, encoded
# again in the same process, can give other pictures. Clips and generated videos must depend on
# their frames alone, so it is off by default in both writers below: the annotator's clips,
# emo-infer's videos, the learning check's reference (BENCHMARKS.md).
STORED_X264_PARAMS = "mbtree=0"


class Mp4Writer:
    """Streams frames into an in-memory H.264 (yuv420p) mp4 in the stored colour, tagged; with the
    default `x264_params` the same frames always give the same bytes (`STORED_X264_PARAMS`; None:
    the preset's own settings, which bench_x264.py compares)."""

    def __init__(self, fps: float, width: int, height: int, crf: int, preset: str,
                 x264_params: str | None = STORED_X264_PARAMS):
        self._buffer = io.BytesIO()
        self._container = av.open(self._buffer, mode="w", format="mp4")
        # one encoder thread: parallelism comes from Ray workers, not from each encoder
        self._stream = add_h264_stream(self._container, fps, width, height, crf, preset, threads=1,
                                       x264_params=x264_params)

    def add(self, rgb: np.ndarray) -> None:
        self._encode(rgb_to_stored_frame(rgb))

    def add_yuv420(self, planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Encode Y, U, V planes already in the stored colour (no conversion); the side must be a
        multiple of 4."""
        y, u, v = planes
        h, w = y.shape
        i420 = np.concatenate([y, u.reshape(h // 4, w), v.reshape(h // 4, w)])
        self._encode(tag_stored_colour(av.VideoFrame.from_ndarray(i420, format="yuv420p")))

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
    """All frames of an in-memory video as RGB arrays (for clips, which are short), decoded by
    their colour tags (`to_rgb`)."""
    with av.open(io.BytesIO(data)) as container:
        return [to_rgb(f) for f in container.decode(video=0)]


class VideoWriter:
    """Streams RGB frames into an H.264 (yuv420p, stored colour) video file, with optional audio (AAC).

    The video stream is created from the first frame's size; the audio (float32 `(n,)` mono or
    `(2, n)` stereo at `audio_rate`) is encoded when the writer closes. The container format
    follows the file name unless `container_format` is given; `x264_params` goes to the encoder
    (see `add_h264_stream`): by default, as for `Mp4Writer`, the same frames give the same bytes.
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
        x264_params: str | None = STORED_X264_PARAMS,
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
        rgb = rgb[: self._video.height, : self._video.width]
        self._container.mux(self._video.encode(rgb_to_stored_frame(rgb)))
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
