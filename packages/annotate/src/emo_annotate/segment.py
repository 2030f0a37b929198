"""Cutting a video into clips whose labels describe them.

A clip is a run of frames with exactly one face, a continuous face track, sound decoded from the
source and a picture that keeps changing, with no scene cut or jump cut inside. Works on
per-frame signals only (face count, box, landmark motion, a tiny grey histogram, whether the
picture changed, audio coverage), so the first pass over a video keeps no frames.

Every clip records why it starts and ends (`Span.start_reason`, `Span.end_reason`), and every
stretch that had a face but was left out for a label problem becomes a `Dropped` with its reason
(the index gets a `dropped` row for it).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np

from .config import ClipConfig
from .crop import crop_box, face_sides
from .landmarks import box_iou

# why a frame cannot be in a clip
NO_FACE = "no face"
SEVERAL_FACES = "several faces"
NO_AUDIO = "no audio"
FROZEN = "frozen picture"
# why a face track breaks between two usable frames
SCENE_CUT = "scene cut"
TRACK_JUMP = "face track jump"
JUMP_CUT = "jump cut"
# why a whole clip is dropped
LOW_PICTURE_RATE = "low picture rate"
LOW_AUDIO_COVERAGE = "low audio coverage"
SMALL_FACE = "face small in the crop"
# other clip edges
VIDEO_START = "video start"
VIDEO_END = "video end"
SPLIT_LONG = "split: longer than max_seconds"
SPLIT_SMALL_FACE = "split: face small in the crop"


@dataclass(frozen=True)
class Span:
    start: int  # first frame index
    stop: int  # one past the last frame index
    start_reason: str = ""  # why the clip starts here (the edge reasons above)
    end_reason: str = ""

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Dropped:
    """Frames [start, stop) that had a face but make no clip, and why."""

    start: int
    stop: int
    reason: str


@dataclass
class FrameSignals:
    """Per output frame of the first pass: what cutting needs, no pixels."""

    face_counts: np.ndarray  # (T,) int: faces the detector found (a face without landmarks counts 0)
    boxes: np.ndarray  # (T, 4) float32 display pixels of the tracked face (last box where none)
    histograms: np.ndarray  # (T, bins) float32 grey-level histograms (scene cuts)
    landmark_steps: np.ndarray  # (T,) median landmark motion from frame t-1 to t in face sides; NaN where unknown
    fresh: np.ndarray  # (T,) bool: the picture differs from the previous frame's
    audio_coverage: np.ndarray | None = None  # (T,) share of each frame's sound decoded from the source (None: all)

    def __post_init__(self) -> None:
        if self.audio_coverage is None:
            self.audio_coverage = np.ones(len(self.face_counts))

    def __len__(self) -> int:
        return len(self.face_counts)


@dataclass
class Segmentation:
    spans: list[Span]  # the clips, in order
    dropped: list[Dropped]  # stretches with a face left out for a label problem
    reason: str | None  # when there are no clips: the main reason why


def grey_thumbnail(rgb: np.ndarray) -> np.ndarray:
    """(36, 64) uint8 grey copy of the frame: histograms and picture-change tests."""
    small = cv2.resize(rgb, (64, 36), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


def grey_histogram(grey: np.ndarray, bins: int = 32) -> np.ndarray:
    """Normalised grey-level histogram of a grey thumbnail (scene-cut detection)."""
    hist = np.bincount((grey // (256 // bins)).ravel(), minlength=bins).astype(np.float32)
    return hist / hist.sum()


def face_patch(rgb: np.ndarray, box: np.ndarray, scale: float) -> np.ndarray:
    """(32, 32) grey patch of the face `box` (display pixels; `rgb` is `scale` times smaller)."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = (box / scale).round().astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA)


def picture_changed(previous: np.ndarray | None, current: np.ndarray, threshold: float) -> bool:
    """Whether two grey patches differ by more than `threshold` grey levels on average (coding
    noise of a repeated picture stays well below one level; a live face moves more)."""
    if previous is None:
        return True
    return float(np.abs(current.astype(np.int16) - previous).mean()) > threshold


def landmark_steps(landmarks: np.ndarray, boxes: np.ndarray, known: np.ndarray) -> np.ndarray:
    """(T,) median distance (x, y) every landmark moves from frame t-1 to t, in face sides; NaN
    where either frame has no landmarks. landmarks (T, n, 3), boxes (T, 4), known (T,) bool."""
    steps = np.full(len(landmarks), np.nan)
    if len(landmarks) < 2:
        return steps
    moved = np.linalg.norm(np.diff(landmarks[..., :2], axis=0), axis=-1)  # (T-1, n)
    sides = np.maximum(face_sides(boxes), 1.0)
    scale = (sides[1:] + sides[:-1]) / 2
    ok = known[1:] & known[:-1]
    steps[1:][ok] = np.median(moved[ok], axis=1) / scale[ok]
    return steps


