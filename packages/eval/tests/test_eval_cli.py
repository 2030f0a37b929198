"""`emo-eval` as a user meets it: --help, a run, bad inputs as one line with exit code 1 that
leave an earlier report untouched, and `benchmark` end to end on a tiny trained checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from eval_media import write_talking
from emo_eval import cli


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["emo-eval", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_help():
    result = subprocess.run([sys.executable, "-m", "emo_eval.cli", "compare", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for option in ("--real", "--portraits", "--audio", "--speed", "--syncnet", "--i3d", "--arcface", "--out"):
        assert option in result.stdout
    result = subprocess.run([sys.executable, "-m", "emo_eval.cli", "benchmark", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--checkpoint" in result.stdout and "--limit" in result.stdout


@pytest.fixture(scope="module")
def small_set(talking_crops, tmp_path_factory):
    """generated/a.mp4 (mirrored, silent) and real/a.mp4, 20 frames of 96 px; a portrait."""
    import cv2

    root = tmp_path_factory.mktemp("eval_cli")
    (root / "generated").mkdir()
    (root / "real").mkdir()
    (root / "portraits").mkdir()
    frames = talking_crops[:20]
    write_talking(root / "generated" / "a.mp4", [np.ascontiguousarray(f[:, ::-1]) for f in frames], None)
    write_talking(root / "real" / "a.mp4", frames, None)
    cv2.imwrite(str(root / "portraits" / "a.png"), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    (root / "notes.txt").write_text("x")
    return root


def test_cli_compare_writes_the_report(small_set, tmp_path, monkeypatch, capsys):
    out = tmp_path / "report"
    code, stdout, _ = run_cli(monkeypatch, capsys, "compare", small_set / "generated", "--real", small_set / "real",
                              "--portraits", small_set / "portraits", "--speed", "7", "--no-fid", "--out", out, "--quiet")
    assert code == 0 and "wrote" in stdout
    report = json.loads((out / "report.json").read_text())
    video = report["videos"]["a"]["metrics"]
    assert video["generated"]["frames"] == 20 and video["generated"]["head_speed_requested"] == 7.0
    assert 0 < video["paired"]["ssim"] < 1 and video["paired"]["psnr"] > 10 and video["generated"]["fsim"] > 0.8
    assert video["generated"]["lsync_corr"] is None  # no sound anywhere: sync cannot be measured ...
    assert report["metrics"]["lsync"]["status"] == "skipped" and "no audio" in report["metrics"]["lsync"]["reason"]
    assert "| a |" in (out / "report.md").read_text()  # ... and the table still has the video
    assert {p.name for p in (out / "videos" / "a").iterdir()} == {"identity.png", "mouth.png", "speed.png", "strip.png"}
    assert not (out / ".staging").exists()


def test_identity_none_skips_only_the_identity_metrics(small_set, tmp_path, monkeypatch, capsys):
    """--identity none (the fast mode): F-SIM, CSIM and the identity drift are reported skipped,
    every other figure is the one the full comparison gives."""
    reports = {}
    for backend in ("dlib", "none"):
        out = tmp_path / backend
        code, _, _ = run_cli(monkeypatch, capsys, "compare", small_set / "generated", "--real", small_set / "real",
                             "--portraits", small_set / "portraits", "--identity", backend, "--no-fid", "--out", out, "--quiet")
        assert code == 0
        reports[backend] = json.loads((out / "report.json").read_text())
    full, fast = (reports[b]["videos"]["a"]["metrics"] for b in ("dlib", "none"))
    assert full["generated"]["fsim"] > 0.8 and full["paired"]["csim"] > 0.8
    assert fast["generated"].get("fsim") is None and fast["paired"].get("csim") is None
    assert fast["generated"].get("identity_first_last") is None
    for name in ("fsim", "csim"):
        assert reports["none"]["metrics"][name]["status"] == "skipped"
        assert "--identity none" in reports["none"]["metrics"][name]["reason"]
    for group in ("generated", "paired"):
        others = {k: v for k, v in full[group].items() if k not in ("fsim", "csim", "identity_first_last", "identity_frames")}
        assert {k: fast[group].get(k) for k in others} == others, group


def bad_cases(root, tmp_path):
    syncnet_text = tmp_path / "syncnet_v2.model"
    syncnet_text.write_text("not weights")
    unpaired = tmp_path / "unpaired"
    unpaired.mkdir()
    (unpaired / "b.mp4").write_bytes((root / "real" / "a.mp4").read_bytes())
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.mp4").write_text("not a video")
    return {
        "generated missing": ([tmp_path / "nope"], "no such file or directory"),
        "no videos in folder": ([tmp_path], "no .avi"),
        "real unpaired": (["--real", unpaired], "no file for a"),
        "portrait without face": (["--portraits", root / "notes.txt"], "--portraits"),
        "speed not a number": (["--speed", root / "notes.txt"], "--speed"),
        "negative speed": (["--speed", "-2"], "--speed"),
        "syncnet not weights": (["--syncnet", syncnet_text], "--syncnet"),
        "i3d missing": (["--i3d", tmp_path / "i3d.pt"], "--i3d: no such file"),
        "identity unknown": (["--identity", "vgg"], "--identity"),
        "broken real video": (["--real", broken], "broken/a.mp4"),
    }


@pytest.mark.parametrize("case", ["generated missing", "no videos in folder", "real unpaired", "portrait without face",
                                  "speed not a number", "negative speed", "syncnet not weights", "i3d missing",
                                  "identity unknown", "broken real video"])
def test_bad_input_is_one_line_and_keeps_the_old_report(case, small_set, tmp_path, monkeypatch, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.json").write_text('{"earlier": true}')
    extra, expected = bad_cases(small_set, tmp_path)[case]
    generated = extra.pop(0) if extra and not str(extra[0]).startswith("--") else small_set / "generated"
    code, _, stderr = run_cli(monkeypatch, capsys, "compare", generated, *extra, "--no-fid", "--out", out, "--quiet")
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error:")]
    assert code == 1 and len(lines) == 1 and expected in lines[0], stderr
    assert "Traceback" not in stderr
    assert json.loads((out / "report.json").read_text()) == {"earlier": True}
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]


def test_benchmark_end_to_end(tiny_emo, tmp_path, monkeypatch, capsys):
    import io

    import webdataset as wds
    from emo_annotate.shards import shard_urls

    checkpoint, shards = tiny_emo
    out = tmp_path / "bench"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "benchmark", "--checkpoint", checkpoint, "--shards", shards, "--out", out,
                                   "--limit", "3", "--steps", "2", "--no-fid", "--quiet")
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    # a 64 px first frame can be too small for emo-infer's face detector: that clip is reported
    # as skipped with the reason, and the others are still generated and compared
    skipped = report["benchmark"]["skipped"]
    assert report["benchmark"]["clips"] + len(skipped) == 3 and report["benchmark"]["clips"] >= 2
    assert report["benchmark"]["stage"] == 3 and all("no face found" in reason for reason in skipped.values())
    assert set(report["videos"]).isdisjoint(skipped)
    clips = [s for s, _ in zip(wds.WebDataset(shard_urls(shards), shardshuffle=False), range(3)) if s["__key__"] not in skipped]
    for sample in clips:
        key = sample["__key__"]
        video = report["videos"][key]["metrics"]
        own_speed = float(np.load(io.BytesIO(sample["speed.npy"])).mean())
        assert video["generated"]["head_speed_requested"] == pytest.approx(own_speed, rel=1e-5)
        assert video["paired"]["paired_frames"] == video["real"]["frames"] > 0
        assert video["real"]["face_frames"] == video["real"]["frames"]  # the annotator's clips all show the face
        assert (out / "generated" / f"{key}.mp4").is_file()
        assert video["generated"]["lsync_offset"] is not None or video["generated"]["face_frames"] < 8
    assert report["metrics"]["psnr"]["status"] == "ok"
