"""Shared inputs for the model tests: the `tiny` preset, batch 2, 3 target frames, 4 motion frames."""

from __future__ import annotations

import pytest
import torch
from emo_train.models import EMOModel
from emo_train.models.windows import frame_windows

BATCH, FRAMES, MOTION_FRAMES, LATENT, PIXELS = 2, 3, 4, 8, 64
AUDIO_FEATURE_SHAPE = (320,)  # tiny preset: 4 mel frames x 80 bands


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models: one thread is fastest, and several threads crawl when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def model() -> EMOModel:
    torch.manual_seed(0)
    return EMOModel.from_preset("tiny").eval()


@pytest.fixture
def inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    audio = torch.randn(BATCH, FRAMES + 6, *AUDIO_FEATURE_SHAPE, generator=g)  # a longer track, cut below
    return {
        "reference_latents": torch.randn(BATCH, 4, LATENT, LATENT, generator=g),
        "motion_latents": torch.randn(BATCH, 4, MOTION_FRAMES, LATENT, LATENT, generator=g),
        "noisy_latents": torch.randn(BATCH, 4, FRAMES, LATENT, LATENT, generator=g),
        "timesteps": torch.tensor([10, 500]),
        "audio_features": frame_windows(audio, 2)[:, 3 : 3 + FRAMES],  # (b, f, 5, 320)
        "face_mask": (torch.rand(BATCH, 1, PIXELS, PIXELS, generator=g) > 0.5).float(),
        "speed": torch.rand(BATCH, FRAMES, generator=g) * 60,
    }


def _perturb(module: torch.nn.Module, seed: int = 1, scale: float = 0.2) -> None:
    """Add noise to every parameter: makes zero-initialised layers act, and makes weights distinctive."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=g) * scale)


def _predict(model: EMOModel, inputs: dict, **overrides) -> torch.Tensor:
    """Video-mode prediction with every condition."""
    args = {**inputs, **overrides}
    reference = model.encode_reference(args["reference_latents"], args["motion_latents"])
    return model.denoise(
        args["noisy_latents"],
        args["timesteps"],
        reference,
        audio_features=args["audio_features"],
        face_mask=args["face_mask"],
        speed=args["speed"],
    )


# helpers as fixtures: test modules cannot import `conftest` reliably when several packages have one
@pytest.fixture
def perturb():
    return _perturb


@pytest.fixture
def predict():
    return _predict


# ------------------------------------------------------------------ real shards (trainer tests)

TRAIN_SHARD_SIZE = 64  # pixels: the tiny preset's resolution


@pytest.fixture(scope="session")
def train_shards(tmp_path_factory):
    """Real shards from the real annotator (no Ray), as in test_data.py: the carphone talking head
    with speech (~4 s), 64 px crops, clips of at most 1 s (~20 frames), two clips per shard."""
    from emo_annotate.samples import make_sample_shards
    from emo_annotate.shards import shard_urls

    out = make_sample_shards(tmp_path_factory.mktemp("emo_train_shards"), size=TRAIN_SHARD_SIZE)
    assert len(shard_urls(out)) >= 2
    return out


@pytest.fixture
def train_config():
    """A fast trainer config on real shards: no loader processes, no progress bar, a metrics line per step."""
    from emo_train.config import TrainConfig

    def make(shards, out, stage=1, **options):
        values = {"stage": stage, "shards": str(shards), "out": str(out), "loader_workers": 0, "log_every": 1,
                  "progress": False, "shuffle_buffer": 4, **options}
        return TrainConfig.from_dict(values)

    return make
