"""Sync-test videos: a flash in the picture and a click in the sound at the same known instants,
written with PyAV the way real footage comes out of cameras, phones and broadcast recorders.

The picture is the astronaut photo swaying (a live face the annotator makes clips of) with marker
squares beside the face: a flash square that is white from each sync instant for FLASH_SECONDS,
grey squares at full-range levels 2, 14, 241, 251 and colour squares. The sound is low noise with
a click at each sync instant. Conditions (`CONDITIONS`), each a real encoding path:

- `plain`: mp4, H.264 25 fps, AAC: the reference;
- `ts_cut_mid_gop`: an MPEG-TS recording cut at a packet boundary in the middle of a GOP: the sound
  starts before the first decodable (key) frame;
- `audio_late`: the sound track starts 0.6 s after the picture (an mp4 edit list);
- `audio_hole`: 0.5 s of audio packets missing (Matroska keeps the timestamps);
- `rotated_90`: a phone video: landscape pixels and a display matrix that turns them upright;
- `full_range`: BT.601 full range (yuvj420p, tagged), as phones and webcams write;
- `bt709`: BT.709 limited range, tagged, as HD cameras write;
- `vfr`: variable frame rate (frame durations of 25 to 45 ms, a phone under load);
- `ntsc`: 30000/1001 fps;
- `anamorphic`: non-square pixels (stored 4:3 narrower, sample aspect ratio 4:3 restores it).

`SyncVideo` records where every marker is in the upright, square-pixel picture and the sync
instants in seconds of the video's own clock (zero = first decodable frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import cv2
import numpy as np

from .samples import astronaut_image

CONDITIONS = ("plain", "ts_cut_mid_gop", "audio_late", "audio_hole", "rotated_90", "full_range", "bt709", "vfr", "ntsc",
              "anamorphic")
FPS = 25.0
AUDIO_RATE = 48000
FLASH_SECONDS = 0.12  # at least 3 frames at 25 fps, so no frame-rate conversion can miss it
CLICK_SECONDS = 0.006
SECONDS = 4.4
# sync instants on the source timeline: uneven gaps, so a shift by one gap cannot pass for sync
SYNC_TIMES = (0.93, 2.17, 2.96, 3.85)
PATCH = 20  # marker square side, display pixels
GREYS = (2, 14, 241, 251)  # full-range levels a limited-range reader would clip to 0 / 255
COLOURS = ((200, 40, 40), (40, 180, 60), (40, 60, 200), (220, 170, 140))
AUDIO_LATE_S = 0.6
AUDIO_HOLE_S = (1.3, 1.8)  # lies between two sync instants
TS_CUT_FRACTION = 0.22  # of the file: lands between keyframes (one every second)


@dataclass(frozen=True)
class SyncVideo:
    path: Path
    condition: str
    sync_times: tuple[float, ...]  # seconds on the video's clock (first decodable frame = 0)
    flash_box: tuple[int, int, int, int]  # x0, y0, x1, y1 in upright, square display pixels
    grey_boxes: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)  # full-range level -> box
    colour_boxes: dict[tuple[int, int, int], tuple[int, int, int, int]] = field(default_factory=dict)  # RGB -> box
    display_size: tuple[int, int] = (512, 384)


def make_sync_video(directory: Path, condition: str) -> SyncVideo:
    """Write the sync-test video of `condition` into `directory`; returns what it holds."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; one of {CONDITIONS}")
    directory.mkdir(parents=True, exist_ok=True)
    portrait = condition == "rotated_90"
    width, height = (384, 512) if portrait else (512, 384)
    layout = _markers(portrait)
    times = _frame_times(condition)
    # each sync instant is a source frame's time: the flash starts exactly there
    source_sync = tuple(float(times[np.argmin(np.abs(times - t))]) for t in SYNC_TIMES)
    audio = _sound(source_sync)
    ext = {"ts_cut_mid_gop": "ts", "audio_hole": "mkv"}.get(condition, "mp4")
    path = directory / f"sync_{condition}.{ext}"
    colour = {"full_range": ("ITU601", "JPEG"), "bt709": ("ITU709", "MPEG")}.get(condition, ("ITU709", "MPEG"))
    audio_keep = _audio_keep(condition)
    _write(path if condition != "ts_cut_mid_gop" else path.with_suffix(".full.ts"), condition, times,
           lambda t: _picture(t, layout, width, height, source_sync), audio, audio_keep, colour)
    offset = 0.0
    if condition == "ts_cut_mid_gop":
        offset = _cut_mid_gop(path.with_suffix(".full.ts"), path)
    sync = tuple(t - offset for t in source_sync if t - offset > 0)
    return SyncVideo(path, condition, sync, layout["flash"], layout["greys"], layout["colours"], (width, height))


