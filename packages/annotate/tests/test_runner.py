"""End to end through Ray: stock readers, bad inputs, resumption, kill-and-resume, worker crashes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from emo_annotate.config import AnnotateConfig, RunConfig
from emo_annotate.layout import OutputLayout
from emo_annotate.runner import RunError, run
from emo_annotate.shards import shard_urls

MEMBERS = {"mp4", "wav", "audio.npy", "pose.npy", "speed.npy", "bbox.npy", "mask.png", "json", "lmk.npy"}


def test_stock_webdataset_reads_every_clip(annotated):
    _, out, _, summary = annotated
    samples = list(wds.WebDataset(shard_urls(out), shardshuffle=False).decode("l8"))
    assert len(samples) == summary["clips"] >= 3
    for sample in samples:
        assert MEMBERS <= set(sample), sample.keys()
        meta = sample["json"]
        frames = meta["frames"]
        assert "." not in sample["__key__"]
        assert sample["pose.npy"].shape == (frames, 6) and sample["pose.npy"].dtype == np.float32
        assert sample["speed.npy"].shape == (frames,)
        assert sample["bbox.npy"].shape == (frames, 4)
        assert sample["lmk.npy"].shape == (frames, 468, 3) and sample["lmk.npy"].dtype == np.float16
        assert sample["audio.npy"].shape == (frames, 320) and sample["audio.npy"].dtype == np.float16
        mask = sample["mask.png"]
        assert mask.shape == (meta["size"], meta["size"]) and mask.dtype == np.uint8
        # the face boxes lie inside the crop and inside the union mask
        box = sample["bbox.npy"]
        assert (box >= 0).all() and (box <= meta["size"]).all()
        centres = ((box[:, :2] + box[:, 2:]) / 2).astype(int)
        assert (mask[centres[:, 1], centres[:, 0]] == 255).all()


def test_ray_data_and_pyarrow_read_the_output(annotated):
    import ray

    _, out, _, summary = annotated
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        rows = ray.data.read_webdataset(str(out / "shards"), decoder=None).take_all()
    finally:
        ray.shutdown()
    assert len(rows) == summary["clips"]
    assert all("pose.npy" in r and "mp4" in r for r in rows)
    table = pq.read_table(out / "index.parquet")
    keys = [k for k in table.column("key").to_pylist() if k]
    assert sorted(keys) == sorted(r["__key__"] for r in rows)
    for path in OutputLayout(out).shard_files():  # no pickles anywhere
        for sample in wds.WebDataset(str(path), shardshuffle=False):
            for name, value in sample.items():
                if name.endswith(".npy"):
                    np.load(io.BytesIO(value), allow_pickle=False)


def test_every_bad_input_gets_a_status_row_and_good_clips_survive(annotated):
    _, out, expected, _ = annotated
    table = pq.read_table(out / "index.parquet").to_pylist()
    for source, status in expected.items():
        rows = [r for r in table if r["source"] == source]
        assert rows, f"no row for {source}"
        rows = [r for r in rows if r["status"] != "dropped"]  # stretches of a video, with their reason
        if status == "ok":
            assert all(r["status"] == "ok" and r["key"] for r in rows), rows
        else:
            assert len(rows) == 1 and rows[0]["status"] == status and rows[0]["reason"], rows
    reasons = {r["source"]: r["reason"] for r in table if r["status"] not in ("ok", "dropped")}
    assert reasons["empty.mp4"] == "empty file"
    assert reasons["speech.wav"] == "no video stream"
    assert reasons["README.txt"].startswith("not a video file")
    assert reasons["no_audio.mp4"] == "no audio track"
    assert reasons["two_faces.mp4"] == "several faces"
    assert reasons["no_face.mp4"] == "no face" and reasons["cartoon.mp4"] == "no face"
    assert "too short" in reasons["one_frame.mp4"]
    ok_sources = {r["source"] for r in table if r["status"] == "ok"}
    assert ok_sources == {s for s, st in expected.items() if st == "ok"}


def test_rerun_skips_finished_work_and_changes_nothing(annotated):
    inputs, out, _, summary = annotated
    before = tree_digest(out, skip={"index.parquet", "manifest.json", "run.lock", "progress.json"})
    again = run(inputs, out, AnnotateConfig(videos_per_task=3, shard_size=2), RunConfig(num_workers=2, progress=False))
    assert again["units_skipped_as_done"] == again["units"]
    assert again["clips"] == summary["clips"]
    assert tree_digest(out, skip={"index.parquet", "manifest.json", "run.lock", "progress.json"}) == before


def test_other_config_into_same_output_is_refused_untouched(annotated):
    inputs, out, _, _ = annotated
    before = tree_digest(out)
    with pytest.raises(RunError, match="fps: 25.0 -> 30.0"):
        run(inputs, out, AnnotateConfig(fps=30.0, videos_per_task=3, shard_size=2), RunConfig(progress=False))
    assert tree_digest(out) == before


def tree_digest(root: Path, skip: set[str] = frozenset()) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in skip
    }


# -- interruption -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many_inputs(tmp_path_factory, media_dir) -> Path:
    """Six small videos, one unit each, so a run can be interrupted between units."""
    d = tmp_path_factory.mktemp("many")
    for i in range(3):
        shutil.copy(media_dir / "carphone.mp4", d / f"carphone_{i}.mp4")
        shutil.copy(media_dir / "astronaut_roll.mp4", d / f"astronaut_{i}.mp4")
    return d


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "emo_annotate.cli", "run", *args, "--videos-per-task", "1", "--shard-size", "1", "--quiet"]


def content(out: Path) -> dict[str, str]:
    """Everything a reader can see: shard bytes, stats minus timestamps, index rows."""
    digest = tree_digest(out / "shards")
    for stats in sorted((out / "stats").glob("*.json")):
        data = json.loads(stats.read_text())
        data.pop("written_at")
        digest[f"stats/{stats.name}"] = json.dumps(data, sort_keys=True)
    digest["index"] = json.dumps(sorted(pq.read_table(out / "index.parquet").to_pylist(), key=str), sort_keys=True)
    return digest


@pytest.fixture(scope="module")
def clean_run(many_inputs, tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("clean") / "out"
    subprocess.run(cli(str(many_inputs), str(out), "--num-workers", "2"), check=True, timeout=600)
    return content(out)


def wait_for(condition, timeout: float = 240.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError


def test_killed_run_then_rerun_equals_clean_run(many_inputs, clean_run, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(cli(str(many_inputs), str(out), "--num-workers", "1"), start_new_session=True)
    try:
        wait_for(lambda: len(list((out / "units").glob("*.parquet"))) >= 2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # driver, raylet and workers at once
        proc.wait()
    assert len(list((out / "units").glob("*.parquet"))) < 6, "the run finished before it was killed"
    subprocess.run(cli(str(many_inputs), str(out), "--num-workers", "2"), check=True, timeout=600)
    assert not list(out.rglob("*.tmp"))
    assert content(out) == clean_run


def test_crashed_worker_is_retried(many_inputs, clean_run, tmp_path):
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "out"
    proc = subprocess.Popen(cli(str(many_inputs), str(out), "--num-workers", "1"), start_new_session=True)
    try:
        wait_for(lambda: len(list((out / "units").glob("*.parquet"))) >= 1)
        victims = [p for p in psutil.process_iter(["cmdline"]) if "ray::UnitWorker" in " ".join(p.info["cmdline"] or [])]
        assert victims, "no Ray worker process found"
        for victim in victims:
            victim.kill()
        assert proc.wait(timeout=600) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert content(out) == clean_run


def test_resume_from_another_input_directory_is_refused_untouched(annotated, tmp_path):
    _, out, _, _ = annotated
    before = tree_digest(out)
    (tmp_path / "other").mkdir()
    with pytest.raises(RunError, match="holds a run over"):
        run(tmp_path / "other", out, AnnotateConfig(videos_per_task=3, shard_size=2), RunConfig(progress=False))
    assert tree_digest(out) == before


# -- one writer at a time -----------------------------------------------------------------------


def test_a_second_run_into_the_same_output_is_refused_while_the_first_runs(many_inputs, tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen(cli(str(many_inputs), str(out), "--num-workers", "1"), start_new_session=True)
    try:
        wait_for(lambda: (out / "run.lock").exists() and (out / "run.lock").read_text().startswith("pid"))
        second = subprocess.run(cli(str(many_inputs), str(out), "--num-workers", "1"), capture_output=True, text=True, timeout=120)
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert second.returncode == 1 and len(lines) == 1, second.stderr
        assert lines[0].startswith("error: ") and "being written by another emo-annotate run" in lines[0]
        assert f"pid {first.pid}" in lines[0]
        assert first.poll() is None  # the first run goes on
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    with OutputLayout(out).exclusive():  # a killed holder leaves no stale lock behind
        pass


def test_a_stale_attempt_cannot_commit_a_retried_attempts_half_written_shard(tmp_path):
    """A unit retried while its first attempt still runs (a worker taken for dead): both write
    the same shard; each writes its own temporary file, so the one that loses can only fail."""
    from emo_annotate.shards import ShardSink

    layout = OutputLayout(tmp_path / "out")
    layout.create()

    def sample(key: str) -> dict:
        meta = {"frames": 3, "fps": 25.0, "quality": {"speed_mean": 1.0}}
        return {"__key__": key, "json": json.dumps(meta).encode(), "speed.npy": b"x" * 1000}

    stale = ShardSink(layout, 7, shard_size=2)
    stale.add(sample("v_000"))
    layout.clear_unit(7)  # the retried attempt starts over
    retry = ShardSink(layout, 7, shard_size=2)
    retry.add(sample("v_000"))
    with pytest.raises(FileNotFoundError):
        stale.add(sample("v_001"))  # its file was cleared away: it cannot commit anything
    retry.add(sample("v_001"))
    shard = layout.shard_path("00007-000")
    assert [s["__key__"] for s in wds.WebDataset(str(shard), shardshuffle=False)] == ["v_000", "v_001"]
    assert json.loads(layout.stats_path("00007-000").read_text())["keys"] == ["v_000", "v_001"]
