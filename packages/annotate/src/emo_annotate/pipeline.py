"""One video in, clip samples out: the chain of annotation stages.

1. probe + audio (PyAV, 16 kHz mono)            -> reject unusable inputs early
2. pass 1: frames at the target fps, downscaled -> faces, landmarks, grey histograms
3. cut into clips (segment.find_clips)
4. pass 2: frames again, only those in clips    -> fixed square crop, streamed into H.264
5. per clip: pose, speed, boxes, mask, landmarks, audio features -> a sample (shard contract)

Only per-frame observations are kept between the passes, never frames.
"""

from __future__ import annotations

import io
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from . import __version__
from .audio_features import AudioFeaturizer, make_featurizer
from .config import AnnotateConfig
from .crop import crop_box, crop_square_yuv420, face_sides, to_crop_pixels, union_mask
from .landmarks import make_detector
from .media import AUDIO_RATE, MediaError, Mp4Writer, encode_wav, iter_frames, probe, read_audio, to_rgb, to_yuv420
from .pose import clip_pose
from .segment import Span, find_clips, grey_histogram

STATUS_OK = "ok"
STATUS_SKIPPED = "skipped"  # a readable input with nothing to train on
STATUS_FAILED = "failed"  # an input that could not be processed


@dataclass
class VideoOutcome:
    status: str
    reason: str | None = None
    clips: int = 0


@dataclass
class Observations:
    """Per output frame of pass 1."""

    face_counts: np.ndarray  # (T,) int
    boxes: np.ndarray  # (T, 4) float32 source pixels of the tracked face (last box where none)
    landmarks: np.ndarray  # (T, n, 3) float32 source pixels of the tracked face (zeros where none)
    histograms: np.ndarray  # (T, bins) float32


class Annotator:
    """Holds the models (loaded once) and annotates videos one after another."""

    def __init__(self, cfg: AnnotateConfig, featurizer: AudioFeaturizer | None = None, threads: int = 0):
        self.cfg = cfg
        self.threads = threads  # decoder threads; 0 = FFmpeg's choice
        self.detector = make_detector(cfg.landmarks)
        self.featurizer = featurizer or make_featurizer(cfg.audio_features, cfg.mel, cfg.wav2vec2)

    def annotate(self, path: Path, video_id: str, source: str, emit: Callable[[dict], None]) -> VideoOutcome:
        """Annotate one video, calling `emit(sample)` per finished clip; never raises MediaError."""
        try:
            info = probe(path)
            audio = read_audio(path)
        except MediaError as err:
            status = STATUS_SKIPPED if str(err) == "no audio track" else STATUS_FAILED
            return VideoOutcome(status, str(err))
        obs = self._observe(path, info.width)
        spans, reason = find_clips(obs.face_counts, obs.boxes, obs.histograms, self.cfg.fps, self.cfg.clip)
        if not spans:
            return VideoOutcome(STATUS_SKIPPED, reason)
        crops = [crop_box(obs.boxes[s.start : s.stop], info.width, info.height, self.cfg.clip.crop_scale) for s in spans]
        for i, encoded in self._encode_clips(path, spans, crops):
            emit(self._sample(video_id, source, i, spans[i], crops[i], encoded, obs, audio, info))
        return VideoOutcome(STATUS_OK, None, clips=len(spans))

    # -- pass 1 -------------------------------------------------------------------------------
    def _observe(self, path: Path, source_width: int) -> Observations:
        """Per-frame faces; keeps ~5.6 kB of landmarks per frame (MediaPipe, float32), never frames."""
        self.detector.reset()
        n_points = self.detector.num_points
        counts, boxes, lmks, hists = [], [], [], []
        for _, frame in iter_frames(path, self.cfg.fps, self.threads):
            rgb = to_rgb(frame, self.cfg.detect_max_side)
            # detection frames may be downscaled; landmarks go back to source pixels
            found = self.detector.detect(rgb, source_width / rgb.shape[1])
            count = found.count
            if count == 1 and found.face is None:
                count = 0  # a face without confirmed landmarks is no usable face
            counts.append(count)
            if found.face is not None:
                boxes.append(found.face.box)
                lmks.append(found.face.landmarks)
            else:
                boxes.append(boxes[-1] if boxes else np.zeros(4, np.float32))
                lmks.append(np.zeros((n_points, 3), np.float32))
            hists.append(grey_histogram(rgb))
        if not counts:
            return Observations(
                np.zeros(0, int), np.zeros((0, 4), np.float32), np.zeros((0, n_points, 3), np.float32), np.zeros((0, 32), np.float32)
            )
        return Observations(np.array(counts), np.stack(boxes), np.stack(lmks), np.stack(hists))

    # -- pass 2 -------------------------------------------------------------------------------
    def _encode_clips(self, path: Path, spans: list[Span], crops: list[np.ndarray]):
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
            writer.add_yuv420(crop_square_yuv420(to_yuv420(frame), crops[i], self.cfg.size))
            if k == spans[i].stop - 1:
                yield i, writer.finish()

    # -- sample -------------------------------------------------------------------------------
    def _sample(self, video_id, source, index, span, crop, encoded, obs, audio, info) -> dict:
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
        clip_audio = audio[a0:a1]
        coverage = len(clip_audio) / max(1, a1 - a0)
        clip_audio = np.pad(clip_audio, (0, (a1 - a0) - len(clip_audio)))
        features = self.featurizer(clip_audio, frames, cfg.fps)

        meta = {
            "key": f"{video_id}_{index:03d}",
            "video_id": video_id,
            "source": source,
            "clip_index": index,
            "source_span_s": [span.start / cfg.fps, span.stop / cfg.fps],
            "source_frames": [span.start, span.stop],
            "source_size": [info.width, info.height],
            "source_fps": info.source_fps,
            "crop_box_source_px": [float(x0), float(y0), float(x0 + side), float(y0 + side)],
            "crop_scale": cfg.clip.crop_scale,
            "fps": cfg.fps,
            "frames": frames,
            "size": cfg.size,
            "audio_rate": AUDIO_RATE,
            "audio_features": {**self.featurizer.describe(), "shape": list(features.shape)},
            "landmarks": {"backend": cfg.landmarks, "points": int(lmk.shape[1]), "stored": cfg.store_landmarks},
            "pose_convention": "yaw,pitch,roll deg (intrinsic YXZ; +yaw face to image right, +pitch chin up, "
            "+roll counter-clockwise in image); tx,ty crop sides from centre; tz face scale (crop sides per cm)",
            "annotator_version": __version__,
            "quality": {
                "audio_coverage": round(float(coverage), 4),
                "face_side_px_source": float(np.median(face_sides(obs.boxes[span.start : span.stop]))),
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
