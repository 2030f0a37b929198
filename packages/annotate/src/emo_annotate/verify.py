"""`emo-annotate verify`: check an output directory against the shard contract (DESIGN.md).

What is checked, each finding reported as one line naming the file and, where there is one, the key:

- layout: manifest.json readable; no leftover `*.tmp`; every shard has its stats (commit marker)
  and every stats file its shard; every shard's unit is committed (`units/UUUUU.parquet`);
- per shard: the tar reads to the end; its stats name the same keys, clip count and byte size;
- per sample: all contract members present (`lmk.npy` when the json says landmarks are stored),
  no pickles or unknown members, a dot-free key that is unique over all shards and matches the json;
  the json's picture and sound fields (stored colour BT.709 limited, rotation applied, source pixel
  aspect, audio coverage measured on real samples, clip edge reasons); every `.npy` loads with
  `allow_pickle=False` and has the contract's dtype and shape with T = the json's frame count and
  finite values; the mp4 is H.264 at the json's fps and size, tagged BT.709 limited range, and
  decodes to T frames; the wav is 16 kHz mono lasting T frames (within one frame); mask.png is a
  non-empty single-channel uint8 image of size x size;
- index.parquet: its `ok` rows name exactly the keys in the shards, with the right shard and frame count.

Shards are streamed one sample at a time (a sample is a few MB at most), so memory does not grow
with the dataset; only each key's shard and frame count are kept for the index comparison.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from .layout import TMP_SUFFIX, OutputLayout, shard_unit
from .media import AUDIO_RATE, STORED_COLOUR, STORED_COLOUR_TAGS
from .errors import RunError

REQUIRED_MEMBERS = ("mp4", "wav", "audio.npy", "pose.npy", "speed.npy", "bbox.npy", "mask.png", "json")
OPTIONAL_MEMBERS = ("lmk.npy",)
KNOWN_MEMBERS = REQUIRED_MEMBERS + OPTIONAL_MEMBERS
PICKLE_SUFFIXES = (".pth", ".pyd", ".pkl", ".pickle")
STATUSES = {"ok", "skipped", "failed", "dropped"}


@dataclass(frozen=True)
class ClipRecord:
    """What the index comparison needs to remember about each sample read."""

    shard: str  # shard name without .tar
    frames: int | None  # T from the json (None when the json was unusable)


def verify_output(shards_dir: Path) -> tuple[list[str], int]:
    """Check the output directory of `emo-annotate run`; returns (problems, clips checked)."""
    root = Path(shards_dir)
    if not root.is_dir():
        raise RunError(f"{root} does not exist or is not a directory")
    layout = OutputLayout(root)
    problems = check_layout(layout)
    clips: dict[str, ClipRecord] = {}
    for tar_path in tqdm(layout.shard_files(), desc="verifying", unit="shard", leave=False):
        problems += check_shard(layout, tar_path, clips)
    problems += check_index(layout, clips)
    return problems, len(clips)


# -- layout --------------------------------------------------------------------------------------
def check_layout(layout: OutputLayout) -> list[str]:
    problems: list[str] = []
    if not layout.manifest.exists():
        problems.append("manifest.json: missing")
    else:
        try:
            json.loads(layout.manifest.read_text())
        except ValueError as err:
            problems.append(f"manifest.json: not valid JSON ({err})")
    if not layout.shards.is_dir():
        problems.append("shards/: missing (no shards at all)")
    for tmp in sorted(layout.root.rglob("*" + TMP_SUFFIX)):
        problems.append(f"{_rel(layout, tmp)}: leftover temporary file (an interrupted run; rerun to finish it)")

    shard_names = {p.stem for p in layout.shard_files()}
    stats_names = {p.stem for p in layout.stats.glob("*.json")} if layout.stats.exists() else set()
    committed_units = layout.committed_units()
    for name in sorted(shard_names - stats_names):
        problems.append(f"shards/{name}.tar: no stats/{name}.json (the shard was never committed)")
    for name in sorted(stats_names - shard_names):
        problems.append(f"stats/{name}.json: its shard shards/{name}.tar is missing")
    for name in sorted(shard_names):
        unit = shard_unit(name)
        if unit is None:
            problems.append(f"shards/{name}.tar: name is not UUUUU-PPP")
        elif unit not in committed_units:
            problems.append(f"shards/{name}.tar: its unit has no {_rel(layout, layout.unit_path(unit))} (the unit was never committed)")
    return problems


# -- shards --------------------------------------------------------------------------------------
def check_shard(layout: OutputLayout, tar_path: Path, clips: dict[str, ClipRecord]) -> list[str]:
    """Check every sample of one tar and its stats; records its keys in `clips`."""
    shard = tar_path.stem
    where = f"shards/{tar_path.name}"
    problems: list[str] = []
    keys: list[str] = []
    try:
        for key, members in iter_samples(tar_path):
            keys.append(key)
            sample_problems, frames = check_sample(key, members)
            problems += [f"{where} {key}: {p}" for p in sample_problems]
            if key in clips:
                problems.append(f"{where} {key}: duplicate key (also in shards/{clips[key].shard}.tar)")
            else:
                clips[key] = ClipRecord(shard, frames)
    except (tarfile.TarError, EOFError, OSError) as err:
        problems.append(f"{where}: unreadable tar after {len(keys)} samples ({err})")
    problems += check_stats(layout, tar_path, keys)
    return problems


def check_stats(layout: OutputLayout, tar_path: Path, keys: list[str]) -> list[str]:
    """The stats file is written from the samples as they were added, so it must describe the tar."""
    path = layout.stats_path(tar_path.stem)
    if not path.exists():
        return []  # reported by check_layout
    where = f"stats/{path.name}"
    try:
        stats = json.loads(path.read_text())
    except ValueError as err:
        return [f"{where}: not valid JSON ({err})"]
    if not isinstance(stats, dict):
        return [f"{where}: not a JSON object"]
    problems = []
    if stats.get("shard") != tar_path.name:
        problems.append(f"{where}: names shard {stats.get('shard')!r}, expected {tar_path.name!r}")
    if stats.get("clips") != len(keys):
        problems.append(f"{where}: says {stats.get('clips')} clips, shards/{tar_path.name} holds {len(keys)}")
    if stats.get("keys") != keys:
        listed, found = set(stats.get("keys") or []), set(keys)
        problems.append(
            f"{where}: keys disagree with shards/{tar_path.name} "
            f"(only in stats: {sorted(listed - found)}, only in tar: {sorted(found - listed)})"
        )
    if "bytes" in stats and stats["bytes"] != tar_path.stat().st_size:
        problems.append(f"{where}: says {stats['bytes']} bytes, shards/{tar_path.name} has {tar_path.stat().st_size}")
    return problems


def split_member(name: str) -> tuple[str, str]:
    """`key.ext` -> (key, ext), trying the contract's multi-dot extensions first.

    WebDataset itself splits at the first dot of the file name; matching known extensions first
    lets a key that wrongly contains a dot be reported as such instead of as odd members.
    """
    for ext in sorted(KNOWN_MEMBERS, key=len, reverse=True):
        if name.endswith("." + ext) and len(name) > len(ext) + 1:
            return name[: -len(ext) - 1], ext
    key, _, ext = name.partition(".")
    return key, ext


def iter_samples(tar_path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Stream a tar as (key, {extension: bytes}), one sample at a time.

    WebDataset groups consecutive members with the same key, so a key that reappears later in
    the same tar becomes a second sample: it is yielded twice and reported as a duplicate.
    """
    with tarfile.open(tar_path, mode="r|") as tar:
        key, members = None, {}
        for info in tar:
            if not info.isfile():
                continue
            member_key, ext = split_member(info.name)
            if member_key != key and members:
                yield key, members
                members = {}
            key = member_key
            members[ext] = tar.extractfile(info).read()
        if members:
            yield key, members


