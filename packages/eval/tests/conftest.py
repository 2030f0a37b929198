"""Shared inputs of the emo-eval tests: the real carphone talking head as 96 px crops, its mouth
opening measured once, and a tiny EMO checkpoint trained by the real trainer on real shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def eval_threads():
    """Small models: one thread is fastest on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def talking_crops():
    from eval_media import carphone_crops

    return carphone_crops(96)


@pytest.fixture(scope="session")
def measured_mouth(talking_crops) -> np.ndarray:
    """(T,) mouth opening of the 96 px carphone crops, measured by emo_eval's own tracker."""
    from emo_eval.faces import FaceTracker
    from emo_eval.lipsync import mouth_opening

    tracker = FaceTracker()
    try:
        landmarks = [tracker.track(f) for f in talking_crops]
    finally:
        tracker.close()
    assert all(lmk is not None for lmk in landmarks), "every carphone crop has a face"
    return mouth_opening(np.stack(landmarks))


@pytest.fixture(scope="session")
def tiny_emo(tmp_path_factory):
    """(stage-3 checkpoint, annotator output folder) made by the real annotator and trainer."""
    from emo_train.samples import tiny_checkpoint

    root = tmp_path_factory.mktemp("eval_tiny")
    checkpoint = tiny_checkpoint(root)
    return checkpoint, root / "annotated" / "out"
