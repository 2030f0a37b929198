"""The learning check's reduced run (`pipelines/learning_check.py --profile quick`, about 2.5 min
on 2 cores): the real CLIs from a synthetic talking-head set (emo-annotate synth, emo-annotate run)
through emo-train vae, 1, 2, 3, seven emo-infer generations and emo-eval, to the report.

A few minutes of training teach the VAE (asserted with the recipe's margin), not yet a face from
noise: 1,200 stage-1 steps at 64 px (2 min 19 s alone) still draw none MediaPipe can find. So the
generations start from the portrait (`emo-infer --init-strength 0.8`), which keeps a face the
evaluation finds, and every figure is measured. Their directions are not learnt in this time
(LEARNING.md, "What it does not show yet"): whether audio moves the mouth and speed the head is
what the full run answers (about 26 minutes); here the verdicts must be reported, and the exit
code must follow them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import av
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
VERDICTS = {"vae", "audio_moves_the_mouth", "silence_keeps_it_closed", "speed_moves_the_head"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, dict, int]:
    out = tmp_path_factory.mktemp("learning_check")
    # Ray under `uv run` would ship the checkout to its workers (learning_check.sh sets the same)
    env = {**os.environ, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    done = subprocess.run([sys.executable, str(ROOT / "pipelines" / "learning_check.py"), "--profile", "quick",
                           "--out", str(out)], capture_output=True, text=True, env=env)
    assert (out / "report.json").is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    return out, json.loads((out / "report.json").read_text()), done.returncode


@pytest.mark.slow
def test_the_trained_vae_reconstructs_better_than_an_untrained_one(quick_run):
    _, report, _ = quick_run
    vae = report["figures"]["vae"]
    assert report["verdicts"]["vae"]["passed"], report["verdicts"]["vae"]["detail"]
    assert vae["reconstruction_psnr"] - vae["untrained_reconstruction_psnr"] >= 10.0
    assert vae["evaluation_frames"] == 64


@pytest.mark.slow
def test_every_generation_is_made_and_every_question_answered(quick_run):
    out, report, exit_code = quick_run
    assert set(report["verdicts"]) == VERDICTS
    assert exit_code == (0 if all(v["passed"] for v in report["verdicts"].values()) else 1)
    settings = report["settings"]
    expected = {"audio": settings["generate_seconds"], "control": settings["generate_seconds"],
                "silence": settings["generate_seconds"], "long": settings["long_seconds"],
                **{f"speed_{int(s)}": settings["generate_seconds"] for s in settings["speeds"]}}
    for name, seconds in expected.items():
        with av.open(str(out / "generated" / f"{name}.mp4")) as container:
            stream = container.streams.video[0]
            assert stream.frames == round(seconds * 25) and stream.width == settings["size"], name
            assert container.streams.audio, f"{name}.mp4 has no sound"
        assert (out / "eval" / name / "report.json").is_file()
    # every figure measured: the generations hold faces the evaluation finds
    figures = report["figures"]
    assert settings["init_strength"] == 0.8
    assert figures["identity"]["face_frames"] >= 10, figures["identity"]
    for key in ("corr_audio", "corr_control", "open_voiced", "open_silence_video"):
        assert isinstance(figures["mouth"][key], float), (key, figures["mouth"])
    assert all(isinstance(v, float) for v in figures["speed"]["measured"]), figures["speed"]
    assert isinstance(figures["long"]["identity_first_last"], float), figures["long"]
    # the real video, cropped as the generations are, scored as the reference
    assert report["figures"]["identity"]["fsim_real"] > 0.8
    assert report["figures"]["mouth"]["corr_real"] > 0.5
    assert (out / "strip.png").is_file()
    assert {"synth", "annotate", "train vae", "train 3", "generate (wall)", "total"} <= set(report["seconds"])


@pytest.mark.slow
def test_the_gpu_split_packs_shards_the_trainer_reads_alike(quick_run, tmp_path):
    """learning_check_gpu.py pack (what travels to a lent GPU): the held-out inputs, and shards
    without the members the trainer does not read, every other member unchanged; the trainer's
    batches from them are the same as from the annotator's shards."""
    from emo_train.data import DataConfig, make_dataloader

    out, _, _ = quick_run
    payload = tmp_path / "payload"
    subprocess.run([sys.executable, str(ROOT / "pipelines" / "learning_check_gpu.py"), "pack", str(out), str(payload)],
                   check=True, capture_output=True)
    originals = sorted((out / "shards" / "shards").glob("*.tar"))
    assert originals and [p.name for p in sorted((payload / "shards" / "shards").glob("*.tar"))] == [p.name for p in originals]
    for original in originals:
        with tarfile.open(original) as a, tarfile.open(payload / "shards" / "shards" / original.name) as b:
            kept = {m.name: a.extractfile(m).read() for m in a if not m.name.endswith((".lmk.npy", ".wav"))}
            assert {m.name: b.extractfile(m).read() for m in b} == kept
    for path in ("set/set.json", "timings.json", "shards/index.parquet"):
        assert (payload / path).is_file(), path

    def batches(shards: Path, stage: int) -> list[dict]:
        """One pass over the shards (the quick set has only a few clips)."""
        cfg = DataConfig(shards=str(shards), stage=stage, size=64, shuffle_buffer=0, seed=0)
        return list(make_dataloader(cfg, batch_size=1, num_workers=0))

    for stage in (1, 3):
        original, slimmed = batches(out / "shards", stage), batches(payload / "shards", stage)
        assert len(original) == len(slimmed) >= 1
        for a, b in zip(original, slimmed):
            assert a.keys() == b.keys()
            for key, value in a.items():
                if isinstance(value, torch.Tensor):
                    assert torch.equal(value, b[key]), (stage, key)
                elif key == "url":  # where each sample came from: the other folder
                    assert [Path(u).name for u in value] == [Path(u).name for u in b[key]]
                else:
                    assert value == b[key], (stage, key)


@pytest.mark.slow
def test_finish_takes_only_the_results_of_its_own_pack(quick_run, tmp_path):
    """learning_check_gpu.py unpack: a results.tar made from this WORK's payload is unpacked into
    it; one from another pack is refused with one line, and nothing of it is written."""
    out, _, _ = quick_run
    script = [sys.executable, str(ROOT / "pipelines" / "learning_check_gpu.py")]
    payload = tmp_path / "payload"
    subprocess.run([*script, "pack", str(out), str(payload)], check=True, capture_output=True)

    def results(name: str, run_file: Path) -> Path:
        target = tmp_path / name
        with tarfile.open(target, "w") as tar:
            tar.add(run_file, arcname="gpu_run.json")
            note = tmp_path / f"{name}.txt"
            note.write_text(name)
            tar.add(note, arcname=f"device_{name}.txt")
        return target

    ours = results("ours", payload / "gpu_run.json")
    done = subprocess.run([*script, "unpack", str(out), str(ours)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (out / "device_ours.txt").read_text() == "ours"

    other_id = tmp_path / "other_run.json"
    other_id.write_text(json.dumps({"run_id": "0" * 32}))
    another_run = results("other", other_id)
    without_id = tmp_path / "older.tar"  # made before run ids, or not by the device step
    with tarfile.open(without_id, "w") as tar:
        tar.add(ours, arcname="device_older.txt")
    for name, target in (("other", another_run), ("older", without_id)):
        done = subprocess.run([*script, "unpack", str(out), str(target)], capture_output=True, text=True)
        assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert not (out / f"device_{name}.txt").exists()
