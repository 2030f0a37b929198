"""One video in, clip samples out, in one pass over the picture.

1. probe + audio (PyAV): reject unusable inputs early; the audio is placed by its own timestamps
   on the clock of the first decodable frame and spilled to a temporary file (`media.decode_audio_spilled`)
2. each frame at the target fps, decoded once: upright, square pixels, downscaled -> the face mesh
   (every frame) and the full-range face detector (where it decides something: `tracking`), grey
   histogram, picture change; the frame's coded Y, U, V planes around the face are kept (`window`)
3. the segmenter decides frame by frame, a few frames behind (`segment.ClipCutter`): one face, a
   continuous track, sound, a changing picture, no scene or jump cut, the face not lost in its crop
4. as soon as a clip is decided: its fixed square crop is cut from the kept planes, converted to
   the stored colour (BT.709 limited), turned upright and streamed into H.264; pose, speed, boxes,
   mask, landmarks and audio features -> a sample (shard contract); its frames are let go

Memory is bounded whatever the video's length: pixels and landmarks of the frames a clip may
still take (at most `max_seconds` plus `min_frames` plus the segmenter's look-ahead), nothing else
per frame, and the audio read back one clip at a time.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from . import __version__
from .audio_features import AudioFeaturizer, make_featurizer
from .config import AnnotateConfig
from .crop import crop_box, face_sides, to_crop_pixels, union_mask
from .index import STATUS_DROPPED, STATUS_FAILED, STATUS_OK, STATUS_SKIPPED  # noqa: F401 (part of this module's API)
from .landmarks import make_detector
from .media import (
    AUDIO_RATE, STORED_COLOUR, MediaError, Mp4Writer, PlacedAudio, VideoInfo, convert_yuv420, decode_audio_spilled,
    encode_wav, iter_frames, probe, to_rgb, to_yuv420, upright,
)
from .pose import clip_pose
from .timing import StageTimes
from .segment import (
    ClipCutter, Dropped, Span, face_patch, grey_histogram, grey_thumbnail, landmark_steps, picture_changed,
)
from .tracking import FaceTracker
from .window import Window, crop_rect, cut, face_window, holds


# the stored clips' colour, as recorded in each sample's json (and tagged in the H.264 stream)
STORED_COLOUR_META = {**STORED_COLOUR.describe(), "primaries": "bt709", "transfer": "bt709", "tagged": True}



@dataclass
class VideoOutcome:
    status: str
    reason: str | None = None
    clips: int = 0
    dropped: list[Dropped] = field(default_factory=list)  # stretches left out, with reasons
    fps: float = 25.0  # to turn dropped frame ranges into seconds
    frames: int = 0  # frames at `fps` decoded


@dataclass
class Observations:
    """Per output frame."""

    face_counts: np.ndarray  # (T,) int
    boxes: np.ndarray  # (T, 4) float32 display pixels of the tracked face (last box where none)
    landmarks: np.ndarray  # (T, n, 3) float32 display pixels of the tracked face (zeros where none)
    has_landmarks: np.ndarray  # (T,) bool
    histograms: np.ndarray  # (T, bins) float32
    fresh: np.ndarray  # (T,) bool: the picture changed since the previous frame


@dataclass
class _Frame:
    """What is kept of one output frame until no clip can take it."""

    histogram: np.ndarray
    fresh: bool
    window: Window | None
    box: np.ndarray | None = None  # filled when the tracker's answer arrives
    landmarks: np.ndarray | None = None  # (n, 3), None where the face has no confirmed landmarks


class Annotator:
    """Holds the models (loaded once) and annotates videos one after another."""

    def __init__(self, cfg: AnnotateConfig, featurizer: AudioFeaturizer | None = None, threads: int = 0,
                 spill_dir: Path | None = None):
        self.cfg = cfg
        self.threads = threads  # decoder threads; 0 = FFmpeg's choice
        self.spill_dir = spill_dir  # where the audio of the video being annotated is spilled (None: system temp)
        self.detector = make_detector(cfg.landmarks)
        self.tracker = FaceTracker(self.detector, cfg.detect_every)
        self.featurizer = featurizer or make_featurizer(cfg.audio_features, cfg.mel, cfg.wav2vec2)
        self.times = StageTimes()
        self.frames_done = 0  # of the video being annotated (read by progress reports from another thread)
        self.frames_expected = 0
        self.peak_kept_frames = 0  # most frames held at once (pixels or landmarks), over all videos

    def annotate(self, path: Path, video_id: str, source: str, emit: Callable[[dict], None]) -> VideoOutcome:
        """Annotate one video, calling `emit(sample)` per finished clip; never raises MediaError."""
        cfg = self.cfg
        self.frames_done, self.frames_expected = 0, 0
        t = time.perf_counter()
        try:
            info = probe(path)
            audio = decode_audio_spilled(path, start_s=info.start_s, directory=self.spill_dir)
        except MediaError as err:
            self.times.lap("open", t)
            status = STATUS_SKIPPED if str(err) in ("no audio track", "no video stream") else STATUS_FAILED
            return VideoOutcome(status, str(err), fps=cfg.fps)
        self.times.lap("open", t)
        self.frames_expected = int(round(info.duration_s * cfg.fps))
        with audio:
            return _VideoPass(self, path, info, audio, video_id, source, emit).run()

    def close(self) -> None:
        self.detector.close()


class _VideoPass:
    """One video through the annotator: frames in, samples out as clips are decided."""

    def __init__(self, annotator: Annotator, path: Path, info: VideoInfo, audio: PlacedAudio, video_id: str, source: str,
                 emit: Callable[[dict], None]):
        self.a, self.cfg, self.path, self.info, self.audio = annotator, annotator.cfg, path, info, audio
        self.video_id, self.source, self.emit = video_id, source, emit
        self.times = annotator.times
        self.tracker = annotator.tracker
        self.featurizer = annotator.featurizer
        self.tracker.reset()
        self.cutter = ClipCutter(self.cfg.fps, self.cfg.clip, (info.width, info.height), fits=self._fits)
        self.frames: dict[int, _Frame] = {}  # from frame `self._oldest` on
        self._oldest = 0
        self.clips = 0
        self.coded_size: tuple[int, int] | None = None
        # the last frame's landmarks, box and the last confirmed face before the kept frames
        self._previous: _Frame | None = None
        self._last_box = np.zeros(4, np.float32)
        self._last_known: tuple[int, np.ndarray, np.ndarray] | None = None  # (frame, landmarks, box)
        self._last_mesh = (-(10**9), None)  # (frame, box) of the latest face the mesh found

    def run(self) -> VideoOutcome:
        cfg, times = self.cfg, self.times
        previous_source = None  # (decoded frame, detection rgb, grey thumbnail, scale)
        n = 0
        frames = iter(iter_frames(self.path, cfg.fps, self.a.threads))
        t = time.perf_counter()
        while True:
            item = next(frames, None)
            t = times.lap("decode", t)
            if item is None:
                break
            k, frame = item
            n = k + 1
            self.a.frames_done = n
            if previous_source is not None and frame is previous_source[0]:
                # the constant-fps stream repeats a source frame: same answer, no new picture
                before = self.frames[k - 1] if k - 1 in self.frames else None
                window = before.window if before is not None else None
                histogram = before.histogram if before is not None else previous_source[4]
                self.frames[k] = _Frame(histogram, False, window)
                answers = self.tracker.repeat(k)
                t = time.perf_counter()
            else:
                rgb = to_rgb(frame, cfg.detect_max_side, self.info.picture)
                scale = self.info.width / rgb.shape[1]  # detection frames may be downscaled
                t = times.lap("to_rgb", t)
                detecting = self.tracker.detector_seconds
                answers = self.tracker.push(k, rgb, scale)
                detected = self.tracker.detector_seconds - detecting
                times.seconds["detector"] += detected
                t = times.lap("mesh", t + detected)
                face = self.tracker.face
                grey = grey_thumbnail(rgb)
                histogram = grey_histogram(grey)
                if previous_source is None:
                    fresh = True
                elif face is not None:  # the face, cut by the same box from both frames
                    fresh = picture_changed(face_patch(previous_source[1], face.box, scale), face_patch(rgb, face.box, scale),
                                            cfg.clip.still_threshold)
                else:
                    fresh = picture_changed(previous_source[2], grey, cfg.clip.still_threshold)
                t = times.lap("signals", t)
                window = self._keep(k, frame, face)
                t = times.lap("keep", t)
                self.frames[k] = _Frame(histogram, fresh, window)
                previous_source = (frame, rgb, grey, scale, histogram)
            for j, found in answers:
                self._answered(j, found)
            t = time.perf_counter()
        detecting = self.tracker.detector_seconds
        for j, found in self.tracker.finish():
            self._answered(j, found)
        times.seconds["detector"] += self.tracker.detector_seconds - detecting
        self._clips(self.cutter.finish())
        seg = self.cutter.result()
        self.frames.clear()
        if not seg.spans:
            return VideoOutcome(STATUS_SKIPPED, seg.reason, dropped=seg.dropped, fps=cfg.fps, frames=n)
        return VideoOutcome(STATUS_OK, None, clips=self.clips, dropped=seg.dropped, fps=cfg.fps, frames=n)

    # -- per frame ----------------------------------------------------------------------------
    def _keep(self, k: int, frame, face) -> Window | None:
        """The coded planes around the face, while a clip may take this frame: where the mesh
        found a face, and the few frames after (a brief second face can join a track)."""
        if face is not None:
            self._last_mesh = (k, face.box)
        last, box = self._last_mesh
        if box is None or k - last > self.cfg.clip.max_spurious_face_frames + 1:
            return None
        planes, colour = to_yuv420(frame, self.info.picture)
        self.coded_size = (planes[0].shape[1], planes[0].shape[0])
        clip = self.cfg.clip
        return face_window(planes, colour, self.info.picture, box, clip.min_frame_face_fraction, self.cfg.size, clip.crop_scale)

    def _answered(self, k: int, found) -> None:
        """The tracker's answer for frame k: its signals go to the segmenter."""
        t = time.perf_counter()
        record = self.frames[k]
        count = found.count
        if count == 1 and found.face is None:
            count = 0  # a face without confirmed landmarks is no usable face
        if found.face is not None:
            record.box, record.landmarks = found.face.box, found.face.landmarks
            self._last_box = found.face.box
        else:
            record.box = self._last_box
        step = _landmark_step(self._previous, record)
        self._previous = record
        coverage = float(self.audio.frame_coverage(1, self.cfg.fps, first=k)[0])
        decided = self.cutter.push(count, record.box, record.histogram, step, record.fresh, coverage, record.window is not None)
        self.times.lap("signals", t)
        self._clips(decided)
        self._let_go(self.cutter.horizon)

    def _let_go(self, horizon: int) -> None:
        """Forget frames before `horizon` (no clip can take them), remembering the last face."""
        self.a.peak_kept_frames = max(self.a.peak_kept_frames, len(self.frames))
        while self._oldest < horizon and self._oldest in self.frames:
            record = self.frames[self._oldest]
            if record.box is None:
                break  # not answered yet (frames are answered in order)
            if record.landmarks is not None:
                self._last_known = (self._oldest, record.landmarks, record.box)
            del self.frames[self._oldest]
            self._oldest += 1

    def _fits(self, span: Span) -> bool:
        """Every frame of the clip kept what its crop needs."""
        rect = crop_rect(self._crop(span), self.info.picture, self.coded_size)
        return all(holds(self.frames[j].window, rect, self.coded_size) for j in range(span.start, span.stop))

    def _crop(self, span: Span) -> np.ndarray:
        boxes = np.stack([self.frames[j].box for j in range(span.start, span.stop)])
        return crop_box(boxes, self.info.width, self.info.height, self.cfg.clip.crop_scale)

    # -- per clip -----------------------------------------------------------------------------
    def _clips(self, spans: list[Span]) -> None:
        for span in spans:
            self._clip(span)

    def _clip(self, span: Span) -> None:
        cfg, times, picture = self.cfg, self.times, self.info.picture
        t = time.perf_counter()
        crop = self._crop(span)
        rect = crop_rect(crop, picture, self.coded_size)
        writer = Mp4Writer(cfg.fps, cfg.size, cfg.size, cfg.crf, cfg.x264_preset)
        for j in range(span.start, span.stop):
            window = self.frames[j].window
            planes = tuple(upright(p, picture.rotation) for p in convert_yuv420(cut(window, rect, cfg.size), window.colour))
            t = times.lap("crop", t)
            writer.add_yuv420(planes)
            t = times.lap("encode", t)
        encoded = writer.finish()
        t = times.lap("encode", t)
        obs, interpolated = self._observations(span)
        sample = self._sample(self.video_id, self.source, self.clips, span, crop, encoded, obs, self.audio, self.info,
                              interpolated)
        times.lap("labels", t)
        self.emit(sample)
        self.clips += 1

    def _observations(self, span: Span) -> tuple[Observations, int]:
        """The clip's boxes and landmarks; frames without confirmed landmarks (a brief second
        detection) interpolated from the nearest frames that have them (`fill_missing_landmarks`)."""
        held = sorted(j for j in self.frames if self.frames[j].box is not None)
        n_points = self.a.detector.num_points
        before = [] if self._last_known is None else [self._last_known]
        index = [i for i, _, _ in before] + held
        records = [self.frames[j] for j in held]
        landmarks = np.stack([lm for _, lm, _ in before] + [
            r.landmarks if r.landmarks is not None else np.zeros((n_points, 3), np.float32) for r in records])
        boxes = np.stack([b for _, _, b in before] + [r.box for r in records]).astype(np.float32)
        known = np.array([True] * len(before) + [r.landmarks is not None for r in records])
        obs = Observations(np.ones(len(index), int), boxes, landmarks, known, np.zeros((len(index), 1), np.float32),
                           np.ones(len(index), bool))
        first = index.index(span.start)
        local = Span(first, first + len(span))
        [interpolated] = fill_missing_landmarks(obs, [local])
        return Observations(
            obs.face_counts[local.start : local.stop], obs.boxes[local.start : local.stop],
            obs.landmarks[local.start : local.stop], obs.has_landmarks[local.start : local.stop],
            obs.histograms[local.start : local.stop],
            np.array([self.frames[j].fresh for j in range(span.start, span.stop)]),
        ), interpolated

    # -- sample -------------------------------------------------------------------------------
    def _sample(self, video_id, source, index, span: Span, crop, encoded, obs: Observations, audio: PlacedAudio,
                info: VideoInfo, interpolated: int) -> dict:
        """The shard sample of a clip; `obs` holds the clip's frames only."""
        cfg = self.cfg
        frames = len(span)
        x0, y0, side = crop
        to_crop = cfg.size / side
        lmk_src = obs.landmarks  # (T, n, 3)
        pose, speed = clip_pose(lmk_src, cfg.landmarks, crop, cfg.fps, cfg.clip.smoothing_seconds)
        boxes = to_crop_pixels(obs.boxes, crop, cfg.size)
        lmk = lmk_src.copy()
        lmk[..., 0] -= x0
        lmk[..., 1] -= y0
        lmk *= to_crop

        a0 = int(round(span.start / cfg.fps * AUDIO_RATE))
        a1 = int(round(span.stop / cfg.fps * AUDIO_RATE))
        clip_audio = audio.read(a0, a1)
        features = self.featurizer(clip_audio, frames, cfg.fps)
        face_side = float(np.median(face_sides(obs.boxes)))

        meta = {
            "key": f"{video_id}_{index:03d}",
            "video_id": video_id,
            "source": source,
            "clip_index": index,
            "source_span_s": [span.start / cfg.fps, span.stop / cfg.fps],
            "source_frames": [span.start, span.stop],
            "source_clock_zero_s": info.start_s,
            "source_size": [info.width, info.height],
            "source_fps": info.source_fps,
            "source_picture": info.picture.describe(),
            "crop_box_source_px": [float(x0), float(y0), float(x0 + side), float(y0 + side)],
            "crop_scale": cfg.clip.crop_scale,
            "fps": cfg.fps,
            "frames": frames,
            "size": cfg.size,
            "colour": STORED_COLOUR_META,
            "audio_rate": AUDIO_RATE,
            "audio_features": {**self.featurizer.describe(), "shape": list(features.shape)},
            "landmarks": {"backend": cfg.landmarks, "points": int(lmk.shape[1]), "stored": cfg.store_landmarks},
            "pose_convention": "yaw,pitch,roll deg (intrinsic YXZ; +yaw face to image right, +pitch chin up, "
            "+roll counter-clockwise in image); tx,ty crop sides from centre; tz face scale (crop sides per cm)",
            "annotator_version": __version__,
            "edges": {"start": span.start_reason, "end": span.end_reason},
            "quality": {
                "audio_coverage": round(audio.coverage(a0, a1), 4),
                "face_side_px_source": face_side,
                "face_fraction": round(face_side / float(side), 4),
                "picture_rate": round(float(obs.fresh.sum()) * cfg.fps / frames, 2),
                "interpolated_frames": interpolated,
                "speed_mean": float(speed.mean()),
                "speed_p95": float(np.percentile(speed, 95)),
                "yaw_range": float(np.ptp(pose[:, 0])),
            },
        }
        sample = {
            "__key__": meta["key"],
            "mp4": encoded,
            "wav": encode_wav(clip_audio),
            "audio.npy": npy_bytes(features),
            "pose.npy": npy_bytes(pose.astype(np.float32)),
            "speed.npy": npy_bytes(speed.astype(np.float32)),
            "bbox.npy": npy_bytes(boxes),
            "mask.png": png_bytes(union_mask(boxes, cfg.size)),
            "json": json.dumps(meta).encode(),
        }
        if cfg.store_landmarks:
            sample["lmk.npy"] = npy_bytes(lmk.astype(np.float16))
        return sample

