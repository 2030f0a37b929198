"""Cutting a video into clips whose labels describe them.

A clip is a run of frames with exactly one face, a continuous face track, sound decoded from the
source and a picture that keeps changing, with no scene cut or jump cut inside. Works on
per-frame signals only (face count, box, landmark motion, a tiny grey histogram, whether the
picture changed, audio coverage), so the first pass over a video keeps no frames.

Every clip records why it starts and ends (`Span.start_reason`, `Span.end_reason`), and every
stretch that had a face but was left out for a label problem becomes a `Dropped` with its reason
(the index gets a `dropped` row for it).

`ClipCutter` decides frame by frame, as a video is decoded: a frame's fate is known a few frames
after it was pushed (`ClipCutter.lookahead`), and a clip as soon as its last frame's is, so the
caller keeps pixels only for the current face track. A long track is cut into pieces of
`max_seconds` as it goes, keeping at least `min_frames` for the piece after; the last one or two
pieces share what is left evenly. `find_clips` runs it over whole-video signals.
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
    kept: np.ndarray | None = None  # (T,) bool: the caller kept the frame's pixels (None: all); others make no clip

    def __post_init__(self) -> None:
        if self.audio_coverage is None:
            self.audio_coverage = np.ones(len(self.face_counts))
        if self.kept is None:
            self.kept = np.ones(len(self.face_counts), bool)

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

    `frame_size` (display width, height) enables the face-size checks, which need the crop.
    """
    cutter = ClipCutter(fps, cfg, frame_size)
    for t in range(len(sig)):
        cutter.push(int(sig.face_counts[t]), sig.boxes[t], sig.histograms[t], float(sig.landmark_steps[t]),
                    bool(sig.fresh[t]), float(sig.audio_coverage[t]), bool(sig.kept[t]))
    cutter.finish()
    return cutter.result()


