"""Sync-C / Sync-D (LSE-C / LSE-D) with SyncNet (Chung & Zisserman 2016), as its reference
evaluation computes them, on user-supplied `syncnet_v2.model` weights.

The network is defined here rather than imported from `syncnet-python`: that wheel's package
imports its whole face-detection pipeline on import (scenedetect 0.6, ffmpeg-python, which needs
an `ffmpeg` program, torchvision, pandas) and loads weights with plain `torch.load`, which runs
pickled code. The layers below carry exactly the names and shapes of the reference `S` module,
so the reference state dict (keys `__S__.netcnnaud.0.weight`, ...) loads strictly, and it is read
with `torch.load(weights_only=True)`: tensors only, no code.

Protocol (the reference `SyncNetInstance.evaluate`): face crops 224x224 (BGR, 0..255) of the face
track, crop box = the face box grown as in the reference `crop_video` (crop_scale 0.4, grey 110
outside the frame), box centre and size median-filtered over 13 frames; 13 MFCCs at 100 Hz of
the 16 kHz audio (python_speech_features, 16-bit scale). Every 5-frame window gives a lip
embedding and the matching 20 MFCC frames an audio embedding; for offsets -15..15 the mean
distance over windows; Sync-D = the smallest mean distance, Sync-C = median - smallest, offset =
the best one. Face boxes come from MediaPipe (the reference uses S3FD).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import EvalError

CROP_SCALE = 0.4  # the reference crop_video's --crop_scale
PAD_VALUE = 110  # grey the reference pads frames with
MEDIAN_FRAMES = 13  # the reference smooths the track's box with a median filter of this length
WINDOW = 5  # video frames per SyncNet window (0.2 s at 25 fps)
MFCC_PER_FRAME = 4  # MFCC frames (100 Hz) per video frame at 25 fps


def _bn_relu(channels: int, dims: int) -> list[nn.Module]:
    norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims](channels)
    return [norm, nn.ReLU(inplace=True)]


class SyncNet(nn.Module):
    """The reference SyncNet `S`: an audio CNN on (b, 1, 13, 20) MFCC windows and a lip CNN on
    (b, 3, 5, 224, 224) face windows, each into a 1024-d embedding. Indices inside the Sequentials
    match the reference (their pooling / activation slots included)."""

    def __init__(self, embedding: int = 1024):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, 3, padding=1), *_bn_relu(64, 2), nn.MaxPool2d(1, 1),
            nn.Conv2d(64, 192, 3, padding=1), *_bn_relu(192, 2), nn.MaxPool2d(3, (1, 2)),
            nn.Conv2d(192, 384, 3, padding=1), *_bn_relu(384, 2),
            nn.Conv2d(384, 256, 3, padding=1), *_bn_relu(256, 2),
            nn.Conv2d(256, 256, 3, padding=1), *_bn_relu(256, 2), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 512, (5, 4)), *_bn_relu(512, 2),
        )
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), *_bn_relu(512, 1), nn.Linear(512, embedding))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), *_bn_relu(512, 1), nn.Linear(512, embedding))
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2)), *_bn_relu(96, 3), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            nn.Conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), *_bn_relu(256, 3),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), *_bn_relu(256, 3),
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), *_bn_relu(256, 3),
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), *_bn_relu(256, 3), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            nn.Conv3d(256, 512, (1, 6, 6)), *_bn_relu(512, 3),
        )

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(b, 1, 13, 20) -> (b, 1024)."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, faces: torch.Tensor) -> torch.Tensor:
        """(b, 3, 5, 224, 224) BGR 0..255 -> (b, 1024)."""
        return self.netfclip(self.netcnnlip(faces).flatten(1))


def load_syncnet(path: Path, device: str = "cpu") -> SyncNet:
    """The reference weights (`syncnet_v2.model`: a state dict of SyncNetInstance, keys prefixed
    `__S__.`; a bare `S` state dict loads too), tensors only; EvalError when they do not fit."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError... for foreign files
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise EvalError(f"--syncnet: {path} is not a SyncNet state dict of tensors ({first})") from None
    if not isinstance(state, dict):
        raise EvalError(f"--syncnet: {path} holds a {type(state).__name__}, not a state dict")
    state = {k.removeprefix("__S__."): v for k, v in state.items()}
    model = SyncNet()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise EvalError(f"--syncnet: {path} does not match SyncNet's layers ({str(err).splitlines()[0]})") from None
    return model.eval().to(device)