# -- picture --------------------------------------------------------------------------------------
def _markers(portrait: bool) -> dict:
    """Marker squares left and right of the astronaut's face (face box about x 178-272, y 72-175
    in the photo); a portrait picture is the photo's columns 64..448."""
    dx = -64 if portrait else 0

    def box(x: int, y: int) -> tuple[int, int, int, int]:
        return (x + dx, y, x + dx + PATCH, y + PATCH)

    left, right = 142, 290
    return {
        "flash": box(left, 46),
        "greys": {level: box(left, 76 + 26 * i) for i, level in enumerate(GREYS)},
        "colours": {rgb: box(right, 76 + 26 * i) for i, rgb in enumerate(COLOURS)},
    }


def _picture(t: float, layout: dict, width: int, height: int, sync: tuple[float, ...], extra_roll: float = 0.0,
             shift: int = 0) -> np.ndarray:
    """The upright, square-pixel picture at source time `t`: the swaying face and its markers."""
    roll = 6.0 * np.sin(2 * np.pi * 0.7 * t) + extra_roll
    matrix = cv2.getRotationMatrix2D((225.0, 124.0), roll, 1.0)  # about the face centre
    matrix[0, 2] += shift
    photo = cv2.warpAffine(_photo(), matrix, (512, 512), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    x_off = 64 if width < height else 0
    frame = np.ascontiguousarray(photo[:height, x_off : x_off + width])
    flash = any(s <= t + 1e-6 < s + FLASH_SECONDS for s in sync)
    _fill(frame, layout["flash"], (255, 255, 255) if flash else (0, 0, 0))
    for level, b in layout["greys"].items():
        _fill(frame, b, (level,) * 3)
    for rgb, b in layout["colours"].items():
        _fill(frame, b, rgb)
    return frame


@lru_cache(maxsize=1)
def _photo() -> np.ndarray:
    return astronaut_image()


def _fill(frame: np.ndarray, box: tuple[int, int, int, int], rgb) -> None:
    x0, y0, x1, y1 = box
    frame[y0:y1, x0:x1] = rgb


def _frame_times(condition: str) -> np.ndarray:
    """Presentation times (s) of the source frames."""
    if condition == "ntsc":
        return np.arange(int(SECONDS * 30000 / 1001)) * 1001 / 30000
    if condition == "vfr":  # frame durations of 25 to 45 ms (about 29 fps), on a 1 ms time base
        rng = np.random.default_rng(7)
        times = np.cumsum(np.concatenate([[0.0], rng.uniform(0.025, 0.045, int(SECONDS / 0.025))]))
        return np.round(times[times < SECONDS], 3)
    return np.arange(int(SECONDS * FPS)) / FPS


def _reformat_args(colour: tuple[str, str]) -> dict:
    return {"dst_colorspace": colour[0], "dst_color_range": colour[1]}


# -- sound ----------------------------------------------------------------------------------------
def _sound(sync: tuple[float, ...]) -> np.ndarray:
    """(n,) float32 at AUDIO_RATE: quiet noise with a click at each sync instant."""
    rng = np.random.default_rng(3)
    audio = (0.01 * rng.standard_normal(int(SECONDS * AUDIO_RATE))).astype(np.float32)
    click = int(CLICK_SECONDS * AUDIO_RATE)
    for t in sync:
        i = int(round(t * AUDIO_RATE))
        audio[i : i + click] = 0.8 * np.sin(2 * np.pi * 1000 * np.arange(click) / AUDIO_RATE)
    return audio


def _audio_keep(condition: str):
    """Which source times keep their audio packets."""
    if condition == "audio_late":
        return lambda t: t >= AUDIO_LATE_S
    if condition == "audio_hole":
        return lambda t: not (AUDIO_HOLE_S[0] <= t < AUDIO_HOLE_S[1])
    return lambda t: True


# -- writing --------------------------------------------------------------------------------------
def _write(path: Path, condition: str, times: np.ndarray, picture, audio: np.ndarray, keep, colour,
           rate: Fraction | None = None) -> None:
    """Video frames at `times` and audio frames of 1024 samples, interleaved by time, each with
    its own timestamp (so holes, late starts and uneven frame durations reach the file)."""
    fmt = {".ts": "mpegts", ".mkv": "matroska"}.get(path.suffix, "mp4")
    container = av.open(str(path), mode="w", format=fmt)
    vfr = condition == "vfr"
    rate = rate or (Fraction(30000, 1001) if condition == "ntsc" else Fraction(int(FPS)))
    video = container.add_stream("libx264", rate=rate)
    upright_h, upright_w = picture(0.0).shape[:2]
    coded_w, coded_h = upright_w, upright_h
    if condition == "rotated_90":
        coded_w, coded_h = upright_h, upright_w
        video.set_display_rotation(-90)  # a phone: the player turns the pixels clockwise
    if condition == "anamorphic":
        coded_w = upright_w * 3 // 4
        video.codec_context.sample_aspect_ratio = Fraction(4, 3)
    video.width, video.height = coded_w, coded_h
    full = colour[1] == "JPEG"
    video.pix_fmt = "yuvj420p" if full else "yuv420p"
    video.codec_context.colorspace = 1 if colour[0] == "ITU709" else 6
    video.codec_context.color_range = 2 if full else 1
    video.options = {"crf": "16", "preset": "veryfast", "g": str(round(rate)), "keyint_min": str(round(rate)),
                     "sc_threshold": "0", "bframes": "2"}
    if vfr:
        video.codec_context.time_base = Fraction(1, 1000)
    time_base = Fraction(1, 1000) if vfr else 1 / rate
    sound = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")

    events = [(float(t), 0, i) for i, t in enumerate(times)]
    events += [(j / AUDIO_RATE, 1, j) for j in range(0, len(audio) - 1024, 1024) if keep(j / AUDIO_RATE)]
    for t, kind, i in sorted(events):
        if kind == 0:
            rgb = picture(t)
            if condition == "rotated_90":
                rgb = np.ascontiguousarray(np.rot90(rgb, 1))  # stored so that a clockwise turn shows it upright
            if condition == "anamorphic":
                rgb = cv2.resize(rgb, (coded_w, coded_h), interpolation=cv2.INTER_AREA)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", interpolation="BICUBIC", **_reformat_args(colour))
            frame.colorspace, frame.color_range = video.codec_context.colorspace, video.codec_context.color_range
            frame.pts = int(round(t / time_base))
            frame.time_base = time_base
            container.mux(video.encode(frame))
        else:
            frame = av.AudioFrame.from_ndarray(audio[None, i : i + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = AUDIO_RATE, i
            container.mux(sound.encode(frame))
    container.mux(video.encode())
    container.mux(sound.encode())
    container.close()


def _cut_mid_gop(full: Path, out: Path) -> float:
    """Keep the MPEG-TS `full` from a 188-byte packet boundary in the middle of a GOP, as a
    recording started mid-stream; returns the source time (s) of the cut file's first decodable
    frame, on the timeline of `SYNC_TIMES` (the uncut file's first frame is time 0)."""
    zero = _first_frame_time(full)
    data = full.read_bytes()
    cut = int(len(data) * TS_CUT_FRACTION) // 188 * 188
    out.write_bytes(data[cut:])
    full.unlink()
    return _first_frame_time(out) - zero


def _first_frame_time(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        first = next(f for f in container.decode(stream) if f.pts is not None)
        return float(first.pts * first.time_base)


# -- label problems -------------------------------------------------------------------------------
PROBLEMS = ("jump_cut", "frozen", "low_fps", "face_moves_across")
JUMP_AT = 2.0  # s: the jump cut (same framing, the head 9 degrees further and a little aside)
FROZEN_SPAN = (1.6, 2.6)  # s: the picture stalls on the frame before
LOW_FPS = 10


@dataclass(frozen=True)
class LabelVideo:
    path: Path
    problem: str
    event_s: tuple[float, float]  # where the problem is (source seconds; the whole video for some)


def make_label_video(directory: Path, problem: str) -> LabelVideo:
    """A video of the swaying face with one label problem (`PROBLEMS`), in plain mp4 / 25 fps:

    - `jump_cut`: at JUMP_AT the head is suddenly turned 9 degrees further and moved 5 pixels,
      with the same framing (histograms and face box barely change);
    - `frozen`: the picture stalls for a second (FROZEN_SPAN) while the sound goes on;
    - `face_moves_across`: the face slides across the frame at 100 pixels (two thirds of its
      width) a second, so one fixed crop over the whole track would show it small;
    - `low_fps`: a 10 fps source.
    """
    if problem not in PROBLEMS:
        raise ValueError(f"unknown problem {problem!r}; one of {PROBLEMS}")
    directory.mkdir(parents=True, exist_ok=True)
    layout = _markers(False)
    rate = Fraction(LOW_FPS) if problem == "low_fps" else Fraction(int(FPS))
    times = np.arange(int(SECONDS * rate)) / float(rate)
    event = (0.0, SECONDS)

    def picture(t: float) -> np.ndarray:
        if problem == "jump_cut":
            return _picture(t, layout, 512, 384, SYNC_TIMES, extra_roll=9.0 if t >= JUMP_AT else 0.0,
                            shift=5 if t >= JUMP_AT else 0)
        if problem == "frozen" and FROZEN_SPAN[0] <= t < FROZEN_SPAN[1]:
            t = FROZEN_SPAN[0] - 1 / FPS
        if problem == "face_moves_across":
            return _sliding_face(t)
        return _picture(t, layout, 512, 384, SYNC_TIMES)

    if problem == "jump_cut":
        event = (JUMP_AT, JUMP_AT)
    elif problem == "frozen":
        event = FROZEN_SPAN
    path = directory / f"label_{problem}.mp4"
    _write(path, "plain", times, picture, _sound(SYNC_TIMES), lambda t: True, ("ITU709", "MPEG"), rate=rate)
    return LabelVideo(path, problem, event)


def _sliding_face(t: float) -> np.ndarray:
    """(400, 720) grey frame with the photo's face square, enlarged to 255 px, at x = 10 + 100 t."""
    frame = np.full((400, 720, 3), 96, np.uint8)
    face = cv2.resize(_photo()[40:210, 140:310], (255, 255), interpolation=cv2.INTER_CUBIC)
    x = int(round(10 + 100 * t))
    frame[70:325, x : x + 255] = face[:, : max(0, min(255, 720 - x))]
    return frame