# -- one sample ----------------------------------------------------------------------------------
def check_sample(key: str, members: dict[str, bytes]) -> tuple[list[str], int | None]:
    """Problems of one sample (without the shard/key prefix) and its T (None if the json is unusable)."""
    problems = check_member_names(key, members)
    meta, meta_problems = parse_meta(members.get("json"))
    problems += meta_problems
    required = list(REQUIRED_MEMBERS)
    if meta is not None and meta["landmarks"].get("stored", True):
        required.append("lmk.npy")
    missing = [m for m in required if m not in members]
    if missing:
        problems.append(f"missing members: {', '.join(missing)}")
    if meta is None:
        return problems, None

    if meta["key"] != key:
        problems.append(f"json key {meta['key']!r} differs from the member key")
    frames, fps, size = meta["frames"], meta["fps"], meta["size"]
    for name, (dtype, shape) in array_specs(meta).items():
        if name in members:
            problems += check_npy(name, members[name], dtype, shape)
    if "mp4" in members:
        problems += check_mp4(members["mp4"], frames, fps, size)
    if "wav" in members:
        problems += check_wav(members["wav"], frames, fps)
    if "mask.png" in members:
        problems += check_mask(members["mask.png"], size)
    return problems, frames


def check_member_names(key: str, members: dict[str, bytes]) -> list[str]:
    problems = []
    if "." in key:
        problems.append("key contains a dot (WebDataset would split it)")
    for ext in members:
        if ext.endswith(PICKLE_SUFFIXES) or ext in {s[1:] for s in PICKLE_SUFFIXES}:
            problems.append(f"pickle member .{ext} (the contract forbids pickles)")
        elif ext not in KNOWN_MEMBERS:
            problems.append(f"unexpected member .{ext} (not in the shard contract)")
    return problems