def track_boxes(boxes: np.ndarray) -> np.ndarray:
    """(T, 3) centre x, centre y, half side: the face boxes (T, 4) median-filtered as the reference's track."""
    from scipy.signal import medfilt

    half = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    kernel = min(MEDIAN_FRAMES, len(boxes) if len(boxes) % 2 else len(boxes) - 1)
    if kernel >= 3:
        half, cx, cy = medfilt(half, kernel), medfilt(cx, kernel), medfilt(cy, kernel)
    return np.stack([cx, cy, half], axis=1)


def crop_face(rgb: np.ndarray, centre_x: float, centre_y: float, half: float) -> np.ndarray:
    """(224, 224, 3) uint8 BGR: the reference crop (more room below the face than above)."""
    import cv2

    pad = int(half * (1 + 2 * CROP_SCALE))
    frame = cv2.copyMakeBorder(rgb[:, :, ::-1], pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    my, mx = centre_y + pad, centre_x + pad
    face = frame[int(my - half) : int(my + half * (1 + 2 * CROP_SCALE)),
                 int(mx - half * (1 + CROP_SCALE)) : int(mx + half * (1 + CROP_SCALE))]
    return cv2.resize(face, (224, 224))


def mfcc_features(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """(13, n) MFCCs at 100 Hz as the reference computes them (16-bit sample scale)."""
    import python_speech_features

    return python_speech_features.mfcc(np.asarray(audio, np.float64) * 32768.0, sample_rate).T.astype(np.float32)


@dataclass(frozen=True)
class SyncScores:
    confidence: float  # Sync-C / LSE-C: median distance - best distance (higher: better sync)
    distance: float  # Sync-D / LSE-D: best mean distance (lower: better sync)
    offset: int  # frames; > 0: the mouth follows the audio late
    windows: int  # 5-frame windows scored


@torch.inference_mode()
def sync_scores(model: SyncNet, crops: np.ndarray, audio16k: np.ndarray, max_offset: int = 15,
                batch: int = 20, device: str = "cpu") -> SyncScores | None:
    """Scores of face crops (T, 224, 224, 3) BGR against 16 kHz audio; None when under a window."""
    mfcc = mfcc_features(audio16k, 16000)
    count = min(len(crops), mfcc.shape[1] // MFCC_PER_FRAME) - WINDOW + 1
    if count < 1:
        return None
    video = torch.from_numpy(np.ascontiguousarray(crops)).permute(3, 0, 1, 2).float()  # (3, T, 224, 224)
    lips, sounds = [], []
    for start in range(0, count, batch):
        frames = range(start, min(count, start + batch))
        lips.append(model.forward_lip(torch.stack([video[:, f : f + WINDOW] for f in frames]).to(device)).cpu())
        cc = [torch.from_numpy(mfcc[None, :, f * MFCC_PER_FRAME : f * MFCC_PER_FRAME + WINDOW * MFCC_PER_FRAME]) for f in frames]
        sounds.append(model.forward_aud(torch.stack(cc).to(device)).cpu())
    lip, sound = torch.cat(lips), torch.cat(sounds)  # (n, 1024) each
    # distance of each lip window to the audio windows shifted by -max_offset..max_offset
    padded = torch.nn.functional.pad(sound, (0, 0, max_offset, max_offset))
    span = 2 * max_offset + 1
    dists = torch.stack([torch.nn.functional.pairwise_distance(lip[[i]].repeat(span, 1), padded[i : i + span])
                         for i in range(len(lip))])  # (n, span)
    mean = dists.mean(0)
    best = int(torch.argmin(mean))
    return SyncScores(float(torch.median(mean) - mean[best]), float(mean[best]), max_offset - best, len(lip))
