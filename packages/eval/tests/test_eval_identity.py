"""Identity known answers on real faces: the astronaut rotated scores higher against her own
portrait than Grace Hopper does; ArcFace loads from an ONNX file like real weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from eval_media import grace_hopper
from emo_annotate.samples import astronaut_image, rotated_astronaut_frames
from emo_eval import ArcFaceEmbedder, DlibEmbedder, EvalError, FaceTracker, cosine


@pytest.fixture(scope="module")
def faces():
    """(image, landmarks) of the astronaut, her rotated views and Grace Hopper."""
    tracker = FaceTracker()
    try:
        def found(rgb):
            tracker.reset()
            landmarks = tracker.track(rgb)
            assert landmarks is not None
            return rgb, landmarks

        return {
            "portrait": found(astronaut_image()),
            "rotated": [found(rgb) for rgb in rotated_astronaut_frames(np.array([-12.0, 9.0, 15.0]))],
            "other": found(grace_hopper()),
        }
    finally:
        tracker.close()


def test_same_face_rotated_beats_another_face_dlib(faces):
    embedder = DlibEmbedder()
    portrait = embedder.embed(*faces["portrait"])
    same = [float(cosine(portrait, embedder.embed(*f))) for f in faces["rotated"]]
    other = float(cosine(portrait, embedder.embed(*faces["other"])))
    assert portrait.shape == (128,) and np.isclose(np.linalg.norm(portrait), 1, atol=1e-5)
    assert min(same) > 0.9
    assert min(same) > other + 0.05, (same, other)


class TinyArcFace(torch.nn.Module):
    """An ArcFace-shaped network: (n, 3, 112, 112) -> (n, 512)."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.PReLU(8), torch.nn.Conv2d(8, 16, 3, stride=2))
        self.embedding = torch.nn.Linear(16 * 13 * 13, 512)

    def forward(self, x):
        return self.embedding(self.features(x).flatten(1))


def save_arcface(path, seed: int = 0):
    """Random weights in the real format: ONNX with insightface's input name and a dynamic batch."""
    torch.manual_seed(seed)
    torch.onnx.export(TinyArcFace().eval(), (torch.zeros(1, 3, 112, 112),), str(path), dynamo=False,
                      input_names=["input.1"], output_names=["embedding"], dynamic_axes={"input.1": {0: "None"}})
    return path


def test_arcface_onnx_loads_like_real_weights(faces, tmp_path):
    embedder = ArcFaceEmbedder(save_arcface(tmp_path / "w600k_r50.onnx"))
    image, landmarks = faces["portrait"]
    aligned = embedder.aligned(image, landmarks)
    assert aligned.shape == (112, 112, 3)
    # the five points land on the template: eyes in the upper half, level for a frontal face
    a, b = embedder.embed(image, landmarks), embedder.embed(image.copy(), landmarks.copy())
    assert a.shape == (512,) and np.isclose(np.linalg.norm(a), 1, atol=1e-5) and float(cosine(a, b)) == pytest.approx(1, abs=1e-5)
    # the same weights through torch give the same embedding: the ONNX path runs the saved network
    torch.manual_seed(0)
    x = torch.from_numpy(((aligned.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None])
    reference = TinyArcFace().eval()(x).detach().numpy()[0]
    assert float(cosine(a, reference / np.linalg.norm(reference))) == pytest.approx(1, abs=1e-4)
    assert describe_sha(embedder, tmp_path / "w600k_r50.onnx")


def describe_sha(embedder, path) -> bool:
    import hashlib

    return embedder.describe()["weights"]["arcface"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_arcface_refuses_other_files(tmp_path):
    text = tmp_path / "model.onnx"
    text.write_text("not a model")
    with pytest.raises(EvalError, match="cannot load"):
        ArcFaceEmbedder(text)
    wrong = tmp_path / "wrong.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.zeros(1, 4),), str(wrong), dynamo=False)
    with pytest.raises(EvalError, match="112, 112"):
        ArcFaceEmbedder(wrong)