def find_clips(sig: FrameSignals, fps: float, cfg: ClipConfig, frame_size: tuple[int, int] | None = None) -> Segmentation:
    """Clip spans with their edge reasons, dropped stretches, and the main reason when nothing is left.

    `frame_size` (display width, height) enables the face-size check, which needs the crop.
    """
    n = len(sig)
    frame_reason = _frame_reasons(sig, fps, cfg)
    usable = np.array([r is None for r in frame_reason], bool)
    dropped = _frozen_stretches(frame_reason)
    breaks = _track_breaks(sig, usable, cfg)

    runs: list[Span] = []
    start = None
    for t in range(n + 1):
        ends = t == n or not usable[t] or (start is not None and breaks[t] is not None)
        if ends and start is not None:
            runs.append(Span(start, t, _edge_before(start, frame_reason, breaks), _edge_before(t, frame_reason, breaks, n)))
            start = None
        if start is None and t < n and usable[t]:
            start = t

    max_frames = max(cfg.min_frames, int(cfg.max_seconds * fps))
    spans: list[Span] = []
    for run in runs:
        if len(run) < cfg.min_frames:
            continue
        for piece in split_span(run, max_frames, SPLIT_LONG):
            kept, rejected = _vet(piece, sig, fps, cfg, frame_size)
            spans += kept
            dropped += rejected
    dropped.sort(key=lambda d: d.start)
    if spans:
        return Segmentation(spans, dropped, None)
    return Segmentation([], dropped, _reason(sig.face_counts, frame_reason, runs, dropped, cfg.min_frames))


def _frame_reasons(sig: FrameSignals, fps: float, cfg: ClipConfig) -> list[str | None]:
    counts = sig.face_counts
    one_face = (counts == 1) | _transient(counts >= 2, cfg.max_spurious_face_frames)
    frozen = _frozen(sig.fresh, int(math.floor(cfg.max_still_seconds * fps)))
    reasons: list[str | None] = []
    for t in range(len(sig)):
        if counts[t] == 0:
            reasons.append(NO_FACE)
        elif not one_face[t]:
            reasons.append(SEVERAL_FACES)
        elif sig.audio_coverage[t] < cfg.min_audio_coverage:
            reasons.append(NO_AUDIO)
        elif frozen[t]:
            reasons.append(FROZEN)
        else:
            reasons.append(None)
    return reasons


def _frozen(fresh: np.ndarray, max_repeats: int) -> np.ndarray:
    """True on runs of more than `max_repeats` consecutive frames without a new picture; one or
    two new pictures between two such runs (a keyframe refreshing a stalled picture) count as
    part of the freeze."""
    out = np.zeros(len(fresh), bool)
    runs = [(a, b) for a, b in _runs(~fresh.astype(bool)) if b - a > max_repeats]
    for (a, b), following in zip(runs, runs[1:] + [None]):
        out[a:b] = True
        if following is not None and following[0] - b <= 2:
            out[b : following[0]] = True
    return out


def _frozen_stretches(frame_reason: list[str | None]) -> list[Dropped]:
    """Frozen runs as dropped stretches (only frames with one face and sound get that reason:
    elsewhere a freeze costs nothing)."""
    flags = np.array([r == FROZEN for r in frame_reason], bool)
    return [
        Dropped(a, b, f"{FROZEN} ({b - a} frames without a new picture: a stall or a still image)")
        for a, b in _runs(flags)
    ]


def _track_breaks(sig: FrameSignals, usable: np.ndarray, cfg: ClipConfig) -> list[str | None]:
    """Per frame t: why the track breaks between t-1 and t (None: it does not)."""
    n = len(sig)
    breaks: list[str | None] = [None] * n
    steps = sig.landmark_steps
    for t in range(1, n):
        if not (usable[t] and usable[t - 1]):
            continue
        if np.abs(sig.histograms[t] - sig.histograms[t - 1]).sum() > cfg.scene_cut_threshold:
            breaks[t] = SCENE_CUT
        elif box_iou(sig.boxes[t], sig.boxes[t - 1]) < cfg.min_track_iou:
            breaks[t] = TRACK_JUMP
        elif _is_jump(steps, t, cfg):
            breaks[t] = JUMP_CUT
    return breaks


def _is_jump(steps: np.ndarray, t: int, cfg: ClipConfig) -> bool:
    """The landmarks jump at t: a step far above the motion of the frames around it (real motion,
    however fast, accelerates over several frames; a jump cut or a tracker glitch does not)."""
    step = steps[t]
    if not np.isfinite(step) or step < cfg.jump_cut_min_step:
        return False
    lo, hi = max(1, t - cfg.jump_cut_context), min(len(steps), t + cfg.jump_cut_context + 1)
    around = np.concatenate([steps[lo:t], steps[t + 1 : hi]])
    around = around[np.isfinite(around)]
    if len(around) == 0:
        return False
    return step > cfg.jump_cut_ratio * max(float(np.median(around)), 0.005)


