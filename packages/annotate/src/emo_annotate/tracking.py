"""The face mesh on every frame, the full-range face detector only where it decides something.

The detector is what keeps drawn faces and second people out of clips (`landmarks.confirm`), but
it costs more than the mesh. Inside a steady stretch its answer does not change, so
`FaceTracker` runs it

- on every frame until several checks in a row agree (a track's start, after any change),
- then on one frame in `every` ("sparse"), and at once when the mesh finds or loses a face or its
  box jumps (the tracker re-detected: another face may have taken over).

A sparse check that disagrees with the steady answer runs the detector on every frame since the
previous check (their detection images are kept until then) and the tracker turns dense again.
So each frame's answer is the one the detector gives on it, except on frames strictly between
two agreeing checks, which take the steady answer; a change lasting `every` frames or more always
meets a check. With `every` = ClipConfig.max_spurious_face_frames + 1 (the default 4), a second
face long enough to end a clip is always seen, and shorter ones are tolerated either way.

Answers come out in frame order, at most `every` - 1 frames after the frame was pushed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .landmarks import Face, FrameFaces, LandmarkDetector, box_iou, confirm

SETTLE_CHECKS = 3  # dense checks in a row with the same answer before going sparse
JUMP_IOU = 0.5  # consecutive mesh boxes overlapping less than this trigger a check


@dataclass(frozen=True)
class _Answer:
    count: int  # detector faces
    mesh: bool  # the mesh found a face
    confirmed: bool  # the detector confirmed it


@dataclass
class _Unchecked:
    index: int
    rgb: np.ndarray | None  # the detection image (None: a repeat of the frame before)
    scale: float
    face: Face | None


class FaceTracker:
    def __init__(self, detector: LandmarkDetector, every: int = 4):
        self.detector = detector
        self.every = max(1, every)
        self.frames = 0  # distinct pictures seen
        self.checks = 0  # detector runs
        self.detector_seconds = 0.0  # time in those runs
        self.reset()

    def reset(self) -> None:
        """Between videos: the mesh forgets its face, the tracker its steady answer."""
        self.detector.reset()
        self._steady: _Answer | None = None  # None: dense
        self._last: _Answer | None = None
        self._streak = 0
        self._since_check = 0
        self._unchecked: list[_Unchecked] = []
        self._previous_box: np.ndarray | None = None
        self._released: FrameFaces | None = None  # the last answer handed out (for repeats)
        self.face: Face | None = None  # what the mesh found on the last pushed picture

    def push(self, index: int, rgb: np.ndarray, scale: float) -> list[tuple[int, FrameFaces]]:
        """A new picture (frame `index`; `rgb` is `scale` times smaller than the source): the mesh
        runs now; returns the frames whose answers are now known, in order."""
        self.frames += 1
        face = self.face = self.detector.landmarks(rgb, scale)
        box = None if face is None else face.mesh_box
        jumped = box is not None and self._previous_box is not None and box_iou(box, self._previous_box) < JUMP_IOU
        self._previous_box = box
        steady = self._steady
        if steady is not None and not jumped and (face is not None) == steady.mesh and self._since_check + 1 < self.every:
            self._unchecked.append(_Unchecked(index, rgb, scale, face))
            self._since_check += 1
            return []
        found = self._check(rgb, scale, face)
        answer = _answer_of(found, face)
        if steady is not None and answer == steady:
            out = self._release_steady()
        else:  # a change: every frame since the last check gets its own detector run
            out = self._release_checked()
            self._steady = None
        out.append(self._hand_out(index, found))
        self._since_check = 0
        if self._steady is None:
            self._streak = self._streak + 1 if answer == self._last else 1
            if self._streak >= SETTLE_CHECKS:
                self._steady = answer
        self._last = answer
        return out

    def repeat(self, index: int) -> list[tuple[int, FrameFaces]]:
        """Frame `index` shows the same picture as the frame before: the same answer."""
        if self._unchecked:
            self._unchecked.append(_Unchecked(index, None, 0.0, None))
            return []
        return [self._hand_out(index, self._released or FrameFaces(0, None))]

    def finish(self) -> list[tuple[int, FrameFaces]]:
        """End of the video: the frames after the last check are checked on their last picture."""
        pictures = [u for u in self._unchecked if u.rgb is not None]
        if not pictures:
            return self._release_steady()
        last = pictures[-1]
        found = self._check(last.rgb, last.scale, last.face)
        if _answer_of(found, last.face) == self._steady:
            return self._release_steady()
        return self._release_checked()

    def _check(self, rgb: np.ndarray, scale: float, face: Face | None) -> FrameFaces:
        self.checks += 1
        t = time.perf_counter()
        boxes = self.detector.face_boxes(rgb, scale)
        self.detector_seconds += time.perf_counter() - t
        return confirm(face, boxes)

    def _release_steady(self) -> list[tuple[int, FrameFaces]]:
        steady = self._steady
        out = []
        for u in self._unchecked:
            if u.rgb is None:
                out.append(self._hand_out(u.index, self._released))
            else:
                out.append(self._hand_out(u.index, FrameFaces(steady.count, u.face if steady.confirmed else None)))
        self._unchecked = []
        return out

    def _release_checked(self) -> list[tuple[int, FrameFaces]]:
        out = []
        for u in self._unchecked:
            found = self._released if u.rgb is None else self._check(u.rgb, u.scale, u.face)
            out.append(self._hand_out(u.index, found))
        self._unchecked = []
        return out

    def _hand_out(self, index: int, found: FrameFaces) -> tuple[int, FrameFaces]:
        self._released = found
        return index, found


def _answer_of(found: FrameFaces, face: Face | None) -> _Answer:
    return _Answer(found.count, face is not None, found.face is not None)
