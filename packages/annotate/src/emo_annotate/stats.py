"""`emo-annotate stats`: what a run produced, from index.parquet and the shards' `speed.npy`.

While a run is writing the directory (it holds `run.lock`), the figures come from the units
committed so far (`units/*.parquet`, what index.parquet will be made of) and the run's own
`progress.json` is shown: videos done of the total, clips, hours, frames/s, time left, failures.

- clips, frames and hours of the `ok` clips, and per input video whether it gave clips (ok), was
  skipped (readable, nothing to train on) or failed; a video that failed after some of its clips
  were written counts as failed, and its clips still count as clips;
- skip and failure reasons with counts, grouped by their text before any parenthesis
  ("not a readable video (Invalid data ...)" -> "not a readable video"), because the part in
  parentheses carries per-file detail that would make every reason unique;
- per-frame head rotation speed (deg/s) over all committed shards: percentiles and a histogram
  with fixed 10 deg/s bins from 0 to 180 deg/s plus an overflow bin, so histograms of different
  runs can be compared bin by bin;
- suggested speed buckets for the trainer's speed encoder (`SpeedEncoder(centers=..., radii=...)`,
  code `tanh((w - c_i) / r_i * 3)`), see `suggest_speed_buckets`.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm
import pyarrow.parquet as pq

from . import index
from .errors import RunError
from .layout import OutputLayout, running
from .progress import describe
from .shards import shard_urls

PERCENTILES = (5, 25, 50, 75, 95, 99)
HIST_BIN = 10.0  # deg/s
HIST_MAX = 180.0  # deg/s; faster frames go to the overflow bin
NUM_BUCKETS = 10  # the trainer's SpeedEncoder default d
MIN_RADIUS = 1.0  # deg/s; keeps radii positive when quantiles coincide (e.g. many still frames)
BUCKET_RULE = (
    f"{NUM_BUCKETS} centres at the quantiles 5%, 15%, ..., 95% of per-frame speed (the middle of "
    "each tenth of the data); radius = half the larger gap to a neighbouring centre (end buckets: "
    f"their one gap), at least {MIN_RADIUS:g} deg/s, so neighbouring transitions meet with no dead zone"
)


def compute_stats(shards_dir: Path) -> dict:
    """Statistics of an output directory as a JSON-serialisable dict."""
    root = Path(shards_dir)
    layout = OutputLayout(root)
    if not root.is_dir():
        raise RunError(f"{root} does not exist or is not a directory")
    writer = running(layout)
    if writer is not None:
        table = index.read_parts(sorted(layout.units.glob("*.parquet")) if layout.units.exists() else [])
    elif layout.index.exists():
        table = pq.read_table(layout.index)
    else:
        raise RunError(f"{root} has no index.parquet (is it the output of `emo-annotate run`?)")
    speeds = read_speeds(root)
    summary = index.summarize(table)
    clip_frames = [f for f, k in zip(table.column("frames").to_pylist(), table.column("key").to_pylist()) if k]
    return {
        "output": str(root),
        "run": run_state(layout, writer),
        "clips": summary["clips"],
        "frames": int(sum(f or 0 for f in clip_frames)),
        "hours": summary["hours"],
        "videos": video_counts(table.select(["key", "status", "video_id"]).to_pylist()),
        "reasons": reason_counts(table.select(["key", "status", "reason"]).to_pylist()),
        "speed": speed_summary(speeds),
        "speed_buckets": suggest_speed_buckets(speeds),
    }


def run_state(layout: OutputLayout, writer: str | None) -> dict | None:
    """The run writing the directory now (its progress.json), or the last one's final state."""
    try:
        progress = json.loads(layout.progress.read_text())
    except (FileNotFoundError, ValueError):
        progress = None
    if writer is None and progress is None:
        return None
    state = dict(progress or {})
    state.pop("summary", None)
    state["writing_now"] = writer
    return state


# -- index ---------------------------------------------------------------------------------------
def video_counts(rows: list[dict]) -> dict[str, int]:
    """Input videos by outcome: clip rows make a video ok unless it also has a skipped/failed row."""
    outcome: dict[str, str] = {}
    for row in rows:
        if row["status"] == "dropped":  # a stretch of a video, not the video's outcome
            continue
        if row["key"] is None:  # a video row: its status is the video's outcome
            outcome[row["video_id"]] = row["status"]
        else:
            outcome.setdefault(row["video_id"], "ok")
    counts = Counter(outcome.values())
    return {"total": len(outcome), "ok": counts["ok"], "skipped": counts["skipped"], "failed": counts["failed"]}


def reason_group(reason: str | None) -> str:
    """The reason without its parenthesised detail."""
    if not reason:
        return "(no reason recorded)"
    return reason.split("(", 1)[0].strip() or reason


def reason_counts(rows: list[dict]) -> dict[str, dict[str, int]]:
    """{status: {reason group: count}} for skipped and failed videos and dropped stretches, most
    frequent first."""
    out = {}
    for status in ("skipped", "failed", "dropped"):
        counts = Counter(reason_group(r["reason"]) for r in rows if r["key"] is None and r["status"] == status)
        out[status] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


# -- speed ---------------------------------------------------------------------------------------
def read_speeds(root: Path) -> np.ndarray:
    """Per-frame speeds (deg/s) of every clip in the committed shards, concatenated.

    Tars are streamed and only `speed.npy` members are loaded (4 bytes a frame: 100 hours of
    video at 25 fps is 36 MB).
    """
    parts: list[np.ndarray] = []
    for url in tqdm(shard_urls(root), desc="reading speeds", unit="shard", leave=False):
        with tarfile.open(url, mode="r|") as tar:
            for info in tar:
                if info.isfile() and info.name.endswith(".speed.npy"):
                    parts.append(load_speed(url, info.name, tar.extractfile(info).read()))
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def load_speed(url: str, name: str, data: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False).astype(np.float64).reshape(-1)
    except (ValueError, EOFError, OSError) as err:
        raise RunError(f"{Path(url).name}: {name} is unreadable ({err}); run `emo-annotate verify`") from None