def _edge_before(t: int, frame_reason: list[str | None], breaks: list[str | None], n: int | None = None) -> str:
    """Why a clip edge lies just before frame t."""
    if t == 0:
        return VIDEO_START
    if n is not None and t == n:
        return VIDEO_END
    return frame_reason[t] or breaks[t] or frame_reason[t - 1] or ""


def _vet(span: Span, sig: FrameSignals, fps: float, cfg: ClipConfig, frame_size) -> tuple[list[Span], list[Dropped]]:
    """Clip-level checks: the picture changes often enough, enough real sound, and the face is
    not a small part of the crop (a face moving across the frame widens the fixed crop; such a
    clip is halved until the face fills enough of it or the pieces get too short)."""
    seconds = len(span) / fps
    rate = float(sig.fresh[span.start : span.stop].sum()) / seconds
    if rate < cfg.min_picture_rate:
        return [], [Dropped(span.start, span.stop, f"{LOW_PICTURE_RATE} ({rate:.1f} new pictures/s, at least "
                                                   f"{cfg.min_picture_rate:g}: a low-fps source or stalls)")]
    coverage = float(sig.audio_coverage[span.start : span.stop].mean())
    if coverage < cfg.min_audio_coverage:
        return [], [Dropped(span.start, span.stop, f"{LOW_AUDIO_COVERAGE} ({coverage:.0%}, at least {cfg.min_audio_coverage:.0%})")]
    if frame_size is None:
        return [span], []
    fraction = face_fraction(sig.boxes[span.start : span.stop], frame_size, cfg.crop_scale)
    if fraction >= cfg.min_face_fraction:
        return [span], []
    if len(span) >= 2 * cfg.min_frames:
        kept, dropped = [], []
        for half in split_span(span, math.ceil(len(span) / 2), SPLIT_SMALL_FACE):
            k, d = _vet(half, sig, fps, cfg, frame_size)
            kept += k
            dropped += d
        return kept, dropped
    return [], [Dropped(span.start, span.stop, f"{SMALL_FACE} ({fraction:.0%} of its side, at least "
                                               f"{cfg.min_face_fraction:.0%}: the face moves across the frame)")]


def face_fraction(boxes: np.ndarray, frame_size: tuple[int, int], crop_scale: float) -> float:
    """Median face side over the side of the clip's fixed crop."""
    crop = crop_box(boxes, frame_size[0], frame_size[1], crop_scale)
    return float(np.median(face_sides(boxes)) / crop[2])


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _transient(flags: np.ndarray, max_len: int) -> np.ndarray:
    """True on runs of `flags` no longer than max_len frames that have a one-face frame on both
    sides: a face detector's brief false positive, not a second person."""
    out = np.zeros_like(flags)
    for start, stop in _runs(flags):
        if stop - start <= max_len and start > 0 and stop < len(flags):
            out[start:stop] = True
    return out


def split_span(run: Span, max_frames: int, reason: str = SPLIT_LONG) -> list[Span]:
    """Near-equal pieces of at most max_frames frames; inner edges get `reason`."""
    pieces = math.ceil(len(run) / max_frames)
    edges = np.linspace(run.start, run.stop, pieces + 1).round().astype(int)
    return [
        Span(int(a), int(b), run.start_reason if i == 0 else reason, run.end_reason if i == pieces - 1 else reason)
        for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))
    ]


def _reason(face_counts: np.ndarray, frame_reason: list[str | None], runs: list[Span], dropped: list[Dropped], min_frames: int) -> str:
    n = len(face_counts)
    if n == 0:
        return "no frames decoded"
    if n < min_frames:
        return f"too short: {n} frames, a clip needs {min_frames}"
    counts = Counter(np.minimum(face_counts, 2).tolist())
    dominant = SEVERAL_FACES if counts[2] > counts[0] else NO_FACE
    if counts[1] < 0.1 * n:  # a stray detection is not a face track
        return dominant
    if dropped and any(len(r) >= min_frames for r in runs):
        return "every clip was dropped: " + "; ".join(sorted({d.reason.split(" (")[0] for d in dropped}))
    # frames with one face that still could not be used: say what stopped them
    blocked = Counter(r for r, c in zip(frame_reason, face_counts) if c == 1 and r is not None)
    if blocked and sum(blocked.values()) > 0.5 * counts[1]:
        return f"{blocked.most_common(1)[0][0]} where the face is"
    longest = max((len(r) for r in runs), default=0)
    return f"no single-face track of {min_frames} frames (longest {longest}; other frames mostly: {dominant})"