class ClipCutter:
    """`find_clips`, one frame at a time.

    `push` takes frame t's signals and returns the clips decided by it (each once, in order);
    `finish` ends the video. Frames before `horizon` are no longer needed by any clip to come.
    `fits(span)`, when given, must also hold for a clip (the caller can still crop it); a clip
    that fails it is halved like one whose face is small in its crop.
    """

    BATCH = 16  # frames decided together

    def __init__(self, fps: float, cfg: ClipConfig, frame_size: tuple[int, int] | None = None, fits=None):
        self.fps, self.cfg, self.frame_size, self.fits = fps, cfg, frame_size, fits
        self.max_frames = max(cfg.min_frames, int(cfg.max_seconds * fps))
        max_repeats = int(math.floor(cfg.max_still_seconds * fps))
        # frames after t that decide t's fate: a second face's end, a freeze's length plus the gap
        # rule, the jump-cut context
        self.lookahead = max(cfg.max_spurious_face_frames + 2, max_repeats + 4, cfg.jump_cut_context + 1) + 1
        self._context = self.lookahead + 2  # decided frames re-read before the frames to decide
        self._base = 0  # index of the first stored frame
        self._rows: dict[str, list] = {k: [] for k in ("counts", "boxes", "hists", "steps", "fresh", "coverage", "kept")}
        self._reasons: list = []  # from _base, for decided frames
        self._breaks: list = []
        self.n = 0  # frames pushed
        self.decided = 0  # frames [0, decided) have their reason and track break
        self._run_origin: int | None = None  # where the current run of usable frames began
        self._run_start_reason = ""
        self._piece = 0  # first frame of the current run not yet in a clip
        self._frozen_start: int | None = None
        self.spans: list[Span] = []
        self.dropped: list[Dropped] = []
        self._face_hist: Counter = Counter()  # min(count, 2) -> frames
        self._blocked: Counter = Counter()  # why one-face frames were unusable
        self._longest_run = 0
        self._long_run = False  # some run had min_frames
        self._finished = False

    @property
    def horizon(self) -> int:
        """First frame a clip may still need."""
        return self._piece if self._run_origin is not None else self.decided

    def push(self, count: int, box, histogram, step: float, fresh: bool, audio_coverage: float = 1.0,
             kept: bool = True) -> list[Span]:
        rows = self._rows
        for key, value in (("counts", count), ("boxes", np.asarray(box, np.float32)), ("hists", histogram),
                           ("steps", step), ("fresh", fresh), ("coverage", audio_coverage), ("kept", kept)):
            rows[key].append(value)
        self.n += 1
        if self.n - self.decided >= self.lookahead + self.BATCH:
            return self._decide(self.n - self.lookahead, final=False)
        return []

    def finish(self) -> list[Span]:
        self._finished = True
        return self._decide(self.n, final=True)

    def result(self) -> Segmentation:
        dropped = sorted(self.dropped, key=lambda d: d.start)
        if self.spans:
            return Segmentation(list(self.spans), dropped, None)
        return Segmentation([], dropped, self._reason(dropped))

    def signals(self, start: int, stop: int) -> FrameSignals:
        """The stored signals of frames [start, stop) (from `horizon` on)."""
        a, b = start - self._base, stop - self._base
        if a < 0:
            raise IndexError(f"frame {start} is no longer stored (from {self._base})")
        r = self._rows
        return FrameSignals(
            np.array(r["counts"][a:b], int), np.array(r["boxes"][a:b], np.float32).reshape(-1, 4),
            np.array(r["hists"][a:b], np.float32), np.array(r["steps"][a:b], float), np.array(r["fresh"][a:b], bool),
            np.array(r["coverage"][a:b], float), np.array(r["kept"][a:b], bool),
        )

    # -- deciding frames ------------------------------------------------------------------------
    def _decide(self, upto: int, final: bool) -> list[Span]:
        w0 = max(self._base, self.decided - self._context)
        window = self.signals(w0, self.n)
        reasons = _frame_reasons(window, self.fps, self.cfg)
        usable = np.array([r is None for r in reasons], bool)
        new: list[Span] = []
        for t in range(self.decided, upto):
            local = t - w0
            brk = _track_break(window, usable, local, self.cfg) if local > 0 else None
            self._reasons.append(reasons[local])
            self._breaks.append(brk)
            new += self._frame_decided(t, reasons[local], brk, int(window.face_counts[local]))
        self.decided = upto
        if final:
            new += self._close_run(self.n, VIDEO_END)
            if self._frozen_start is not None:
                self.dropped.append(_frozen_drop(self._frozen_start, self.n))
                self._frozen_start = None
        self._trim()
        return new

    def _frame_decided(self, t: int, reason: str | None, brk: str | None, count: int) -> list[Span]:
        self._face_hist[min(count, 2)] += 1
        if count == 1 and reason is not None:
            self._blocked[reason] += 1
        if reason == FROZEN:
            if self._frozen_start is None:
                self._frozen_start = t
        elif self._frozen_start is not None:
            self.dropped.append(_frozen_drop(self._frozen_start, t))
            self._frozen_start = None
        new: list[Span] = []
        if self._run_origin is not None and (reason is not None or brk is not None):
            new += self._close_run(t, self._edge_before(t))
        if self._run_origin is None and reason is None:
            self._run_origin = self._piece = t
            self._run_start_reason = self._edge_before(t)
        if self._run_origin is not None and t + 1 - self._piece > self.max_frames + self.cfg.min_frames:
            # a long track: the next max_frames go now, at least min_frames + 1 stay for the piece after
            start_reason = self._run_start_reason if self._piece == self._run_origin else SPLIT_LONG
            new += self._vetted(Span(self._piece, self._piece + self.max_frames, start_reason, SPLIT_LONG))
            self._piece += self.max_frames
        return new

    def _close_run(self, stop: int, end_reason: str) -> list[Span]:
        if self._run_origin is None:
            return []
        origin, piece = self._run_origin, self._piece
        self._run_origin = None
        self._piece = stop
        self._longest_run = max(self._longest_run, stop - origin)
        if stop - origin < self.cfg.min_frames:
            return []
        self._long_run = True
        rest = Span(piece, stop, self._run_start_reason if piece == origin else SPLIT_LONG, end_reason)
        pieces = split_span(rest, self.max_frames, SPLIT_LONG)
        if min(len(p) for p in pieces) < self.cfg.min_frames:  # max_frames under 2 * min_frames
            pieces = [Span(piece, piece + self.max_frames, rest.start_reason, SPLIT_LONG)]
        new: list[Span] = []
        for p in pieces:
            new += self._vetted(p)
        return new

    def _vetted(self, span: Span) -> list[Span]:
        sig = self.signals(span.start, span.stop)
        offset = span.start
        fits = None if self.fits is None else (lambda s: self.fits(_shift(s, offset)))
        kept, rejected = _vet(_shift(span, -offset), sig, self.fps, self.cfg, self.frame_size, fits)
        kept = [_shift(k, offset) for k in kept]
        self.spans += kept
        self.dropped += [Dropped(d.start + offset, d.stop + offset, d.reason) for d in rejected]
        return kept

    def _edge_before(self, t: int) -> str:
        """Why a clip edge lies just before frame t (decided; t - 1 too)."""
        if t == 0:
            return VIDEO_START
        if self._finished and t == self.n:
            return VIDEO_END
        i = t - self._base
        return self._reasons[i] or self._breaks[i] or self._reasons[i - 1] or ""

    def _trim(self) -> None:
        """Forget frames no clip and no decision needs any more."""
        keep_from = min(self.horizon, self.decided - self._context - 1)
        drop = keep_from - self._base
        if drop >= 64 or (self._finished and drop > 0):
            for values in (*self._rows.values(), self._reasons, self._breaks):
                del values[:drop]
            self._base = keep_from

    def _reason(self, dropped: list[Dropped]) -> str:
        n, counts, min_frames = self.n, self._face_hist, self.cfg.min_frames
        if n == 0:
            return "no frames decoded"
        if n < min_frames:
            return f"too short: {n} frames, a clip needs {min_frames}"
        dominant = SEVERAL_FACES if counts[2] > counts[0] else NO_FACE
        if counts[1] < 0.1 * n:  # a stray detection is not a face track
            return dominant
        if dropped and self._long_run:
            return "every clip was dropped: " + "; ".join(sorted({d.reason.split(" (")[0] for d in dropped}))
        # frames with one face that still could not be used: say what stopped them
        if self._blocked and sum(self._blocked.values()) > 0.5 * counts[1]:
            return f"{self._blocked.most_common(1)[0][0]} where the face is"
        return f"no single-face track of {min_frames} frames (longest {self._longest_run}; other frames mostly: {dominant})"


