"""The annotator on a real multi-node Ray cluster (Ray's own `cluster_utils.Cluster`: a head without
CPUs and two worker nodes of one CPU, each its own raylet), driven by the CLI as a user runs it:

- a run across the nodes gives exactly the shards, stats and index of an in-process run;
- a worker node removed mid-run (its raylet and workers killed) loses and duplicates nothing and
  the run ends, although the lost worker's replacement can never be placed;
- the driver killed and started again resumes to the same output;
- a video its worker keeps dying on fails alone, the other videos of its unit are kept;
- `stats` is readable while the run goes;
- a thousand tiny inputs: one index row each, and a rerun that skips them all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from emo_annotate import index, samples
from emo_annotate.cli import app
from emo_annotate.config import AnnotateConfig, ClipConfig
from emo_annotate.layout import OutputLayout
from emo_annotate.media import write_video
from emo_annotate.pipeline import Annotator
from emo_annotate.units import discover_videos, extend_plan, process_unit

from test_runner import content

FPS = 25.0
STORE = 80 * 1024 * 1024  # object store per node (Ray's minimum is 75 MB)


@pytest.fixture(scope="module")
def cluster():
    from ray._common.utils import reset_ray_address
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, "object_store_memory": STORE})
    reset_ray_address()  # a plain ray.init() elsewhere on this machine must not join the test cluster
    for _ in range(2):
        c.add_node(num_cpus=1, object_store_memory=STORE)
    c.wait_for_nodes()
    yield c
    c.shutdown()


def carphone_frames() -> list[np.ndarray]:
    with av.open(str(samples.carphone_path())) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return frames + frames[::-1]  # back and forth: 240 frames, no jump


def talking_head(path: Path, seconds: float, seed: int) -> Path:
    cycle = carphone_frames()
    n = int(seconds * FPS)
    write_video(path, (cycle[i % len(cycle)] for i in range(n)), FPS, audio=samples.synth_speech(seconds, seed=seed))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Four 20 s talking heads: one unit each, long enough to be caught in flight (progress.json
    is written every second; an 8 s video took about 2 s on a quiet machine, too short to see both
    nodes busy at once)."""
    d = tmp_path_factory.mktemp("cluster_in")
    for i in range(4):
        talking_head(d / f"talk_{i}.mp4", 20.0, seed=i)
    return d


OPTIONS = ["--size", "128", "--max-clip-seconds", "2", "--shard-size", "1"]
CFG = AnnotateConfig(size=128, videos_per_task=1, shard_size=1, clip=ClipConfig(max_seconds=2.0))  # what OPTIONS give


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> dict[str, str]:
    """The same plan annotated in this process, no Ray at all."""
    layout = OutputLayout(tmp_path_factory.mktemp("reference") / "out")
    layout.create()
    annotator = Annotator(CFG)
    try:
        for unit in extend_plan([], discover_videos(inputs), CFG.videos_per_task, 2):
            process_unit(unit, inputs, layout, annotator, CFG.shard_size)
    finally:
        annotator.close()
    index.merge(sorted(layout.units.glob("*.parquet")), [], layout.index)
    return content(layout.root)


def cli(cluster, inputs: Path, out: Path, workers: int = 2, videos_per_task: int = 1, *extra: str) -> list[str]:
    return [sys.executable, "-m", "emo_annotate.cli", "run", str(inputs), str(out), "--address", cluster.address, "--quiet",
            *OPTIONS, "--num-workers", str(workers), "--videos-per-task", str(videos_per_task), *extra]