def _landmark_step(previous: _Frame | None, current: _Frame) -> float:
    """Median distance (x, y) the landmarks move from the previous frame, in face sides; NaN
    unless both frames have landmarks."""
    if previous is None or previous.landmarks is None or current.landmarks is None:
        return float("nan")
    pair = np.stack([previous.landmarks, current.landmarks])
    return float(landmark_steps(pair, np.stack([previous.box, current.box]), np.ones(2, bool))[1])


def fill_missing_landmarks(obs: Observations, spans: list[Span]) -> list[int]:
    """Landmarks and boxes of clip frames without a confirmed mesh (a detector's brief second
    face, tolerated inside a track) interpolated linearly from the nearest frames that have them,
    instead of zeros that would fake a pose jump; returns how many frames each clip got."""
    known = np.flatnonzero(obs.has_landmarks)
    filled = []
    for span in spans:
        missing = [t for t in range(span.start, span.stop) if not obs.has_landmarks[t]]
        for t in missing:
            after = np.searchsorted(known, t)
            lo, hi = known[max(after - 1, 0)], known[min(after, len(known) - 1)]
            w = 0.0 if hi == lo else (t - lo) / (hi - lo)
            obs.landmarks[t] = (1 - w) * obs.landmarks[lo] + w * obs.landmarks[hi]
            obs.boxes[t] = (1 - w) * obs.boxes[lo] + w * obs.boxes[hi]
        filled.append(len(missing))
    return filled


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