def _shift(span: Span, offset: int) -> Span:
    return Span(span.start + offset, span.stop + offset, span.start_reason, span.end_reason)


def _frozen_drop(start: int, stop: int) -> Dropped:
    return Dropped(start, stop, f"{FROZEN} ({stop - start} frames without a new picture: a stall or a still image)")


def _frame_reasons(sig: FrameSignals, fps: float, cfg: ClipConfig) -> list[str | None]:
    counts = sig.face_counts
    one_face = (counts == 1) | _transient(counts >= 2, cfg.max_spurious_face_frames)
    frozen = _frozen(sig.fresh, int(math.floor(cfg.max_still_seconds * fps)))
    reasons: list[str | None] = []
    for t in range(len(sig)):
        if counts[t] == 0 or not sig.kept[t]:
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


def _track_break(sig: FrameSignals, usable: np.ndarray, t: int, cfg: ClipConfig) -> str | None:
    """Why the track breaks between frames t-1 and t (None: it does not, or either is unusable)."""
    if not (usable[t] and usable[t - 1]):
        return None
    if np.abs(sig.histograms[t] - sig.histograms[t - 1]).sum() > cfg.scene_cut_threshold:
        return SCENE_CUT
    if box_iou(sig.boxes[t], sig.boxes[t - 1]) < cfg.min_track_iou:
        return TRACK_JUMP
    if _is_jump(sig.landmark_steps, t, cfg):
        return JUMP_CUT
    return None


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


def _vet(span: Span, sig: FrameSignals, fps: float, cfg: ClipConfig, frame_size, fits=None) -> tuple[list[Span], list[Dropped]]:
    """Clip-level checks: the picture changes often enough, enough real sound, and the face is
    not a small part of the crop, neither on median (a face moving across the frame widens the
    fixed crop) nor on any frame (a face that moves or changes size a lot); such a clip is
    halved until the face fills enough of it or the pieces get too short."""
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
    median, smallest = face_fractions(sig.boxes[span.start : span.stop], frame_size, cfg.crop_scale)
    if median >= cfg.min_face_fraction and smallest >= cfg.min_frame_face_fraction and (fits is None or fits(span)):
        return [span], []
    if len(span) >= 2 * cfg.min_frames:
        kept, dropped = [], []
        for half in split_span(span, math.ceil(len(span) / 2), SPLIT_SMALL_FACE):
            k, d = _vet(half, sig, fps, cfg, frame_size, fits)
            kept += k
            dropped += d
        return kept, dropped
    if median < cfg.min_face_fraction:
        why = f"{median:.0%} of its side, at least {cfg.min_face_fraction:.0%}: the face moves across the frame"
    else:
        why = (f"down to {smallest:.0%} of its side, at least {cfg.min_frame_face_fraction:.0%} on every frame: "
               "the face moves or changes size")
    return [], [Dropped(span.start, span.stop, f"{SMALL_FACE} ({why})")]


def face_fractions(boxes: np.ndarray, frame_size: tuple[int, int], crop_scale: float) -> tuple[float, float]:
    """Median and smallest face side over the side of the clip's fixed crop."""
    crop = crop_box(boxes, frame_size[0], frame_size[1], crop_scale)
    sides = face_sides(boxes)
    return float(np.median(sides) / crop[2]), float(sides.min() / crop[2])


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
