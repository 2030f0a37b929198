"""save_pretrained / from_pretrained round trips and initialisation from SD1.5 + AnimateDiff folders.

Pretrained weights are stand-ins: tiny randomly initialised models saved with `save_pretrained`,
loaded through exactly the code path real folders or hub ids take.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import MotionAdapter, UNet2DConditionModel
from emo_train.models import COMPONENTS, EMOModel, ReferenceNet, get_preset, load_motion_adapter, temporal_positions

TINY_ADAPTER = dict(
    block_out_channels=(16, 32), motion_layers_per_block=1, motion_num_attention_heads=4, motion_norm_num_groups=8
)


def public_config(model) -> dict:
    """Config without private entries (`_name_or_path`, ...), tuples as JSON gives them back (lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items() if not k.startswith("_")}


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_component_round_trip(model, perturb, tmp_path, name):
    component = getattr(model, name)
    perturb(component)
    component.save_pretrained(tmp_path / name)
    assert (tmp_path / name / "diffusion_pytorch_model.safetensors").is_file()
    loaded = COMPONENTS[name].from_pretrained(tmp_path / name)
    assert type(loaded) is type(component)
    assert public_config(loaded) == public_config(component)
    assert_same_weights(loaded, component)


def test_model_round_trip_gives_identical_outputs(model, inputs, predict, perturb, tmp_path):
    perturb(model)  # every layer active and distinctive: a load that missed anything would show
    expected = predict(model, inputs)
    model.save_pretrained(tmp_path / "checkpoints" / "100")
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "100").iterdir()) == sorted(COMPONENTS)
    loaded = EMOModel.from_pretrained(tmp_path / "checkpoints" / "100").eval()
    assert torch.equal(predict(loaded, inputs), expected)


@pytest.fixture
def base_folders(tmp_path):
    """A tiny SD-layout model folder (`unet/`) and a tiny AnimateDiff motion adapter folder."""
    torch.manual_seed(7)
    unet = UNet2DConditionModel(**get_preset("tiny").unet)
    unet.save_pretrained(tmp_path / "sd" / "unet")
    adapter = MotionAdapter(**TINY_ADAPTER)
    adapter.save_pretrained(tmp_path / "motion_adapter")
    return tmp_path / "sd", tmp_path / "motion_adapter", unet, adapter


def new_emo_tensors(model: EMOModel) -> set[str]:
    """What SD1.5 + AnimateDiff cannot provide: the components EMO adds and the temporal speed attention."""
    new = {
        f"{component}.{key}"
        for component in ("face_locator", "audio_projection", "audio_attention", "speed_encoder")
        for key in getattr(model, component).state_dict()
    }
    return new | {f"temporal.{key}" for key in model.temporal.state_dict() if ".speed_" in key}


def test_from_pretrained_base_initialises_everything_but_the_new_layers(base_folders, inputs, predict):
    sd_folder, adapter_folder, unet, adapter = base_folders
    model, uninitialised = EMOModel.from_pretrained_base(sd_folder, adapter_folder, preset="tiny")

    assert set(uninitialised) == new_emo_tensors(model)
    assert len(uninitialised) == len(set(uninitialised))
    assert_same_weights(model.backbone, unet)
    assert_same_weights(model.reference_net, unet)
    adapter_state = adapter.state_dict()
    for key, value in model.temporal.state_dict().items():
        if ".speed_" not in key:
            assert torch.equal(value, adapter_state[key]), key
    # the adapter's zero-less temporal layers are live; the EMO layers still add nothing
    assert predict(model, inputs).shape == inputs["noisy_latents"].shape


def test_from_pretrained_base_without_motion_adapter_reports_temporal(base_folders):
    sd_folder, _, _, _ = base_folders
    model, uninitialised = EMOModel.from_pretrained_base(sd_folder, preset="tiny")
    assert set(uninitialised) == new_emo_tensors(model) | {f"temporal.{key}" for key in model.temporal.state_dict()}


def test_motion_adapter_with_other_head_count_is_refused(base_folders, tmp_path):
    sd_folder, _, _, _ = base_folders
    MotionAdapter(**{**TINY_ADAPTER, "motion_num_attention_heads": 2}).save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="motion_num_attention_heads"):
        EMOModel.from_pretrained_base(sd_folder, tmp_path / "other", preset="tiny")


def test_base_model_of_another_size_is_refused(tmp_path):
    smaller = {**get_preset("tiny").unet, "block_out_channels": (8, 16), "norm_num_groups": 4}
    UNet2DConditionModel(**smaller).save_pretrained(tmp_path / "sd" / "unet")
    with pytest.raises(ValueError, match="block_out_channels"):
        EMOModel.from_pretrained_base(tmp_path / "sd", preset="tiny")


def test_reference_net_loads_a_stock_unet_folder(base_folders):
    sd_folder, _, unet, _ = base_folders
    reference_net = ReferenceNet.from_pretrained(sd_folder, subfolder="unet")
    assert_same_weights(reference_net, unet)
    features = reference_net.encode(torch.randn(1, 4, 8, 8))
    assert features.attention and features.motion


def test_sd15_preset_takes_the_default_motion_adapter():
    """Full-size architecture check on the meta device (no memory, no weights): every AnimateDiff
    v1.5-2-layout tensor has its place, and only the speed attention is left."""
    with torch.device("meta"):
        model = EMOModel.from_preset("sd15")
        adapter = MotionAdapter()
    missing = load_motion_adapter(model.temporal, adapter)
    assert missing and all(".speed_" in key for key in missing)
    assert len(temporal_positions(model.backbone)) == 21  # 8 down, 1 mid, 12 up, as UNetMotionModel
    assert model.backbone.config.cross_attention_dim == 768
