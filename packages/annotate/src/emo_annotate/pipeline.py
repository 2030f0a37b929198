"""One video in, clip samples out: the chain of annotation stages.

1. probe + audio (PyAV)                          -> reject unusable inputs early; the audio is
   placed by its own timestamps on the clock of the first decodable frame (`media.decode_audio`)
2. pass 1: frames at the target fps, upright, square pixels, downscaled
                                                 -> faces, landmarks, grey histograms, picture changes
3. cut into clips (segment.find_clips): one face, continuous track, sound, a changing picture,
   no scene or jump cut, the face not lost in its crop; what is left out gets a reason
4. pass 2: frames again, only those in clips    -> fixed square crop cut from the coded planes,
   converted to the stored colour (BT.709 limited), upright, streamed into H.264
5. per clip: pose, speed, boxes, mask, landmarks, audio features -> a sample (shard contract)

Only per-frame observations are kept between the passes, never frames.
"""

from __future__ import annotations

import io
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from . import __version__
from .audio_features import AudioFeaturizer, make_featurizer
from .config import AnnotateConfig
from .crop import crop_box, face_sides, to_crop_pixels, union_mask
from .landmarks import make_detector
from .media import (
    AUDIO_RATE, STORED_COLOUR, AudioTrack, MediaError, Mp4Writer, VideoInfo, crop_to_stored, decode_audio, encode_wav,
    iter_frames, probe, to_rgb,
)
from .pose import clip_pose
from .segment import Dropped, FrameSignals, Span, face_patch, find_clips, grey_histogram, grey_thumbnail, landmark_steps, picture_changed

STATUS_OK = "ok"
STATUS_SKIPPED = "skipped"  # a readable input with nothing to train on
STATUS_FAILED = "failed"  # an input that could not be processed
STATUS_DROPPED = "dropped"  # a stretch of an input left out for a label problem (one row each)

# the stored clips' colour, as recorded in each sample's json (and tagged in the H.264 stream)
STORED_COLOUR_META = {**STORED_COLOUR.describe(), "primaries": "bt709", "transfer": "bt709", "tagged": True}


@dataclass
class VideoOutcome:
    status: str
    reason: str | None = None
    clips: int = 0
    dropped: list[Dropped] = field(default_factory=list)  # stretches left out, with reasons
    fps: float = 25.0  # to turn dropped frame ranges into seconds


@dataclass
class Observations:
    """Per output frame of pass 1."""

    face_counts: np.ndarray  # (T,) int
    boxes: np.ndarray  # (T, 4) float32 display pixels of the tracked face (last box where none)
    landmarks: np.ndarray  # (T, n, 3) float32 display pixels of the tracked face (zeros where none)
    has_landmarks: np.ndarray  # (T,) bool
    histograms: np.ndarray  # (T, bins) float32
    fresh: np.ndarray  # (T,) bool: the picture changed since the previous frame


