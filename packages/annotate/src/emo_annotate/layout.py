"""Where things live in an output directory, and how files become visible atomically.

    OUTPUT_DIR/
      manifest.json          resolved config, the input plan (units of work), library versions
      index.parquet          one row per clip and per skipped/failed input (rewritten per run)
      shards/UUUUU-PPP.tar   WebDataset shards of unit UUUUU, part PPP
      stats/UUUUU-PPP.json   per-shard stats, written after the shard: its commit marker
      units/UUUUU.parquet    the unit's index rows, written last: the unit's commit marker

A file is written under a temporary name in the same directory and renamed into place, so a
reader never sees a partial file, and a run killed at any moment leaves only files that are
complete or invisibly temporary (`*.tmp`, removed when the unit is redone).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

TMP_SUFFIX = ".tmp"


class OutputLayout:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.manifest = self.root / "manifest.json"
        self.index = self.root / "index.parquet"
        self.shards = self.root / "shards"
        self.stats = self.root / "stats"
        self.units = self.root / "units"

    def create(self) -> None:
        for d in (self.shards, self.stats, self.units):
            d.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def shard_name(unit: int, part: int) -> str:
        return f"{unit:05d}-{part:03d}"

    def shard_path(self, name: str) -> Path:
        return self.shards / f"{name}.tar"

    def stats_path(self, name: str) -> Path:
        return self.stats / f"{name}.json"

    def unit_path(self, unit: int) -> Path:
        return self.units / f"{unit:05d}.parquet"

    def committed_units(self) -> set[int]:
        return {int(p.stem) for p in self.units.glob("*.parquet")} if self.units.exists() else set()

    def shard_files(self) -> list[Path]:
        return sorted(self.shards.glob("*.tar"))

    def clear_unit(self, unit: int) -> None:
        """Remove whatever an interrupted attempt at `unit` left behind."""
        prefix = f"{unit:05d}-"
        for d in (self.shards, self.stats):
            for p in d.glob(prefix + "*"):
                p.unlink()
        for p in self.units.glob(f"{unit:05d}.parquet*"):
            p.unlink()


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path next to `path`; rename it into place when the block succeeds."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
