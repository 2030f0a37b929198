"""Where things live in an output directory, and how files become visible atomically.

    OUTPUT_DIR/
      manifest.json          resolved config, the input plan (units of work), library versions
      index.parquet          one row per clip and per skipped/failed input (rewritten per run)
      shards/UUUUU-PPP.tar   WebDataset shards of unit UUUUU, part PPP
      stats/UUUUU-PPP.json   per-shard stats, written after the shard: its commit marker
      units/UUUUU.parquet    the unit's index rows, written last: the unit's commit marker
      progress.json          the run's progress, rewritten every few seconds while it runs
      run.lock               held (flock) by the run writing here; a second run is refused
      tmp/UUUUU/             a unit's shards being written and which video it is annotating

A file is written under a temporary name unique to the writer (`NAME.<random>.tmp`) and renamed
into place: shards from the unit's own `tmp/UUUUU/` (removed when the unit commits or is redone),
small files from next to their final name. So a reader never sees a partial file, a run killed at
any moment leaves only files that are complete or invisibly temporary, and a stale attempt still
writing beside a retried one can never rename the other's half-written file into place. A shard
counts as committed when its stats file and its unit's index part both exist (`is_committed`):
readers take only those. Redoing a unit touches only its own files (no directory listing), so
the cost per unit does not grow with the number of units.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from .errors import RunError

TMP_SUFFIX = ".tmp"
LOCK_NAME = "run.lock"
IN_FLIGHT = "in_flight"  # in a unit's temporary folder: the index of the video being annotated
SHARD_NAME = re.compile(r"^(\d{5,})-(\d{3,})$")  # unit (5+ digits) - part (3+ digits)


class OutputLayout:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.manifest = self.root / "manifest.json"
        self.index = self.root / "index.parquet"
        self.shards = self.root / "shards"
        self.stats = self.root / "stats"
        self.units = self.root / "units"
        self.tmp = self.root / "tmp"
        self.progress = self.root / "progress.json"
        self.lock = self.root / LOCK_NAME

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
        if not self.units.exists():
            return set()
        return {int(p.stem) for p in self.units.glob("*.parquet") if p.stem.isdigit()}

    def shard_files(self) -> list[Path]:
        return sorted(self.shards.glob("*.tar"))

    def committed_shards(self) -> list[Path]:
        """Shards with their stats whose unit committed: all a reader should take."""
        stats = {p.stem for p in self.stats.glob("*.json")} if self.stats.exists() else set()
        units = self.committed_units()
        return [p for p in self.shard_files() if is_committed(p.stem, stats, units)]

    def unit_tmp(self, unit: int) -> Path:
        """The unit's own folder for files being written."""
        return self.tmp / f"{unit:05d}"

    def clear_unit(self, unit: int) -> None:
        """Remove whatever an interrupted attempt at `unit` left behind: its committed parts
        (numbered from 000 without gaps; two missing numbers in a row end the search), its index
        part and its temporary folder (an attempt still writing there can no longer commit)."""
        part, missing = 0, 0
        while missing < 2:
            name = self.shard_name(unit, part)
            found = False
            for path in (self.shard_path(name), self.stats_path(name)):
                try:
                    path.unlink()  # a stale attempt may remove its own files meanwhile
                    found = True
                except FileNotFoundError:
                    pass
            missing = 0 if found else missing + 1
            part += 1
        self.unit_path(unit).unlink(missing_ok=True)
        shutil.rmtree(self.unit_tmp(unit), ignore_errors=True)

    def mark_in_flight(self, unit: int, video: int | None) -> None:
        """Record which of the unit's videos is being annotated, None between videos (read back
        when the worker dies)."""
        path = self.unit_tmp(unit) / IN_FLIGHT
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("-\n" if video is None else f"{video}\n")

    def in_flight(self, unit: int) -> int | None:
        """The video a dead attempt at `unit` was annotating (None: none, or between videos)."""
        try:
            return int((self.unit_tmp(unit) / IN_FLIGHT).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def finish_unit(self, unit: int) -> None:
        shutil.rmtree(self.unit_tmp(unit), ignore_errors=True)

    @contextmanager
    def exclusive(self):
        """Hold the output directory's lock for a run; RunError at once if another run holds it.

        An flock on `run.lock`: released by the kernel when the holder exits, however it dies,
        so a killed run never blocks the next one (on NFS, Linux maps it to a POSIX lock the
        server arbitrates between machines).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 500).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunError(f"{self.root} is being written by another emo-annotate run ({holder}); "
                           "wait for it to finish or choose another output directory") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                          f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode(), 0)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def running(layout: OutputLayout) -> str | None:
    """Who holds the output directory's lock (a run writing it now), or None."""
    if not layout.lock.exists():
        return None
    fd = os.open(layout.lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 500, 0).decode(errors="replace").strip() or "another process"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def shard_unit(name: str) -> int | None:
    """The unit number of a shard name `UUUUU-PPP` (None for another name)."""
    match = SHARD_NAME.match(name)
    return int(match.group(1)) if match else None


def is_committed(name: str, stats_names: set[str], committed_units: set[int]) -> bool:
    """A shard is committed when its stats file (the shard's marker) and its unit's index part
    (the unit's marker) both exist: a unit that died midway leaves shards nobody should read."""
    return name in stats_names and shard_unit(name) in committed_units


def temporary_name(path: Path, directory: Path | None = None) -> Path:
    """A temporary path next to `path` (or in `directory`), unique to this writer."""
    return (directory or path.parent) / f"{path.name}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}"


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path next to `path`; rename it into place when the block succeeds."""
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
