"""Counts of samples yielded and skipped, shared between DataLoader worker processes."""

from __future__ import annotations

import multiprocessing.context
from multiprocessing.sharedctypes import RawArray

# Why a sample was skipped. Every skip is also logged (warning; `too_short` at info level).
REASONS: tuple[str, ...] = (
    "too_short",  # clip has fewer frames than a sample needs (not an error: a config choice)
    "missing_member",  # a member the sample needs is absent (or the tar was cut inside a sample)
    "bad_json",  # metadata not JSON or lacking fps / frames
    "bad_npy",  # an .npy member that np.load(allow_pickle=False) cannot read
    "bad_shape",  # arrays whose shapes break the shard contract or disagree with each other
    "bad_mp4",  # undecodable video, or fewer decodable frames than the clip claims
    "bad_mask",  # mask.png unreadable or of another size than the frames
    "read_error",  # a shard that cannot be opened or read as a tar (its remaining samples are lost)
    "error",  # anything else (a bug or an unforeseen input); logged with its traceback
)
_FIELDS = ("yielded", *REASONS)
_SLOTS = 64  # one row per loader worker (worker id modulo this): no locking needed


class SkipCounter:
    """Per-reason counts of skipped samples, plus yielded samples, visible from the main process.

    The counts live in shared memory (`multiprocessing.sharedctypes.RawArray`): a DataLoader
    worker (forked or spawned) writes to its own row and the main process sums the rows, so the
    trainer can report `counter.skipped` or `counter.counts()` while training. Counts are per
    process group of one node: in multi-node training, all-reduce them if you want a total.
    Pickling the counter outside of process start (e.g. to save it) gives a detached snapshot.
    """

    def __init__(self, _values: list[int] | None = None):
        self._array = RawArray("q", _SLOTS * len(_FIELDS))
        if _values is not None:
            for i, v in enumerate(_values):
                self._array[i] = v

    # -- writing (inside a worker) ------------------------------------------------------------
    def add(self, reason: str, slot: int = 0, n: int = 1) -> None:
        """Count `n` skips for `reason` (one of `REASONS`) in row `slot` (the worker id)."""
        self._array[(slot % _SLOTS) * len(_FIELDS) + _FIELDS.index(reason)] += n

    def add_yielded(self, slot: int = 0, n: int = 1) -> None:
        self._array[(slot % _SLOTS) * len(_FIELDS)] += n

    # -- reading ------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """`{"yielded": n, reason: n, ...}` summed over all workers."""
        width = len(_FIELDS)
        values = list(self._array)
        return {name: sum(values[row * width + i] for row in range(_SLOTS)) for i, name in enumerate(_FIELDS)}

    @property
    def skipped(self) -> int:
        """Samples skipped for any reason so far."""
        counts = self.counts()
        return sum(counts[r] for r in REASONS)

    @property
    def yielded(self) -> int:
        """Samples handed out so far (before batching)."""
        return self.counts()["yielded"]

    def skipped_by_reason(self) -> dict[str, int]:
        """The non-zero skip counts."""
        return {r: n for r, n in self.counts().items() if r != "yielded" and n}

    def reset(self) -> None:
        for i in range(len(self._array)):
            self._array[i] = 0

    def summary(self) -> str:
        """One line for logs: `yielded 812, skipped 3 (bad_mp4 1, too_short 2)`."""
        reasons = ", ".join(f"{r} {n}" for r, n in self.skipped_by_reason().items())
        return f"yielded {self.yielded}, skipped {self.skipped}" + (f" ({reasons})" if reasons else "")

    def __repr__(self) -> str:
        return f"SkipCounter({self.summary()})"

    # -- pickling -----------------------------------------------------------------------------
    def __reduce__(self):
        if multiprocessing.context.get_spawning_popen() is not None:
            # a worker process being started (spawn / forkserver): share the memory
            return (_shared_counter, (self._array,))
        return (SkipCounter, (list(self._array),))


def _shared_counter(array) -> SkipCounter:
    counter = SkipCounter.__new__(SkipCounter)
    counter._array = array
    return counter


__all__ = ["REASONS", "SkipCounter"]
