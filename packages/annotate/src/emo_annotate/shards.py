"""Writing WebDataset shards: parts of at most `shard_size` clips, each committed by its stats.

Members are written with the standard library's `tarfile` the way webdataset's `TarWriter`
writes them (`KEY.EXT` in sorted order, mode 0444, owner "bigdata", a fixed mtime): importing
webdataset imports torch, which would cost every worker seconds of start-up and 300 MB.
Readers use webdataset itself.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path

from .layout import OutputLayout, temporary_name, write_json_atomic

# fixed tar member mtime: the same clips give byte-identical shards on every run
TAR_MTIME = 0.0


class ShardSink:
    """Accepts samples of one unit of work and rolls them into `UUUUU-PPP.tar` parts."""

    def __init__(self, layout: OutputLayout, unit: int, shard_size: int):
        self.layout = layout
        self.unit = unit
        self.shard_size = shard_size
        self.part = 0
        self.written: list[str] = []  # committed shard names
        self._open = None  # (name, temporary path, file, TarWriter, stats) of the part being written

    def add(self, sample: dict) -> str:
        """Write one sample; returns the name of the shard that holds it."""
        if self._open is None:
            self._start()
        name, _, _, writer, stats = self._open
        writer.write(sample)
        meta = json.loads(sample["json"])
        stats["keys"].append(sample["__key__"])
        stats["frames"] += meta["frames"]
        stats["seconds"] += meta["frames"] / meta["fps"]
        stats["speed_sum"] += meta["quality"]["speed_mean"] * meta["frames"]
        if len(stats["keys"]) >= self.shard_size:
            self._commit()
        return name

    def close(self) -> list[str]:
        if self._open is not None:
            self._commit()
        return self.written

    def _start(self) -> None:
        name = OutputLayout.shard_name(self.unit, self.part)
        directory = self.layout.unit_tmp(self.unit)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = temporary_name(self.layout.shard_path(name), directory)
        stream = open(tmp, "wb")
        writer = TarWriter(stream)
        stats = {"keys": [], "frames": 0, "seconds": 0.0, "speed_sum": 0.0}
        self._open = (name, tmp, stream, writer, stats)
        self.part += 1

    def _commit(self) -> None:
        name, tmp, stream, writer, stats = self._open
        self._open = None
        writer.close()
        stream.close()
        path = self.layout.shard_path(name)
        os.replace(tmp, path)  # the finished tar appears at once under its final name
        write_json_atomic(
            self.layout.stats_path(name),
            {
                "shard": path.name,
                "unit": self.unit,
                "clips": len(stats["keys"]),
                "keys": stats["keys"],
                "frames": stats["frames"],
                "seconds": round(stats["seconds"], 4),
                "speed_mean": round(stats["speed_sum"] / max(1, stats["frames"]), 4),
                "bytes": path.stat().st_size,
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
        self.written.append(name)

    def abort(self) -> None:
        """Drop the part being written (its temporary file is removed)."""
        if self._open is not None:
            _, tmp, stream, _, _ = self._open
            self._open = None
            stream.close()
            tmp.unlink(missing_ok=True)


class TarWriter:
    """WebDataset samples (dicts of bytes with a `__key__`) into an uncompressed tar stream."""

    def __init__(self, stream):
        self._tar = tarfile.open(fileobj=stream, mode="w|")

    def write(self, sample: dict) -> None:
        key = sample["__key__"]
        for name in sorted(sample):
            if name.startswith("_"):
                continue
            data = sample[name]
            info = tarfile.TarInfo(f"{key}.{name}")
            info.size, info.mtime, info.mode, info.uname, info.gname = len(data), TAR_MTIME, 0o444, "bigdata", "bigdata"
            self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self._tar.close()


def shard_urls(root: Path) -> list[str]:
    """The committed shards of an output directory (with their stats, of committed units), as
    paths for readers."""
    return [str(p) for p in OutputLayout(root).committed_shards()]