def progress(out: Path) -> dict:
    try:
        return json.loads((out / "progress.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300.0):
    end = time.time() + timeout
    while time.time() < end:
        value = condition()
        if value:
            return value
        assert proc.poll() is None, "the run ended before the moment the test waits for"
        time.sleep(0.2)
    raise TimeoutError


def busy(out: Path) -> dict[str, dict]:
    """node id -> the worker on it that is annotating a video (from progress.json)."""
    return {w["node"]: w for w in progress(out).get("workers", []) if w.get("video")}


def test_a_worker_node_removed_mid_run_loses_nothing_duplicates_nothing_and_the_run_ends(cluster, inputs, reference, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(cli(cluster, inputs, out))
    try:
        working = wait_for(lambda: busy(out) if len(busy(out)) == 2 else None, proc)  # both nodes annotate
        live = CliRunner().invoke(app, ["stats", str(out)])  # readable while the run goes
        assert live.exit_code == 0, live.output
        assert "RUN IN PROGRESS" in live.output and "/4 videos" in live.output, live.output
        victim = next(n for n in cluster.worker_nodes if n.node_id in working)
        cluster.remove_node(victim, allow_graceful=False)
        assert proc.wait(timeout=600) == 0  # the replacement worker never fits: the survivor finishes
    finally:
        if proc.poll() is None:
            proc.kill()
        cluster.add_node(num_cpus=1, object_store_memory=STORE)
        cluster.wait_for_nodes()
    assert content(out) == reference
    final = progress(out)
    assert final["state"] == "finished" and final["events"]["worker_deaths"] >= 1
    assert final["videos"] == {"done": 4, "total": 4, "failed": 0, "skipped": 0}


def test_the_driver_killed_and_started_again_resumes(cluster, inputs, reference, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(cli(cluster, inputs, out))
    try:
        wait_for(lambda: len(list((out / "units").glob("*.parquet"))) >= 1, proc)
    finally:
        proc.send_signal(signal.SIGKILL)  # the driver alone: the cluster and its nodes stay
        proc.wait()
    assert len(list((out / "units").glob("*.parquet"))) < 4, "the run finished before it was killed"
    subprocess.run(cli(cluster, inputs, out), check=True, timeout=600)
    assert content(out) == reference


def test_a_video_its_worker_keeps_dying_on_fails_alone(cluster, tmp_path):
    """Three videos per unit, the third one 'poison': its worker is killed whenever it annotates
    it (as the OOM killer or a crash in a decoder would). With --retries 1 the second death
    gives it up; the unit is redone without it and its other two videos keep their clips."""
    d = tmp_path / "in"
    d.mkdir()
    # the poison video is long enough that a kill, at most a progress interval (1 s) late, lands while it is annotated
    for name, seconds in (("a", 2.0), ("b", 2.0), ("c_poison", 30.0)):
        talking_head(d / f"{name}.mp4", seconds, seed=len(name))
    for name in "def":  # a second unit (one worker gets two units of three) of inputs that are no videos
        (d / f"{name}.txt").write_text("notes\n")
    out = tmp_path / "out"
    proc = subprocess.Popen(cli(cluster, d, out, 1, 3, "--retries", "1"))  # units [a, b, c_poison], [d, e, f]
    killed = set()
    try:
        while proc.poll() is None and len(killed) < 2:
            for worker in progress(out).get("workers", []):
                if worker.get("video") == "c_poison.mp4" and worker["pid"] not in killed:
                    os.kill(worker["pid"], signal.SIGKILL)
                    killed.add(worker["pid"])
            time.sleep(0.2)
        assert proc.wait(timeout=600) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(killed) == 2
    rows = pq.read_table(out / "index.parquet").to_pylist()
    poison = [r for r in rows if r["source"] == "c_poison.mp4"]
    assert len(poison) == 1 and poison[0]["status"] == "failed", poison
    assert poison[0]["reason"].startswith("the worker died 2 times annotating this video")
    for name in "ab":
        mine = [r for r in rows if r["source"] == f"{name}.mp4"]
        assert mine and all(r["status"] == "ok" and r["key"] for r in mine), mine
    final = progress(out)
    assert final["events"] == {"worker_deaths": 2, "videos_given_up": 1}


def test_a_thousand_tiny_inputs_get_one_row_each_and_a_rerun_skips_them_all(cluster, tmp_path):
    """The per-input machinery end to end (plan, scheduling, 250 unit commits, the index merge,
    resume); its cost per input at 100,000 inputs is measured by benchmarks/bench_scale.py."""
    d = tmp_path / "in"
    d.mkdir()
    write_video(d / "x.mp4", [np.zeros((32, 32, 3), np.uint8)] * 25, FPS)  # one second, no sound: skipped at once
    data = (d / "x.mp4").read_bytes()
    (d / "x.mp4").unlink()
    n = 1000
    for i in range(n):
        (d / f"{i // 100:02d}" / f"clip_{i:04d}.mp4").parent.mkdir(exist_ok=True)
        (d / f"{i // 100:02d}" / f"clip_{i:04d}.mp4").write_bytes(data)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "emo_annotate.cli", "run", str(d), str(out), "--address", cluster.address, "--quiet",
           "--num-workers", "2"]
    t = time.time()
    subprocess.run(cmd, check=True, timeout=600)
    first = time.time() - t
    rows = pq.read_table(out / "index.parquet").to_pylist()
    assert len(rows) == n and {(r["status"], r["reason"]) for r in rows} == {("skipped", "no audio track")}
    assert len({r["video_id"] for r in rows}) == n
    t = time.time()
    again = subprocess.run(cmd, check=True, timeout=600, capture_output=True, text=True)
    assert "250/250 units were already done" in again.stdout
    print(f"{n} inputs: {first:.1f} s, rerun {time.time() - t:.1f} s")
