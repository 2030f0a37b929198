"""Checksums of weight files for the report (cached: the bundled ones are 20-100 MB)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=None)
def _cached_sha256(path: str, size: int, mtime: float) -> str:
    return file_sha256(Path(path))


def file_record(path: Path) -> dict:
    """{"file": name, "sha256": hex, "bytes": n} of a weights file."""
    path = Path(path)
    stat = path.stat()
    return {"file": path.name, "sha256": _cached_sha256(str(path.resolve()), stat.st_size, stat.st_mtime), "bytes": stat.st_size}
