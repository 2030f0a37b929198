"""Finding and opening shards: local annotator outputs, patterns, webdataset and fsspec URLs."""

from __future__ import annotations

import glob
import json
import tarfile
from pathlib import Path
from urllib.parse import urlparse

from emo_annotate.layout import is_committed
from emo_annotate.shards import shard_urls
from webdataset.gopen import gopen, gopen_schemes
from webdataset.shardlists import expand_urls

from .config import ShardSpec

# schemes webdataset opens itself ("" = local path); anything else with "://" goes to fsspec
_WDS_SCHEMES = {"", "file", "pipe", *(k for k in gopen_schemes if k != "__default__")}


def _scheme(url: str) -> str:
    if url.startswith("pipe:"):
        return "pipe"
    return urlparse(url).scheme if "://" in url else ""


def resolve_shards(spec: ShardSpec) -> list[str]:
    """The shard URLs of `spec` (see `DataConfig.shards`), in a stable order.

    - a local annotator output directory: its committed shards (`emo_annotate.shards.shard_urls`:
      shards whose stats file exists and whose unit committed its index part);
    - another local directory: its `*.tar` files (if it is an output's `shards/` folder, only
      the committed ones);
    - a brace pattern (`{000..009}`, `::`-separated lists) or a local glob: expanded;
    - an fsspec URL of a directory (`s3://bucket/run/`): listed like a local directory (an
      annotator output: committed shards only);
    - anything else (a shard path or URL, `pipe:` commands): passed through.
    Raises ValueError when nothing is found.
    """
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)
    urls: list[str] = []
    for item in items:
        urls.extend(_resolve_one(str(item)))
    if not urls:
        raise ValueError(f"no shards found in {spec!r}")
    return urls


def _resolve_one(spec: str) -> list[str]:
    scheme = _scheme(spec)
    if scheme == "pipe":
        return expand_urls(spec)
    if scheme in ("", "file"):
        local = spec[len("file://"):] if scheme == "file" else spec
        path = Path(local).expanduser()
        if path.is_dir():
            return _local_dir(path)
        if "{" in local or "::" in local:
            return [u for part in expand_urls(local) for u in _resolve_one(part)]
        if any(c in local for c in "*?["):
            return sorted(glob.glob(str(path)))
        return [local]
    if "{" in spec or "::" in spec:
        return expand_urls(spec)
    if scheme not in _WDS_SCHEMES:
        listed = _fsspec_dir(spec)
        if listed is not None:
            return listed
    return [spec]


def _local_dir(path: Path) -> list[str]:
    if (path / "shards").is_dir():
        return shard_urls(path)  # an annotator output: committed shards only
    if path.name == "shards" and (path.parent / "stats").is_dir():
        return shard_urls(path.parent)  # its shards/ folder: the same
    return [str(p) for p in sorted(path.glob("*.tar"))]


def _fsspec_dir(url: str) -> list[str] | None:
    """Shards under an fsspec directory URL (None when `url` is not a directory)."""
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(url)
        if not fs.isdir(root):
            return None
    except (ImportError, ValueError, OSError):
        return None
    root = root.rstrip("/")
    if not fs.isdir(f"{root}/shards"):
        return [fs.unstrip_protocol(p) for p in sorted(fs.glob(f"{root}/*.tar"))]
    # an annotator output: shards with their stats whose unit committed (emo_annotate.layout)
    stats = {Path(p).stem for p in fs.glob(f"{root}/stats/*.json")}
    units = {int(Path(p).stem) for p in fs.glob(f"{root}/units/*.parquet") if Path(p).stem.isdigit()}
    tars = [p for p in sorted(fs.glob(f"{root}/shards/*.tar")) if is_committed(Path(p).stem, stats, units)]
    return [fs.unstrip_protocol(p) for p in tars]


def open_shard(url: str):
    """A readable binary stream of one shard: webdataset's `gopen` for local paths and its own
    schemes (`pipe:`, `http(s)`, `gs`, `hf`, ...), fsspec for other URLs (`s3://`, `memory://`, ...)."""
    if _scheme(url) in _WDS_SCHEMES:
        return gopen(url, "rb")
    import fsspec

    return fsspec.open(url, "rb").open()


def shard_sample_metadata(spec: ShardSpec) -> dict:
    """The metadata (`json` member) of the first sample of the first shard of `spec`."""
    url = resolve_shards(spec)[0]
    with open_shard(url) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            if member.isreg() and member.name.endswith(".json"):
                return json.loads(tar.extractfile(member).read())
    raise ValueError(f"{url}: no sample metadata (json member) found")


def shard_audio_feature_shape(spec: ShardSpec) -> tuple[int, ...]:
    """The per-frame audio feature shape recorded in the first sample's metadata (for
    `emo_train.models.get_preset(..., audio_feature_shape=...)`)."""
    return audio_feature_shape(shard_sample_metadata(spec))


def audio_feature_shape(meta: dict) -> tuple[int, ...]:
    """The per-frame audio feature shape in a sample's metadata."""
    return tuple(int(d) for d in meta["audio_features"]["shape"][1:])


def annotation_settings(meta: dict) -> dict:
    """What inference must reproduce of the annotation a model was trained on, from a sample's
    metadata: frame rate, crop size and scale, audio sample rate and the audio feature settings
    (kind, parameters, per-frame shape). Stored with every checkpoint (`annotation.json`)."""
    features = dict(meta["audio_features"])
    features["shape"] = list(audio_feature_shape(meta))  # per frame
    return {
        "fps": float(meta["fps"]),
        "size": int(meta["size"]),
        "crop_scale": meta.get("crop_scale"),  # None: shards from before it was recorded (annotator default)
        "audio_rate": int(meta.get("audio_rate", 16000)),
        "audio_features": features,
        "landmarks": meta.get("landmarks", {}).get("backend"),
        "annotator_version": meta.get("annotator_version"),
    }