def speed_summary(speeds: np.ndarray) -> dict:
    edges = np.arange(0.0, HIST_MAX + HIST_BIN / 2, HIST_BIN)  # 0, 10, ..., 180
    n_bins = len(edges) - 1
    # bin i holds [edges[i], edges[i+1]); index n_bins is the overflow bin, >= HIST_MAX
    bins = np.minimum(np.floor(np.clip(speeds, 0, None) / HIST_BIN).astype(int), n_bins)
    counts = np.bincount(bins, minlength=n_bins + 1)
    empty = len(speeds) == 0
    return {
        "frames": int(len(speeds)),
        "mean": None if empty else float(speeds.mean()),
        "max": None if empty else float(speeds.max()),
        "percentiles": {f"p{p}": None if empty else float(np.percentile(speeds, p)) for p in PERCENTILES},
        "histogram": {"bin_edges": edges.tolist(), "counts": counts[:n_bins].tolist(), "overflow": int(counts[n_bins])},
    }


def suggest_speed_buckets(speeds: np.ndarray, num: int = NUM_BUCKETS, min_radius: float = MIN_RADIUS) -> dict:
    """Centres and radii for `tanh((w - c_i) / r_i * 3)` fitted to the speed distribution.

    Quantile centres put the buckets where the data is, so each bucket's code changes for about
    a tenth of the frames. A code saturates (|tanh| > 0.995) at r_i from its centre; taking half
    the larger neighbouring gap means some bucket is still in transition at every speed between
    the first and last centre, so no range of speeds maps to one identical code.
    """
    if len(speeds) == 0:
        return {"rule": BUCKET_RULE, "centers": [], "radii": []}
    centres = np.quantile(speeds, (np.arange(num) + 0.5) / num)
    if num == 1:
        radii = np.array([max(float(np.std(speeds)), min_radius)])
    else:
        gaps = np.diff(centres)
        left = np.concatenate([gaps[:1], gaps])  # the first centre has only a right neighbour
        right = np.concatenate([gaps, gaps[-1:]])
        radii = np.maximum(np.maximum(left, right) / 2, min_radius)
    return {
        "rule": BUCKET_RULE,
        "centers": [round(float(c), 2) for c in centres],
        "radii": [round(float(r), 2) for r in radii],
    }


# -- text report ---------------------------------------------------------------------------------
BAR_WIDTH = 40


def format_stats(stats: dict) -> str:
    lines = [f"annotation stats: {stats['output']}", ""]
    lines += _format_run(stats.get("run"))
    lines += _format_counts(stats)
    lines += _format_speed(stats["speed"])
    lines += _format_buckets(stats["speed_buckets"])
    return "\n".join(lines)


def _format_run(run: dict | None) -> list[str]:
    if not run or not run.get("writing_now"):
        return []
    lines = [f"RUN IN PROGRESS ({run['writing_now']}): figures below are the units committed so far"]
    if "videos" in run:
        v = run["videos"]
        lines.append(f"  {v['done']}/{v['total']} videos, {describe(run)} (as of {run['updated_at']})")
        for worker in run.get("workers", []):
            if worker.get("video"):
                done, expected = worker.get("frames_done") or 0, worker.get("frames_expected") or 0
                share = f" {100 * done / expected:.0f}%" if expected else ""
                lines.append(f"  worker {worker['host']}:{worker['pid']}: unit {worker['unit']}, {worker['video']}{share}")
    return lines + [""]


def _format_counts(stats: dict) -> list[str]:
    v = stats["videos"]
    lines = [
        f"clips     {stats['clips']:>8}   {stats['frames']} frames, {stats['hours']:.3f} h ({stats['hours'] * 60:.1f} min)",
        f"videos    {v['total']:>8}   ok {v['ok']}, skipped {v['skipped']}, failed {v['failed']}",
    ]
    for status in ("skipped", "failed", "dropped"):
        reasons = stats["reasons"].get(status)
        if reasons:
            lines.append(f"{status} because:")
            lines += [f"  {count:>6}  {reason}" for reason, count in reasons.items()]
    return lines + [""]


def _format_speed(speed: dict) -> list[str]:
    if not speed["frames"]:
        return ["head rotation speed: no frames", ""]
    pct = "  ".join(f"{name} {value:.1f}" for name, value in speed["percentiles"].items())
    lines = [
        f"head rotation speed (deg/s) over {speed['frames']} frames: mean {speed['mean']:.1f}, max {speed['max']:.1f}",
        f"  {pct}",
    ]
    hist = speed["histogram"]
    edges, counts = hist["bin_edges"], hist["counts"] + [hist["overflow"]]
    labels = [f"{lo:>5.0f}-{hi:<5.0f}" for lo, hi in zip(edges[:-1], edges[1:])] + [f"{edges[-1]:>5.0f}+     "]
    peak, total = max(counts), sum(counts)
    for label, count in zip(labels, counts):
        bar = "#" * round(BAR_WIDTH * count / peak) if peak else ""
        lines.append(f"  {label} |{bar:<{BAR_WIDTH}} {count:>8}  {100 * count / total:5.1f}%")
    return lines + [""]


def _format_buckets(buckets: dict) -> list[str]:
    if not buckets["centers"]:
        return []
    return [
        "suggested speed buckets for emo-train's speed encoder:",
        f"  centers = {buckets['centers']}",
        f"  radii   = {buckets['radii']}",
        f"  rule: {buckets['rule']}",
    ]
