"""Per-video figures from the per-frame measurements of `analysis`; every key is documented in
the README ("report.json")."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .analysis import PairSeries, Tools, VideoSeries
from .faces import face_box, lip_points
from .identity import cosine
from .lipsync import audio_envelope, landmark_sync, mouth_opening, mouth_summary
from .motion import head_motion
from .pixels import landmark_distance, seam_flicker

AUDIO_RATE = 16000
LMD_SIDE = 256  # LMD is in pixels of frames scaled to this side


@dataclass
class Curves:
    """Per-frame series of one video, for the plots."""

    mouth: np.ndarray | None = None  # mouth opening
    envelope: np.ndarray | None = None  # audio RMS
    identity: np.ndarray | None = None  # cosine to the portrait
    speed: np.ndarray | None = None  # measured head speed deg/s
    extra: dict = field(default_factory=dict)


def _mean(values) -> float | None:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def _syncnet_scores(series: VideoSeries, audio: np.ndarray, tools: Tools) -> dict:
    from .syncnet import crop_face, sync_scores, track_boxes

    landmarks = series.landmark_array()
    found = np.isfinite(landmarks).all(axis=(1, 2))
    if found.sum() < 2:
        return {"sync_c": None, "sync_d": None, "sync_offset": None}
    scale = series.small_frames[0].shape[0] / series.height
    boxes = np.full((series.frames, 4), np.nan, np.float32)
    boxes[found] = np.stack([face_box(lmk) for lmk in landmarks[found]]) * scale
    t = np.arange(series.frames)
    boxes = np.stack([np.interp(t, t[found], boxes[found, j]) for j in range(4)], axis=1)
    track = track_boxes(boxes)
    crops = np.stack([crop_face(frame, *track[i]) for i, frame in enumerate(series.small_frames)])
    scores = sync_scores(tools.syncnet, crops, audio, tools.cfg.max_offset, device=tools.cfg.device)
    if scores is None:
        return {"sync_c": None, "sync_d": None, "sync_offset": None}
    return {"sync_c": scores.confidence, "sync_d": scores.distance, "sync_offset": scores.offset}


def video_metrics(series: VideoSeries, tools: Tools, audio: np.ndarray | None, portrait: np.ndarray | None,
                  speed: float | np.ndarray | None, timings: dict[str, float]) -> tuple[dict, Curves]:
    """Figures of one video on its own (generated or real): faces, mouth and sync, identity to
    the portrait and its drift, head motion, seam flicker."""
    cfg = tools.cfg
    landmarks = series.landmark_array()
    found = np.isfinite(landmarks).all(axis=(1, 2))
    out: dict = {"frames": series.frames, "fps": series.fps, "width": series.width, "height": series.height,
                 "face_frames": int(found.sum())}
    curves = Curves()

    t = time.perf_counter()
    curves.mouth = mouth_opening(landmarks)
    if audio is not None:
        curves.envelope = audio_envelope(audio, AUDIO_RATE, series.fps, series.frames)
        sync = landmark_sync(curves.mouth, curves.envelope, cfg.max_offset)
        out.update({"lsync_offset": sync.offset, "lsync_corr": sync.correlation, "lsync_corr_at_0": sync.correlation_at_zero})
        out.update(mouth_summary(curves.mouth, curves.envelope))
    else:
        out.update({"lsync_offset": None, "lsync_corr": None, "lsync_corr_at_0": None, "mouth_open_mean": _mean(curves.mouth)})
    timings["landmark_sync"] = timings.get("landmark_sync", 0.0) + time.perf_counter() - t

    if tools.syncnet is not None and audio is not None:
        t = time.perf_counter()
        out.update(_syncnet_scores(series, audio, tools))
        timings["syncnet"] = timings.get("syncnet", 0.0) + time.perf_counter() - t

    embeddings = series.embedding_array()
    if embeddings is not None:
        out["identity_frames"] = int(np.isfinite(embeddings).all(axis=1).sum())
        if portrait is not None:
            curves.identity = cosine(embeddings, portrait[None])
            out["fsim"] = _mean(curves.identity)
        clip = cfg.clip_frames
        if series.frames >= 2 * clip:
            first, last = embeddings[:clip], embeddings[-clip:]
            first, last = first[np.isfinite(first).all(1)], last[np.isfinite(last).all(1)]
            if len(first) and len(last):
                a, b = first.mean(0), last.mean(0)
                out["identity_first_last"] = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    t = time.perf_counter()
    motion, _, curves.speed = head_motion(landmarks, series.fps, max(series.width, series.height), speed)
    out.update(motion)
    timings["head_motion"] = timings.get("head_motion", 0.0) + time.perf_counter() - t
    out.update(seam_flicker(np.asarray(series.changes), cfg.clip_frames))
    return out, curves


def paired_metrics(pair: PairSeries) -> tuple[dict, np.ndarray | None]:
    """Generated against real, frame by frame: PSNR, SSIM, LMD, CSIM; and the per-frame CSIM."""
    gen, real = pair.generated, pair.real
    out = {"paired_frames": len(pair.psnr), "psnr": _mean(pair.psnr), "ssim": _mean(pair.ssim)}
    n = min(gen.frames, real.frames)
    lg, lr = gen.landmark_array()[:n], real.landmark_array()[:n]
    both = np.isfinite(lg).all(axis=(1, 2)) & np.isfinite(lr).all(axis=(1, 2))
    lips = lip_points()
    sg, sr = LMD_SIDE / max(gen.height, gen.width), LMD_SIDE / max(real.height, real.width)
    out["lmd"] = _mean([landmark_distance(lg[t] * sg, lr[t] * sr, lips, 1.0) for t in np.flatnonzero(both)])
    eg, er = gen.embedding_array(), real.embedding_array()
    per_frame = None
    if eg is not None and er is not None:
        per_frame = cosine(eg[:n], er[:n])
        out["csim"] = _mean(per_frame)
    return out, per_frame