class Annotator:
    """Holds the models (loaded once) and annotates videos one after another."""

    def __init__(self, cfg: AnnotateConfig, featurizer: AudioFeaturizer | None = None, threads: int = 0):
        self.cfg = cfg
        self.threads = threads  # decoder threads; 0 = FFmpeg's choice
        self.detector = make_detector(cfg.landmarks)
        self.featurizer = featurizer or make_featurizer(cfg.audio_features, cfg.mel, cfg.wav2vec2)

    def annotate(self, path: Path, video_id: str, source: str, emit: Callable[[dict], None]) -> VideoOutcome:
        """Annotate one video, calling `emit(sample)` per finished clip; never raises MediaError."""
        cfg = self.cfg
        try:
            info = probe(path)
            audio = decode_audio(path, AUDIO_RATE, "mono", start_s=info.start_s)
        except MediaError as err:
            status = STATUS_SKIPPED if str(err) in ("no audio track", "no video stream") else STATUS_FAILED
            return VideoOutcome(status, str(err), fps=cfg.fps)
        obs = self._observe(path, info)
        signals = FrameSignals(
            obs.face_counts, obs.boxes, obs.histograms,
            landmark_steps(obs.landmarks, obs.boxes, obs.has_landmarks), obs.fresh,
            audio.frame_coverage(len(obs.face_counts), cfg.fps),
        )
        cut = find_clips(signals, cfg.fps, cfg.clip, (info.width, info.height))
        if not cut.spans:
            return VideoOutcome(STATUS_SKIPPED, cut.reason, dropped=cut.dropped, fps=cfg.fps)
        interpolated = fill_missing_landmarks(obs, cut.spans)
        crops = [crop_box(obs.boxes[s.start : s.stop], info.width, info.height, cfg.clip.crop_scale) for s in cut.spans]
        for i, encoded in self._encode_clips(path, info, cut.spans, crops):
            span = cut.spans[i]
            emit(self._sample(video_id, source, i, span, crops[i], encoded, obs, audio, info, interpolated[i]))
        return VideoOutcome(STATUS_OK, None, clips=len(cut.spans), dropped=cut.dropped, fps=cfg.fps)

    # -- pass 1 -------------------------------------------------------------------------------
    def _observe(self, path: Path, info: VideoInfo) -> Observations:
        """Per-frame faces; keeps ~5.6 kB of landmarks per frame (MediaPipe, float32), never frames
        (only the previous detection frame, to tell whether the picture changed)."""
        self.detector.reset()
        n_points = self.detector.num_points
        counts, boxes, lmks, known, hists, fresh = [], [], [], [], [], []
        previous = None  # (source frame, detection rgb, grey thumbnail)
        still = self.cfg.clip.still_threshold
        for _, frame in iter_frames(path, self.cfg.fps, self.threads):
            if previous is not None and frame is previous[0]:
                # the constant-fps stream repeats a source frame: same observations, no new picture
                for values in (counts, boxes, lmks, known, hists):
                    values.append(values[-1])
                fresh.append(False)
                continue
            rgb = to_rgb(frame, self.cfg.detect_max_side, info.picture)
            # detection frames may be downscaled; landmarks go back to display pixels
            scale = info.width / rgb.shape[1]
            found = self.detector.detect(rgb, scale)
            count = found.count
            if count == 1 and found.face is None:
                count = 0  # a face without confirmed landmarks is no usable face
            counts.append(count)
            known.append(found.face is not None)
            if found.face is not None:
                boxes.append(found.face.box)
                lmks.append(found.face.landmarks)
            else:
                boxes.append(boxes[-1] if boxes else np.zeros(4, np.float32))
                lmks.append(np.zeros((n_points, 3), np.float32))
            grey = grey_thumbnail(rgb)
            hists.append(grey_histogram(grey))
            if previous is None:
                fresh.append(True)
            elif found.face is not None:  # the face, cut by the same box from both frames
                box = found.face.box
                fresh.append(picture_changed(face_patch(previous[1], box, scale), face_patch(rgb, box, scale), still))
            else:
                fresh.append(picture_changed(previous[2], grey, still))
            previous = (frame, rgb, grey)
        if not counts:
            return Observations(
                np.zeros(0, int), np.zeros((0, 4), np.float32), np.zeros((0, n_points, 3), np.float32),
                np.zeros(0, bool), np.zeros((0, 32), np.float32), np.zeros(0, bool),
            )
        return Observations(np.array(counts), np.stack(boxes), np.stack(lmks), np.array(known), np.stack(hists), np.array(fresh))

    # -- pass 2 -------------------------------------------------------------------------------
    def _encode_clips(self, path: Path, info: VideoInfo, spans: list[Span], crops: list[np.ndarray]):
        """Yield `(clip index, mp4 bytes)` as each clip's last frame is encoded (spans are sorted)."""
        owner = np.full(spans[-1].stop, -1)
        for i, s in enumerate(spans):
            owner[s.start : s.stop] = i
        writer = None
        for k, frame in iter_frames(path, self.cfg.fps, self.threads):
            if k >= len(owner):
                break
            i = int(owner[k])
            if i < 0:
                continue  # not in a clip: never converted
            if k == spans[i].start:
                writer = Mp4Writer(self.cfg.fps, self.cfg.size, self.cfg.size, self.cfg.crf, self.cfg.x264_preset)
            writer.add_yuv420(crop_to_stored(frame, info.picture, crops[i], self.cfg.size))
            if k == spans[i].stop - 1:
                yield i, writer.finish()

    # -- sample -------------------------------------------------------------------------------
    def _sample(self, video_id, source, index, span: Span, crop, encoded, obs: Observations, audio: AudioTrack,
                info: VideoInfo, interpolated: int) -> dict:
        cfg = self.cfg
        frames = len(span)
        x0, y0, side = crop
        to_crop = cfg.size / side
        lmk_src = obs.landmarks[span.start : span.stop]  # (T, n, 3)
        pose, speed = clip_pose(lmk_src, cfg.landmarks, crop, cfg.fps, cfg.clip.smoothing_seconds)
        boxes = to_crop_pixels(obs.boxes[span.start : span.stop], crop, cfg.size)
        lmk = lmk_src.copy()
        lmk[..., 0] -= x0
        lmk[..., 1] -= y0
        lmk *= to_crop

        a0 = int(round(span.start / cfg.fps * AUDIO_RATE))
        a1 = int(round(span.stop / cfg.fps * AUDIO_RATE))
        clip_audio = audio.samples[0, a0:a1]
        clip_audio = np.pad(clip_audio, (0, (a1 - a0) - len(clip_audio)))
        features = self.featurizer(clip_audio, frames, cfg.fps)
        face_side = float(np.median(face_sides(obs.boxes[span.start : span.stop])))

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
                "picture_rate": round(float(obs.fresh[span.start : span.stop].sum()) * cfg.fps / frames, 2),
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

    def close(self) -> None:
        self.detector.close()


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


def library_versions() -> dict:
    import importlib.metadata as md

    names = ["av", "numpy", "scipy", "mediapipe", "face-alignment", "torch", "transformers", "ray",
             "webdataset", "pyarrow", "opencv-contrib-python"]
    versions = {"python": platform.python_version(), "emo-annotate": __version__}
    for name in names:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return versions
