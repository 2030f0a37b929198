"""`emo-annotate inspect`: overlay video and pose plot of a real clip; unknown keys; axis convention."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from emo_annotate.cli import app
from emo_annotate.inspect import inspect_clip, pose_axes_2d, read_sample
from emo_annotate.layout import OutputLayout
from emo_annotate.media import decode_mp4
from emo_annotate.pose import rotations_to_euler
from emo_annotate.runner import RunError


def first_clip(out: Path) -> dict:
    table = pq.read_table(OutputLayout(out).index)
    return next(r for r in table.to_pylist() if r["status"] == "ok")


def test_inspect_writes_overlay_video_and_plot(annotated, tmp_path):
    _, out, _, _ = annotated
    clip = first_clip(out)
    key = clip["key"]
    result = CliRunner().invoke(app, ["inspect", str(out), "--key", key, "--out", str(tmp_path / "view")])
    assert result.exit_code == 0, result.output
    video, plot = tmp_path / "view" / f"{key}_overlay.mp4", tmp_path / "view" / f"{key}_pose.png"
    assert result.output.split() == [str(video), str(plot)]

    overlay = decode_mp4(video.read_bytes())
    original = decode_mp4(read_sample(OutputLayout(out).shard_path(clip["shard"]), key)["mp4"])
    assert len(overlay) == len(original) == clip["frames"]
    assert overlay[0].shape == original[0].shape
    # something was drawn on every frame (beyond re-encoding noise)
    assert all(np.abs(a.astype(int) - b).mean() > 2 for a, b in zip(overlay, original))
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.width > 400 and image.height > 300


def test_unknown_key_is_one_line_and_exit_1(annotated, tmp_path):
    """Through the installed script, so `main` turns the RunError into one line and exit code 1."""
    _, out, _, _ = annotated
    exe = Path(sys.executable).parent / "emo-annotate"
    command = [str(exe), "inspect", str(out), "--key", "nobody_000", "--out", str(tmp_path)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    message = f"error: no clip 'nobody_000' in {out} ({ok_clip_count(out)} clips there; keys are in index.parquet)"
    assert proc.stderr.strip().splitlines() == [message]
    assert not list(tmp_path.iterdir())


def test_near_miss_key_gets_a_suggestion(annotated, tmp_path):
    _, out, _, _ = annotated
    key = first_clip(out)["key"]
    with pytest.raises(RunError, match=re.escape(f"did you mean {key}?")):
        inspect_clip(out, key[:-1] + "9", tmp_path)


def ok_clip_count(out: Path) -> int:
    return sum(1 for r in pq.read_table(OutputLayout(out).index).to_pylist() if r["status"] == "ok")


def test_pose_axes_invert_the_pose_convention():
    rng = np.random.default_rng(0)
    rot = Rotation.random(20, random_state=rng)
    for matrix, (yaw, pitch, roll) in zip(rot.as_matrix(), rotations_to_euler(rot)):
        # the head's axes are R's columns; the image drops z and flips y (y down)
        assert np.allclose(pose_axes_2d(yaw, pitch, roll), np.stack([matrix[0], -matrix[1]], axis=1), atol=1e-9)


def test_pose_axes_signs_match_pose_docstring():
    x, y, z = 0, 1, 2
    assert np.allclose(pose_axes_2d(0, 0, 0), [[1, 0], [0, -1], [0, 0]])  # frontal: nose axis is a dot
    assert pose_axes_2d(30, 0, 0)[z][0] > 0  # yaw > 0: the face turns toward the image right
    assert pose_axes_2d(0, 30, 0)[z][1] < 0  # pitch > 0: chin up, the nose points up in the image
    assert pose_axes_2d(0, 0, 30)[x][1] < 0  # roll > 0: counter-clockwise, the x axis tips up
    assert pose_axes_2d(0, 0, 30)[y][0] < 0  # ... and the up axis leans left
