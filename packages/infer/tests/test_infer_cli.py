"""`emo-infer` as a user meets it: --help, a run, and every bad input as one line with exit code 1
before any weights are loaded, leaving an existing output untouched."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from infer_media import decode
from emo_infer import cli


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["emo-infer", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture
def no_weights(monkeypatch):
    """Bad inputs must be refused before the model is loaded or audio features are computed."""
    import emo_infer.audio
    import emo_infer.checkpoint

    def heavy(*args, **kwargs):
        raise AssertionError("heavy work started before the inputs were checked")

    monkeypatch.setattr(emo_infer.checkpoint, "load_weights", heavy)
    monkeypatch.setattr(emo_infer.audio, "make_featurizer", heavy)


def test_help():
    result = subprocess.run([sys.executable, "-m", "emo_infer.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for option in ("--checkpoint", "--image", "--audio", "--out", "--speed", "--steps", "--guidance", "--speed-guidance",
                   "--init-strength", "--seed", "--size", "--device", "--dtype", "--motion-frames", "--frames-per-clip", "--audio-encoder"):
        assert option in result.stdout


def test_cli_generates(assets, tmp_path, monkeypatch, capsys):
    out = tmp_path / "deep" / "er" / "talking.mp4"  # missing folders are created
    code, stdout, _ = run_cli(monkeypatch, capsys, "--checkpoint", assets["checkpoint"], "--image", assets["image"],
                              "--audio", assets["short"], "--out", out, "--steps", "2", "--speed", "15",
                              "--size", "96", "--seed", "3", "--quiet")
    assert code == 0 and "wrote" in stdout and "25 frames" in stdout
    frames, facts = decode(out)
    assert len(frames) == 25 and (facts["width"], facts["height"]) == (96, 96)
    assert not list(out.parent.glob(".*partial*"))


def bad_cases(assets, no_face, tmp_path):
    text_audio = tmp_path / "speech.wav"
    text_audio.write_text("not audio at all")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    speed_text = tmp_path / "speed.txt"
    speed_text.write_text("fast")
    always_speed = shutil.copytree(assets["checkpoint"], tmp_path / "always_speed")  # stage 3 without speed dropout
    config = json.loads((always_speed / "config.json").read_text())
    config["data"]["drop_speed"] = 0.0
    (always_speed / "config.json").write_text(json.dumps(config))
    good = {"--checkpoint": assets["checkpoint"], "--image": assets["image"], "--audio": assets["short"],
            "--out": tmp_path / "out.mp4"}
    return {
        "no face": ({"--image": no_face}, "no face found"),
        "image missing": ({"--image": tmp_path / "nope.jpg"}, "no such file"),
        "image not an image": ({"--image": text_audio}, "not an image"),
        "unreadable audio": ({"--audio": text_audio}, "cannot use"),
        "audio missing": ({"--audio": tmp_path / "nope.wav"}, "no such file"),
        "audio without sound": ({"--audio": assets["image"]}, "no audio track"),
        "missing checkpoint": ({"--checkpoint": tmp_path / "no_run"}, "no such file or directory"),
        "not a checkpoint": ({"--checkpoint": tmp_path}, "no checkpoint found"),
        "out under a file": ({"--out": a_file / "out.mp4"}, "cannot write"),
        "out is a folder": ({"--out": tmp_path}, "is a directory"),
        "out not a video container": ({"--out": tmp_path / "out.gif"}, "write an H.264 + AAC video"),
        "speed not a number": ({"--speed": speed_text}, "cannot read"),
        "negative speed": ({"--speed": "-3"}, "--speed must be >= 0"),
        "bad size": ({"--size": "100"}, "multiple of 8"),
        "float16 on cpu": ({"--dtype": "float16", "--device": "cpu"}, "needs a GPU"),
        "bad device": ({"--device": "tpu9"}, "unknown device"),
        "no gpu": ({"--device": "cuda"}, "no CUDA device"),
        "motion longer than a clip": ({"--motion-frames": "13"}, "motion-frames"),
        "clip longer than the temporal layers": ({"--frames-per-clip": "30"}, "34 exceed the model's 32 temporal positions"),
        "more steps than the noise schedule": ({"--steps": "5000"}, "at most 1000"),
        "unknown option": ({"--colour": "red"}, "No such option"),
        "stage 3 never trained without speed": ({"--checkpoint": always_speed}, "pass --speed"),
        "speed guidance without speed dropout": ({"--checkpoint": always_speed, "--speed": "10", "--speed-guidance": "3"},
                                                 "trained with speed dropout"),
        "negative speed guidance": ({"--speed-guidance": "-1"}, "Invalid value"),
        "init strength zero": ({"--init-strength": "0"}, "--init-strength must be in (0, 1]"),
        "init strength above one": ({"--init-strength": "1.5"}, "--init-strength must be in (0, 1]"),
    }, good


CASES = [
    "no face", "image missing", "image not an image", "unreadable audio", "audio missing", "audio without sound",
    "missing checkpoint", "not a checkpoint", "out under a file", "out is a folder", "out not a video container", "speed not a number",
    "negative speed", "bad size", "float16 on cpu", "bad device",
    pytest.param("no gpu", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")), "motion longer than a clip", "unknown option",
    "stage 3 never trained without speed", "init strength zero", "init strength above one",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_exit_1(case, assets, no_face_image, tmp_path, monkeypatch, capsys, no_weights):
    cases, good = bad_cases(assets, no_face_image, tmp_path)
    change, message = cases[case]
    options = {**good, **change}
    precious = options["--out"]
    if precious.suffix == ".mp4" and precious.parent.is_dir():
        precious.write_bytes(b"an earlier video")
    code, stdout, stderr = run_cli(monkeypatch, capsys, *[str(x) for pair in options.items() for x in pair])
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], stderr
    assert "Traceback" not in stderr and stdout == ""
    if precious.suffix == ".mp4" and precious.parent.is_dir():
        assert precious.read_bytes() == b"an earlier video"  # a failed run never touches an existing output


def test_failure_during_generation_keeps_the_old_video(assets, tmp_path, monkeypatch):
    """A crash after generation started leaves --out as it was and no partial file behind."""
    import emo_infer.pipeline
    from emo_infer import generate

    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier video")

    def broken_decode(self, latents):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(emo_infer.pipeline.EMOPipeline, "decode", broken_decode)
    with pytest.raises(RuntimeError, match="out of memory"):
        generate(checkpoint=assets["checkpoint"], image=assets["image"], audio=assets["short"], out=out,
                 steps=1, progress=False)
    assert out.read_bytes() == b"an earlier video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_checkpoint_folder_list_matches_the_model_components():
    from emo_infer.checkpoint import COMPONENT_DIRS
    from emo_train.models.emo import COMPONENTS

    assert set(COMPONENT_DIRS) == {*COMPONENTS, "vae"}
