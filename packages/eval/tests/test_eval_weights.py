"""SyncNet, I3D and ArcFace load through the same code path as real weights (random weights
saved in the real formats) and their metrics land in the report; SyncNet files are read without
running pickled code."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torch
from eval_media import audio_following, write_talking
from emo_eval import EvalError, SyncNet, compare, load_syncnet
from test_eval_frechet import save_i3d
from test_eval_identity import save_arcface

# a few (key, shape) pairs of the reference syncnet_v2 state dict (102 tensors)
REFERENCE_KEYS = {
    "netcnnaud.0.weight": (64, 1, 3, 3), "netcnnaud.18.weight": (512, 256, 5, 4), "netfcaud.3.weight": (1024, 512),
    "netcnnlip.0.weight": (96, 3, 5, 7, 7), "netcnnlip.18.weight": (512, 256, 1, 6, 6), "netfclip.1.running_var": (512,),
}


def save_syncnet_v2(path, seed: int = 0):
    """Random weights as the reference file stores them: SyncNetInstance's state dict (keys
    `__S__.`), in torch's legacy (pre-zip) serialization like the 2017 syncnet_v2.model."""
    torch.manual_seed(seed)
    model = SyncNet()
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    state = {f"__S__.{k}": v for k, v in model.state_dict().items()}
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return path, model


def test_syncnet_layers_match_the_reference_names(tmp_path):
    state = SyncNet().state_dict()
    assert len(state) == 102
    assert {k: tuple(state[k].shape) for k in REFERENCE_KEYS} == REFERENCE_KEYS
    path, model = save_syncnet_v2(tmp_path / "syncnet_v2.model")
    loaded = load_syncnet(path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


class _Payload:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_syncnet_file_with_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "code_ran"
    payload = _Payload()
    payload.marker = str(marker)
    bad = tmp_path / "syncnet_v2.model"
    with open(bad, "wb") as f:
        pickle.dump({"__S__.netcnnaud.0.weight": payload}, f)
    with pytest.raises(EvalError, match="--syncnet"):
        load_syncnet(bad)
    assert not marker.exists()
    other = tmp_path / "other.model"
    torch.save({"conv.weight": torch.zeros(3)}, other)
    with pytest.raises(EvalError, match="does not match SyncNet"):
        load_syncnet(other)


def test_user_weights_through_compare(talking_crops, measured_mouth, tmp_path):
    """A short generated/real pair with every user-supplied network: the metrics are measured,
    and the report names the exact weights files by checksum."""
    syncnet, _ = save_syncnet_v2(tmp_path / "syncnet_v2.model")
    i3d = save_i3d(tmp_path / "i3d_torchscript.pt")
    arcface = save_arcface(tmp_path / "arcface.onnx")
    frames = talking_crops[:40]
    audio = audio_following(measured_mouth[:40])
    (tmp_path / "real").mkdir()
    (tmp_path / "gen").mkdir()
    real = write_talking(tmp_path / "real" / "clip.mp4", frames, audio)
    generated = write_talking(tmp_path / "gen" / "clip.mp4", [np.ascontiguousarray(f[:, ::-1]) for f in frames], audio)
    report = compare(generated, real=real, out=tmp_path / "report", syncnet=syncnet, i3d=i3d, arcface=arcface, fid=False,
                     progress=False)
    metrics = report["videos"]["clip"]["metrics"]
    gen = metrics["generated"]
    assert np.isfinite(gen["sync_c"]) and gen["sync_c"] >= 0 and gen["sync_d"] > 0 and abs(gen["sync_offset"]) <= 15
    assert report["overall"]["distribution"]["fvd"] > 0 and report["overall"]["distribution"]["fvd_samples"] == [2, 2]
    assert -1 <= metrics["paired"]["csim"] <= 1 and gen["identity_frames"] == 40
    described = report["metrics"]
    for name, path in (("sync_c", syncnet), ("fvd", i3d), ("csim", arcface)):
        record = next(iter(described[name]["weights"].values()))
        assert described[name]["status"] == "ok"
        assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert described["fid"]["status"] == "skipped" and "turned off" in described["fid"]["reason"]
