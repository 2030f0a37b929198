"""One pass over a generated video and its real counterpart: every per-frame measurement the
metrics need (landmarks, identity embeddings, Inception and I3D features, frame change, PSNR /
SSIM, SyncNet face crops), keeping no frames but small thumbnails."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .config import EvalConfig
from .errors import EvalError
from .faces import NUM_POINTS, FaceTracker
from .pixels import frame_change, psnr, same_size, ssim

INCEPTION_BATCH = 16
THUMB_SIDE = 160


@dataclass
class Tools:
    """The models of one evaluation, loaded once; a metric whose model is missing is skipped
    with the reason in `skipped`."""

    cfg: EvalConfig
    embedder: object | None = None  # identity.Embedder
    inception: object | None = None  # frechet.InceptionFeatures
    i3d: object | None = None  # frechet.I3DFeatures
    syncnet: object | None = None  # syncnet.SyncNet
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it is not measured
    trackers: tuple[FaceTracker, FaceTracker] | None = None  # generated, real (MediaPipe tracks per video)

    @classmethod
    def load(cls, cfg: EvalConfig) -> "Tools":
        from .frechet import I3DFeatures, InceptionFeatures
        from .identity import make_embedder
        from .syncnet import load_syncnet

        tools = cls(cfg)
        tools.embedder = make_embedder(cfg.identity, cfg.arcface)
        if tools.embedder is None:
            tools.skipped["fsim"] = tools.skipped["csim"] = "turned off (--identity none)"
        if cfg.fid:
            try:
                tools.inception = InceptionFeatures(cfg.device)
            except EvalError as err:
                tools.skipped["fid"] = str(err)
        else:
            tools.skipped["fid"] = "turned off (--no-fid)"
        if cfg.i3d is not None:
            tools.i3d = I3DFeatures(cfg.i3d, cfg.device)
        else:
            tools.skipped["fvd"] = "no I3D weights (--i3d PATH: StyleGAN-V's i3d_torchscript.pt)"
        if cfg.syncnet is not None:
            tools.syncnet = load_syncnet(cfg.syncnet, cfg.device)
        else:
            tools.skipped["sync_c"] = tools.skipped["sync_d"] = "no SyncNet weights (--syncnet PATH: syncnet_v2.model)"
        tools.trackers = (FaceTracker(cfg.analysis_size), FaceTracker(cfg.analysis_size))
        return tools

    def close(self) -> None:
        for tracker in self.trackers or ():
            tracker.close()


@dataclass
class VideoSeries:
    """Per-frame measurements of one video (T frames at the evaluation's fps)."""

    path: Path
    fps: float
    height: int = 0
    width: int = 0
    landmarks: list[np.ndarray] = field(default_factory=list)  # (468, 3) frame px; NaN: no face
    embeddings: list[np.ndarray | None] = field(default_factory=list)  # unit vectors; None: no face
    changes: list[float] = field(default_factory=list)  # grey change into each frame after the first
    inception: list[np.ndarray] = field(default_factory=list)  # (n, 2048) batches
    i3d: list[np.ndarray] = field(default_factory=list)  # (400,) per 16-frame window
    small_frames: list[np.ndarray] = field(default_factory=list)  # frames at <= analysis size (SyncNet only)
    thumbs: dict[int, np.ndarray] = field(default_factory=dict)  # frame index -> small RGB

    @property
    def frames(self) -> int:
        return len(self.landmarks)

    def landmark_array(self) -> np.ndarray:
        return np.stack(self.landmarks) if self.landmarks else np.zeros((0, NUM_POINTS, 3), np.float32)

    def embedding_array(self) -> np.ndarray | None:
        """(T, d) with NaN rows where no face; None without an embedder."""
        dims = next((e.shape[0] for e in self.embeddings if e is not None), None)
        if dims is None:
            return None
        return np.stack([e if e is not None else np.full(dims, np.nan, np.float32) for e in self.embeddings])

    def inception_array(self) -> np.ndarray | None:
        return np.concatenate(self.inception) if self.inception else None


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """A copy with the long side THUMB_SIDE (for the frame strip)."""
    scale = THUMB_SIDE / max(rgb.shape[:2])
    return cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def read_frames(path: Path, fps: float) -> Iterator[np.ndarray]:
    """RGB frames of a video at a constant `fps` (the annotator's decoder)."""
    from emo_annotate.errors import MediaError
    from emo_annotate.media import iter_frames, to_rgb

    try:
        previous, rgb = None, None
        for _, frame in iter_frames(path, fps):
            if frame is not previous:  # a repeated frame is the same object: convert it once
                rgb, previous = to_rgb(frame), frame
            yield rgb
    except MediaError as err:
        raise EvalError(f"{path}: {err}") from None


def video_fps(path: Path) -> float:
    from emo_annotate.errors import MediaError
    from emo_annotate.media import probe

    try:
        info = probe(Path(path))
    except MediaError as err:
        raise EvalError(f"{path}: {err}") from None
    return info.source_fps or 25.0


class _Recorder:
    """Feeds one video's frames to every per-frame measurement, timing each."""

    def __init__(self, series: VideoSeries, tools: Tools, tracker: FaceTracker, timings: dict[str, float]):
        self.series, self.tools, self.tracker, self.timings = series, tools, tracker, timings
        self._batch: list[np.ndarray] = []
        self._window: list[np.ndarray] = []
        self._previous: np.ndarray | None = None
        self._thumb_every = max(1, round(series.fps))
        tracker.reset()

    def _timed(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self.timings[name] += now - start
        return now

    def add(self, rgb: np.ndarray) -> None:
        s, tools, cfg = self.series, self.tools, self.tools.cfg
        t = time.perf_counter()
        if not s.landmarks:
            s.height, s.width = rgb.shape[:2]
        index = s.frames
        landmarks = self.tracker.track(rgb)
        s.landmarks.append(landmarks if landmarks is not None else np.full((NUM_POINTS, 3), np.nan, np.float32))
        t = self._timed("landmarks", t)
        if tools.embedder is not None:
            s.embeddings.append(tools.embedder.embed(rgb, landmarks) if landmarks is not None else None)
            t = self._timed("identity", t)
        if self._previous is not None:
            s.changes.append(frame_change(self._previous, rgb))
        self._previous = rgb
        if index % self._thumb_every == 0:
            s.thumbs[index] = thumbnail(rgb)
        t = self._timed("frame_change", t)
        if tools.inception is not None:
            self._batch.append(rgb)
            if len(self._batch) == INCEPTION_BATCH:
                self._flush_inception()
            t = self._timed("fid_features", t)
        if tools.i3d is not None:
            self._window.append(rgb)
            if len(self._window) == cfg.fvd_frames:
                s.i3d.append(tools.i3d(self._window))
                self._window = []
            t = self._timed("fvd_features", t)
        if tools.syncnet is not None:
            scale = min(1.0, cfg.analysis_size / max(rgb.shape[:2]))
            s.small_frames.append(rgb if scale == 1 else cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))

    def _flush_inception(self) -> None:
        if self._batch:
            self.series.inception.append(self.tools.inception(self._batch))
            self._batch = []

    def finish(self) -> VideoSeries:
        t = time.perf_counter()
        self._flush_inception()
        self._timed("fid_features", t)
        return self.series


@dataclass
class PairSeries:
    generated: VideoSeries
    real: VideoSeries | None
    psnr: list[float]
    ssim: list[float]
    timings: dict[str, float]


def analyze_pair(generated: Path, real: Path | None, tools: Tools) -> PairSeries:
    """Decode the generated video at its own fps and the real one at the same fps, frame by frame."""
    fps = video_fps(generated)
    timings: dict[str, float] = defaultdict(float)
    gen_rec = _Recorder(VideoSeries(Path(generated), fps), tools, tools.trackers[0], timings)
    real_rec = _Recorder(VideoSeries(Path(real), fps), tools, tools.trackers[1], timings) if real is not None else None
    psnrs, ssims = [], []
    t = time.perf_counter()
    streams = [read_frames(generated, fps)] + ([read_frames(real, fps)] if real is not None else [])
    for frames in zip_longest(*streams):
        timings["decode"] += time.perf_counter() - t
        gen, ref = frames[0], (frames[1] if real is not None else None)
        if gen is not None:
            gen_rec.add(gen)
        if ref is not None:
            real_rec.add(ref)
        if gen is not None and ref is not None:
            t = time.perf_counter()
            resized = same_size(gen, ref)
            psnrs.append(psnr(resized, ref))
            t2 = time.perf_counter()
            timings["psnr"] += t2 - t
            ssims.append(ssim(resized, ref))
            timings["ssim"] += time.perf_counter() - t2
        t = time.perf_counter()
    series = gen_rec.finish()
    if series.frames == 0:
        raise EvalError(f"{generated}: no video frames")
    real_series = real_rec.finish() if real_rec is not None else None
    if real_series is not None and real_series.frames == 0:
        raise EvalError(f"{real}: no video frames")
    return PairSeries(series, real_series, psnrs, ssims, dict(timings))