def parse_meta(data: bytes | None) -> tuple[dict | None, list[str]]:
    """The json member, or None plus the reason when the checks that depend on it cannot run."""
    if data is None:
        return None, []  # reported as a missing member
    try:
        meta = json.loads(data)
    except ValueError as err:
        return None, [f"json does not parse ({err})"]
    if not isinstance(meta, dict):
        return None, ["json is not an object"]
    problems = []
    for field, kind in (("key", str), ("frames", int), ("fps", (int, float)), ("size", int)):
        if not isinstance(meta.get(field), kind) or isinstance(meta.get(field), bool):
            problems.append(f"json field {field!r} missing or not {getattr(kind, '__name__', 'a number')}")
    shape = (meta.get("audio_features") or {}).get("shape")
    if not (isinstance(shape, list) and shape and all(isinstance(n, int) for n in shape)):
        problems.append("json field audio_features.shape missing or not a list of ints")
    if not isinstance(meta.get("landmarks"), dict) or not isinstance(meta["landmarks"].get("points"), int):
        problems.append("json field landmarks.points missing")
    if problems:
        return None, problems
    if meta["frames"] <= 0 or meta["fps"] <= 0 or meta["size"] <= 0:
        return None, [f"json frames/fps/size must be positive, got {meta['frames']}/{meta['fps']}/{meta['size']}"]
    if shape[0] != meta["frames"]:
        problems.append(f"json audio_features.shape {shape} does not start with T={meta['frames']}")
    return meta, problems + check_fidelity_fields(meta)


def check_fidelity_fields(meta: dict) -> list[str]:
    """The json fields that say how picture and sound were normalised."""
    problems = []
    colour = meta.get("colour")
    expected = STORED_COLOUR.describe()
    if not isinstance(colour, dict) or {k: colour.get(k) for k in expected} != expected:
        problems.append(f"json colour {colour!r} is not the stored convention {expected} (annotated before colours were normalised?)")
    picture = meta.get("source_picture")
    if not isinstance(picture, dict):
        problems.append("json field source_picture missing (rotation applied, pixel aspect, source colour)")
    else:
        if picture.get("rotation_applied") not in (0, 90, 180, 270):
            problems.append(f"json source_picture.rotation_applied {picture.get('rotation_applied')!r} is not 0, 90, 180 or 270")
        sar = picture.get("sample_aspect_ratio")
        if not (isinstance(sar, list) and len(sar) == 2 and all(isinstance(v, int) and v > 0 for v in sar)):
            problems.append(f"json source_picture.sample_aspect_ratio {sar!r} is not [num, den] of positive ints")
    coverage = (meta.get("quality") or {}).get("audio_coverage")
    if not isinstance(coverage, (int, float)) or not 0.0 <= coverage <= 1.0:
        problems.append(f"json quality.audio_coverage {coverage!r} is not a share in [0, 1]")
    edges = meta.get("edges")
    if not (isinstance(edges, dict) and isinstance(edges.get("start"), str) and isinstance(edges.get("end"), str)):
        problems.append("json field edges (why the clip starts and ends) missing")
    return problems


