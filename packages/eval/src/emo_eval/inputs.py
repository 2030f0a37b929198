"""What is compared with what: videos paired by file stem, with their portrait, driving audio and
requested head speed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Union

import numpy as np

from .errors import EvalError

VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav", ".mp3", ".m4a", ".flac", ".ogg", ".aac", ".opus"} | VIDEO_SUFFIXES
SPEED_SUFFIXES = {".npy", ".txt", ".csv"}

# a constant (deg/s), one value per frame, or a file of them; per video when keyed by stem
Speed = Union[float, np.ndarray, Path, None]
SpeedSpec = Union[Speed, Mapping[str, Speed]]


@dataclass(frozen=True)
class VideoItem:
    name: str  # the file stem that pairs everything
    generated: Path
    real: Path | None = None
    portrait: Path | None = None
    audio: Path | None = None  # None: the generated video's own sound track (else the real one's)
    speed: float | np.ndarray | None = None  # requested head speed, deg/s: constant or (frames,)


def collect(path: Path, suffixes: set[str], option: str) -> dict[str, Path]:
    """`{stem: file}` of a folder's files with one of `suffixes` (a file alone: itself)."""
    path = Path(path)
    if path.is_file():
        return {path.stem: path}
    if not path.is_dir():
        raise EvalError(f"{option}: no such file or directory: {path}")
    found: dict[str, Path] = {}
    for file in sorted(path.iterdir()):
        if file.is_file() and file.suffix.lower() in suffixes and not file.name.startswith("."):
            if file.stem in found:
                raise EvalError(f"{option}: two files named {file.stem} in {path} ({found[file.stem].name}, {file.name})")
            found[file.stem] = file
    if not found:
        raise EvalError(f"{option}: no {'/'.join(sorted(suffixes))} files in {path}")
    return found


def _match(names: list[str], path: Path | None, suffixes: set[str], option: str) -> dict[str, Path | None]:
    """Each name's file under `path`: a single file serves every video; a folder pairs by stem."""
    if path is None:
        return dict.fromkeys(names)
    files = collect(path, suffixes, option)
    if Path(path).is_file():
        return dict.fromkeys(names, next(iter(files.values())))
    missing = [name for name in names if name not in files]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise EvalError(f"{option}: no file for {shown} in {path} (files pair with the generated videos by stem)")
    return {name: files[name] for name in names}


def read_speed(value: Speed, option: str = "--speed") -> float | np.ndarray | None:
    """A constant, a (frames,) array, or the per-frame values of a .npy / text file."""
    from emo_annotate.errors import MediaError
    from emo_annotate.pose import read_speed_file

    if value is None:
        return None
    if isinstance(value, Path):
        try:
            return read_speed_file(value)
        except MediaError as err:
            raise EvalError(f"{option}: {err}") from None
    if np.ndim(value) == 0:
        speed = float(value)
        if not np.isfinite(speed) or speed < 0:
            raise EvalError(f"{option} must be a finite speed >= 0 deg/s, got {speed}")
        return speed
    values = np.asarray(value, np.float32)
    if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all() or (values < 0).any():
        raise EvalError(f"{option} must be one finite speed >= 0 per frame")
    return values


def _speeds(names: list[str], speed: SpeedSpec) -> dict[str, float | np.ndarray | None]:
    if isinstance(speed, Mapping):
        return {name: read_speed(speed.get(name), f"speed[{name!r}]") for name in names}
    if isinstance(speed, Path) and speed.is_dir():
        files = collect(speed, SPEED_SUFFIXES, "--speed")
        missing = [name for name in names if name not in files]
        if missing:
            raise EvalError(f"--speed: no speed file for {', '.join(missing[:5])} in {speed}")
        return {name: read_speed(files[name]) for name in names}
    value = read_speed(speed)
    return dict.fromkeys(names, value)


def pair_inputs(
    generated: Path,
    real: Path | None = None,
    portraits: Path | None = None,
    audio: Path | None = None,
    speed: SpeedSpec = None,
) -> list[VideoItem]:
    """One `VideoItem` per generated video. Folders pair by file stem (every generated video
    needs its real video, portrait and audio when those are folders); a single file (real video,
    portrait, audio, speed) serves every generated video whatever its name."""
    generated_files = collect(generated, VIDEO_SUFFIXES, "GENERATED")
    names = list(generated_files)
    reals = _match(names, real, VIDEO_SUFFIXES, "--real")
    portrait_files = _match(names, portraits, IMAGE_SUFFIXES | VIDEO_SUFFIXES, "--portraits")
    audio_files = _match(names, audio, AUDIO_SUFFIXES, "--audio")
    speeds = _speeds(names, speed)
    return [
        VideoItem(name, generated_files[name], reals[name], portrait_files[name], audio_files[name], speeds[name])
        for name in names
    ]
