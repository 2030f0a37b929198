"""The annotator's cost per input at 100,000 inputs (a script, not a test).

Each input is a one-second 32x32 video without sound, which a worker skips at once ("no audio
track"): what is left is the per-input machinery of a run (discovery, planning, the manifest,
scheduling units on Ray, one commit per unit, progress, the index merge) and of a rerun that
skips everything. The whole CLI (`emo-annotate run`, local Ray, 2 workers) runs on each count;
the cost per input beyond start-up is the slope between the smallest and each larger count, all
measured in the same run, so start-up (Ray, models) cancels out. The driver's peak memory comes
from the run's own summary.

    uv run python packages/annotate/benchmarks/bench_scale.py [--counts 1000,10000,100000] [--out bench_scale_out]

Prints a table and writes OUT/report.json. 100,000 inputs take about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from emo_annotate.media import write_video


def make_inputs(directory: Path, n: int) -> Path:
    """`n` copies of one tiny video, 1,000 to a folder (as a crawl would lay them out)."""
    marker = directory.with_name(directory.name + ".count")  # outside: every file inside gets an index row
    if marker.exists() and directory.exists() and marker.read_text() == str(n):
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    seed = directory.parent / "tiny.mp4"
    if not seed.exists():
        write_video(seed, [np.zeros((32, 32, 3), np.uint8)] * 25, 25.0)
    data = seed.read_bytes()
    for i in range(n):
        folder = directory / f"{i // 1000:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"clip_{i:06d}.mp4").write_bytes(data)
    marker.write_text(str(n))
    return directory


def run_cli(inputs: Path, out: Path, fresh: bool) -> tuple[float, dict]:
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "emo_annotate.cli", "run", str(inputs), str(out), "--num-workers", "2", "--quiet"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t, json.loads((out / "progress.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_scale_out"))
    parser.add_argument("--counts", default="1000,10000,100000", help="comma-separated input counts, smallest first")
    args = parser.parse_args()
    counts = sorted(int(c) for c in args.counts.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "python": platform.python_version(), "load_average_at_start": os.getloadavg()}, "runs": {}}
    for n in counts:
        inputs = make_inputs(args.out / "in", n)
        out = args.out / "out"
        first, progress = run_cli(inputs, out, fresh=True)
        rerun, _ = run_cli(inputs, out, fresh=False)
        summary = progress["summary"]
        assert summary["units"] == progress["units"]["total"] and progress["videos"]["done"] == n, progress["videos"]
        report["runs"][n] = {"seconds": round(first, 1), "rerun_seconds": round(rerun, 1), "units": summary["units"],
                             "driver_peak_rss_mb": summary["driver_peak_rss_mb"],
                             "index_mb": round((out / "index.parquet").stat().st_size / 1e6, 2)}
        print(n, report["runs"][n], flush=True)
        (args.out / "report.json").write_text(json.dumps(report, indent=2))
    base = counts[0]
    for n in counts[1:]:
        r, b = report["runs"][n], report["runs"][base]
        report["runs"][n]["ms_per_input_beyond_start"] = round(1000 * (r["seconds"] - b["seconds"]) / (n - base), 2)
        report["runs"][n]["rerun_ms_per_input_beyond_start"] = round(1000 * (r["rerun_seconds"] - b["rerun_seconds"]) / (n - base), 3)
        report["runs"][n]["driver_kb_per_input_beyond_start"] = round(
            1024 * (r["driver_peak_rss_mb"] - b["driver_peak_rss_mb"]) / (n - base), 2)
    report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    (args.out / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