def array_specs(meta: dict) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Contract dtype and shape of each `.npy` member, with T and N taken from the json."""
    t = meta["frames"]
    return {
        "pose.npy": ("float32", (t, 6)),
        "speed.npy": ("float32", (t,)),
        "bbox.npy": ("float32", (t, 4)),
        "lmk.npy": ("float16", (t, meta["landmarks"]["points"], 3)),
        "audio.npy": ("float16", tuple(meta["audio_features"]["shape"])),
    }


def check_npy(name: str, data: bytes, dtype: str, shape: tuple[int, ...]) -> list[str]:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError, OSError) as err:
        return [f"{name} does not load with allow_pickle=False ({err})"]
    problems = []
    if array.dtype != np.dtype(dtype):
        problems.append(f"{name} dtype {array.dtype}, expected {dtype}")
    if array.shape != shape:
        problems.append(f"{name} shape {array.shape}, expected {shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        problems.append(f"{name} holds NaN or infinite values")
    return problems


def check_mp4(data: bytes, frames: int, fps: float, size: int) -> list[str]:
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                return ["mp4 has no video stream"]
            stream = container.streams.video[0]
            codec = stream.codec_context.name
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = float(stream.average_rate or 0)
            tags = {name: int(getattr(stream.codec_context, name)) for name in ("colorspace", "color_range")}
            decoded = sum(1 for _ in container.decode(stream))
    except (av.FFmpegError, ValueError) as err:
        return [f"mp4 does not decode ({err})"]
    problems = []
    if codec != "h264":
        problems.append(f"mp4 codec {codec}, expected h264")
    # the writer stores fps as a fraction with denominator <= 1001 (29.97 = 30000/1001)
    if not math.isclose(rate, fps, rel_tol=1e-3):
        problems.append(f"mp4 frame rate {rate:g}, json says {fps:g}")
    if (width, height) != (size, size):
        problems.append(f"mp4 is {width}x{height}, json size is {size}x{size}")
    if decoded != frames:
        problems.append(f"mp4 decodes to {decoded} frames, json says T={frames}")
    if any(tags[name] != STORED_COLOUR_TAGS[name] for name in tags):
        problems.append(f"mp4 is not tagged BT.709 limited range (colorspace {tags['colorspace']}, range {tags['color_range']}):"
                        " readers would guess its colours")
    return problems


def check_wav(data: bytes, frames: int, fps: float) -> list[str]:
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            channels, rate, samples = wav.getnchannels(), wav.getframerate(), wav.getnframes()
    except (wave.Error, EOFError) as err:
        return [f"wav does not parse as PCM ({err})"]
    problems = []
    if rate != AUDIO_RATE:
        problems.append(f"wav rate {rate} Hz, expected {AUDIO_RATE}")
    if channels != 1:
        problems.append(f"wav has {channels} channels, expected mono")
    seconds, expected = samples / rate if rate else 0.0, frames / fps
    if abs(seconds - expected) > 1.0 / fps:
        problems.append(f"wav lasts {seconds:.3f} s, T={frames} frames at {fps:g} fps last {expected:.3f} s")
    return problems


def check_mask(data: bytes, size: int) -> list[str]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode, mask = image.mode, np.asarray(image)
    except (OSError, ValueError) as err:
        return [f"mask.png does not decode ({err})"]
    problems = []
    if mode != "L" or mask.ndim != 2 or mask.dtype != np.uint8:
        problems.append(f"mask.png is mode {mode} {mask.dtype} {mask.shape}, expected single-channel uint8")
    if mask.shape[:2] != (size, size):
        problems.append(f"mask.png is {mask.shape[1]}x{mask.shape[0]}, expected {size}x{size}")
    if not mask.any():
        problems.append("mask.png is empty (a union of face boxes cannot be)")
    return problems


# -- index ---------------------------------------------------------------------------------------
def check_index(layout: OutputLayout, clips: dict[str, ClipRecord]) -> list[str]:
    """The index's ok rows and the shards must name the same clips, in the same shards."""
    if not layout.index.exists():
        return ["index.parquet: missing"]
    try:
        table = pq.read_table(layout.index)
    except Exception as err:  # pyarrow raises several types for a damaged file
        return [f"index.parquet: unreadable ({type(err).__name__}: {err})"]
    missing_columns = {"key", "status", "shard", "frames"} - set(table.schema.names)
    if missing_columns:
        return [f"index.parquet: columns missing: {sorted(missing_columns)}"]
    rows = table.select(["key", "status", "shard", "frames"]).to_pylist()

    problems: list[str] = []
    indexed: dict[str, dict] = {}
    for i, row in enumerate(rows):
        if row["status"] not in STATUSES:
            problems.append(f"index.parquet row {i}: unknown status {row['status']!r}")
        if row["status"] != "ok":
            continue
        key = row["key"]
        if not key:
            problems.append(f"index.parquet row {i}: status ok without a key")
        elif key in indexed:
            problems.append(f"index.parquet: key {key} appears in more than one row")
        else:
            indexed[key] = row
    for key in sorted(indexed.keys() - clips.keys()):
        problems.append(f"index.parquet: clip {key} (shard {indexed[key]['shard']}) is in no shard")
    for key in sorted(clips.keys() - indexed.keys()):
        problems.append(f"shards/{clips[key].shard}.tar {key}: not in index.parquet as an ok clip")
    for key in sorted(indexed.keys() & clips.keys()):
        row, clip = indexed[key], clips[key]
        if row["shard"] != clip.shard:
            problems.append(f"index.parquet: clip {key} says shard {row['shard']}, it is in shards/{clip.shard}.tar")
        if clip.frames is not None and row["frames"] != clip.frames:
            problems.append(f"index.parquet: clip {key} says {row['frames']} frames, its json says {clip.frames}")
    return problems


def _rel(layout: OutputLayout, path: Path) -> str:
    return path.relative_to(layout.root).as_posix()
