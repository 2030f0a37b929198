"""The CLI as a user meets it: help, one-line errors, exit codes, nothing clobbered."""

from __future__ import annotations

import subprocess
import sys

import pytest
from emo_annotate.config import AnnotateConfig
from emo_annotate.errors import ConfigError


def emo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emo_annotate.cli", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", [[], ["run"], ["verify"], ["stats"], ["inspect"], ["demo"]])
def test_help(command):
    result = emo(*command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "does/not/exist", "out"], "does not exist"),
        (["run", ".", "out", "--audio-features", "mfcc"], "--audio-features must be mel or wav2vec2"),
        (["run", ".", "out", "--landmarks", "dlib"], "--landmarks must be mediapipe or fan"),
        (["run", ".", "out", "--audio-features", "wav2vec2", "--audio-encoder", "./no/such/model"], "no wav2vec2 model there"),
        (["run", ".", "out", "--num-workers", "0"], "Invalid value"),
        (["run", ".", "out", "--x264-preset", "quick"], "--x264-preset must be one of ultrafast"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(args, message, tmp_path):
    result = emo(*[a if a != "out" else str(tmp_path / "out") for a in args])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


@pytest.mark.parametrize("options, message", [
    (dict(x264_preset="quick"), "--x264-preset must be one of ultrafast"),
    (dict(size=100), "--size must be a multiple of 16"),
    (dict(landmarks="dlib"), "--landmarks must be mediapipe or fan"),
    (dict(crf=60), "crf must be in 0..51"),
])
def test_python_callers_get_the_cli_errors(options, message):
    """AnnotateConfig checks its own values, so the Python API refuses what the CLI refuses, with
    the same message, before any work starts; a stored config still round-trips."""
    with pytest.raises(ConfigError, match=message):
        AnnotateConfig(**options)
    cfg = AnnotateConfig(x264_preset="superfast", size=256)
    assert AnnotateConfig.from_dict(cfg.to_dict()) == cfg


def test_output_that_is_a_file_or_foreign_dir_is_not_touched(tmp_path, media_dir):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    result = emo("run", str(media_dir), str(target))
    assert result.returncode == 1 and "not a directory" in result.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me too")
    result = emo("run", str(media_dir), str(foreign))
    assert result.returncode == 1 and "holds no annotation run" in result.stderr
    assert target.read_text() == "keep me" and sorted(p.name for p in foreign.iterdir()) == ["thesis.tex"]


def test_empty_input_dir(tmp_path):
    (tmp_path / "in").mkdir()
    result = emo("run", str(tmp_path / "in"), str(tmp_path / "out"))
    assert result.returncode == 1 and "no files" in result.stderr
    assert not (tmp_path / "out").exists()
