"""The portrait: read, find the face with the annotator's detector, crop it as training clips
were cropped, and draw the Face Locator's mask."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import InferError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Portrait:
    pixels: np.ndarray  # (S, S, 3) uint8 RGB: the face-centred crop
    mask: np.ndarray  # (S, S) uint8: 255 inside the Face Locator's face region
    face_box: np.ndarray  # (4,) float32 x0, y0, x1, y1 in crop pixels
    crop: np.ndarray  # (3,) x0, y0, side of the crop in the photo's pixels


def read_image(path: Path) -> np.ndarray:
    """(h, w, 3) uint8 RGB of the photo (`emo_annotate.media.read_image`)."""
    from emo_annotate.errors import MediaError
    from emo_annotate.media import read_image as read

    try:
        return read(path)
    except MediaError as err:
        raise InferError(f"--image: {err}") from None


def prepare_portrait(path: Path, size: int, crop_scale: float, mask_scale: float, landmarks: str = "mediapipe") -> Portrait:
    """The face crop of the photo at `path` and its face mask; InferError without exactly a face."""
    from emo_annotate.config import AnnotateConfig
    from emo_annotate.crop import crop_box, crop_square, to_crop_pixels, union_mask
    from emo_annotate.landmarks import make_detector, native_logs_silenced

    rgb = read_image(path)
    height, width = rgb.shape[:2]
    # detect on a copy downscaled as the annotator's (the face detector's input is small anyway)
    max_side = AnnotateConfig().detect_max_side
    small = rgb
    if max(width, height) > max_side:
        scale = max_side / max(width, height)
        small = cv2.resize(rgb, (max(2, round(width * scale)), max(2, round(height * scale))), interpolation=cv2.INTER_AREA)
    with native_logs_silenced():
        detector = make_detector(landmarks)
        try:
            found = detector.detect(small, width / small.shape[1])
        finally:
            detector.close()
    if found.face is None:
        raise InferError(f"--image: no face found in {path}")
    if found.count > 1:
        logger.warning("%s shows %d faces; animating the one with face landmarks", path, found.count)

    box = found.face.box.astype(np.float64)[None]  # (1, 4) photo pixels
    crop = crop_box(box, width, height, crop_scale)
    pixels = crop_square(rgb, crop, size, fill=0)
    face_box = to_crop_pixels(box, crop, size)[0]
    centre, half = (face_box[:2] + face_box[2:]) / 2, (face_box[2:] - face_box[:2]) / 2 * mask_scale
    mask_box = np.clip(np.concatenate([centre - half, centre + half]), 0, size)[None]
    return Portrait(pixels, union_mask(mask_box, size), face_box, crop)
