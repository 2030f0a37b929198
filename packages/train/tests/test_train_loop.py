"""The trainer on real shards (tiny preset, CPU): stages 1 -> 2 -> 3, trainable groups, overfitting,
resume equivalence, corrupt samples, the CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from emo_annotate.shards import shard_urls
from emo_train import cli
from emo_train.checkpoint import last_checkpoint
from emo_train.config import TrainConfig, TrainError
from emo_train.models import STAGE_GROUPS, EMOModel
from emo_train.train import Trainer, train, weights_digest


def make_config(shards, out, stage=1, **options) -> TrainConfig:
    """A fast test config: no loader processes, no progress bar, a metrics line every step."""
    values = {"stage": stage, "shards": str(shards), "out": str(out), "loader_workers": 0, "log_every": 1,
              "progress": False, "shuffle_buffer": 4, **options}
    return TrainConfig.from_dict(values)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def run_cli(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["emo-train", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return exit_info.value.code


def group_digests(model: EMOModel) -> dict[str, str]:
    out = {}
    for name, params in model.parameter_groups().items():
        out[name] = weights_digest(torch.nn.ParameterList(params))
    return out


def test_stages_1_2_3_end_to_end(train_shards, tmp_path, monkeypatch):
    # stage 1 through the CLI and a config file (flags override the file)
    config_file = tmp_path / "stage1.toml"
    config_file.write_text('stage = 1\nmax-steps = 99\n[optim]\nlr = 1e-4\n[data]\nloader_workers = 0\n')
    code = run_cli(monkeypatch, "--config", str(config_file), "--shards", str(train_shards), "--out",
                   str(tmp_path / "s1"), "--max-steps", "2", "--save-every", "1", "--log-every", "1", "--quiet")
    assert code == 0
    first = last_checkpoint(tmp_path / "s1")
    assert first.name == "2" and (tmp_path / "s1" / "checkpoints" / "1").is_dir()
    saved = json.loads((first / "config.json").read_text())
    assert saved["optim"]["lr"] == 1e-4 and saved["run"]["max_steps"] == 2
    # the annotation the model learnt from, for inference to reproduce
    annotation = json.loads((first / "annotation.json").read_text())
    assert annotation["fps"] == 25.0 and annotation["size"] == 64 and annotation["crop_scale"] == 2.0
    assert annotation["audio_features"]["kind"] == "mel" and annotation["audio_features"]["shape"] == [320]
    assert [m["step"] for m in metrics(tmp_path / "s1")] == [1, 2]
    assert list((tmp_path / "s1" / "tensorboard").glob("events.out.tfevents.*"))
    # models in diffusers folders, safetensors only: no pickles anywhere in a checkpoint
    files = [p for p in first.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]
    assert (first / "backbone" / "diffusion_pytorch_model.safetensors").is_file()
    assert (first / "vae" / "diffusion_pytorch_model.safetensors").is_file()

    # stage 2 from stage 1 (the run directory: its last checkpoint), stage 3 from stage 2's checkpoint
    summary2 = train(make_config(train_shards, tmp_path / "s2", stage=2, init_from=str(tmp_path / "s1"), max_steps=2, lr=1e-3))
    summary3 = train(make_config(train_shards, tmp_path / "s3", stage=3, init_from=summary2["checkpoint"], max_steps=2, lr=1e-3))
    assert summary3["step"] == 2 and all(m["loss"] > 0 for m in metrics(tmp_path / "s3"))

    models = {stage: EMOModel.from_pretrained(last_checkpoint(tmp_path / f"s{stage}")) for stage in (1, 2, 3)}
    digests = {stage: group_digests(model) for stage, model in models.items()}
    # each stage changed exactly its own groups and carried the others over unchanged
    for stage, previous in ((2, 1), (3, 2)):
        changed = {g for g in digests[stage] if digests[stage][g] != digests[previous][g]}
        assert changed == set(STAGE_GROUPS[stage]), (stage, changed)
    assert models[3].temporal.config.num_motion_frames == 4


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_trainable_parameters_are_exactly_the_stage_groups(train_shards, tmp_path, stage):
    trainer = Trainer(make_config(train_shards, tmp_path / "run", stage=stage, max_steps=1))
    groups = trainer.model.parameter_groups()
    expected = {id(p) for g in STAGE_GROUPS[stage] for p in groups[g]}
    optimized = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert {id(p) for p in optimized} == expected and len(optimized) == len(expected)
    assert {id(p) for p in trainer.model.parameters() if p.requires_grad} == expected
    assert not any(p.requires_grad for p in trainer.vae.parameters())
    counts = {g: sum(id(p) in {id(q) for q in optimized} for p in params) for g, params in groups.items()}
    assert counts == {g: (len(groups[g]) if g in STAGE_GROUPS[stage] else 0) for g in groups}


def single_clip_shard(train_shards: Path, out: Path) -> Path:
    """A shard holding only the first clip of the first shard."""
    out.mkdir()
    with tarfile.open(shard_urls(train_shards)[0]) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isreg()]
    key = members[0][0].name.split(".", 1)[0]
    with tarfile.open(out / "one.tar", "w") as tar:
        for info, data in members:
            if info.name.split(".", 1)[0] == key:
                tar.addfile(info, io.BytesIO(data))
    return out


def test_overfitting_one_clip_drives_the_loss_down(train_shards, tmp_path):
    """Stage 1 on one clip with one fixed noise draw and timestep (the trainer's generator is
    reseeded every step, and the clip's frame choices repeat because its batch is reused): the model
    only has to map that one noisy latent to its noise, so the loss must fall clearly. With fresh
    noise every step the per-step loss varies by more than what 60 steps of a tiny model can learn."""
    shard = single_clip_shard(train_shards, tmp_path / "one")
    cfg = make_config(shard, tmp_path / "run", stage=1, max_steps=60, lr=2e-3)
    trainer = Trainer(cfg)
    batch = next(iter(trainer.loader))
    losses = []
    for _ in range(60):
        trainer.generator.manual_seed(0)
        losses.append(trainer.optimizer_step(iter([batch])))
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    print(f"overfit: first-10 mean {first:.4f}, last-10 mean {last:.4f}, ratio {last / first:.3f}")
    assert last < 0.5 * first


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_resume_reproduces_a_straight_run(train_shards, tmp_path, ema_decay):
    options = dict(stage=1, save_every=3, lr=1e-3, grad_accum=2, batch_size=2, ema_decay=ema_decay)
    straight = train(make_config(train_shards, tmp_path / "a", max_steps=6, **options))
    train(make_config(train_shards, tmp_path / "b", max_steps=3, **options))
    resumed = train(make_config(train_shards, tmp_path / "b", max_steps=6, resume=True, **options))
    assert [(m["step"], m["loss"]) for m in metrics(tmp_path / "b")] == [(m["step"], m["loss"]) for m in metrics(tmp_path / "a")]
    assert resumed["weight_digests"] == straight["weight_digests"]
    a = EMOModel.from_pretrained(last_checkpoint(tmp_path / "a")).state_dict()
    b = EMOModel.from_pretrained(last_checkpoint(tmp_path / "b")).state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    # with a weight average the checkpoint holds the average, not the weights training ended with
    stored = weights_digest(EMOModel.from_pretrained(last_checkpoint(tmp_path / "a")))
    assert (stored != straight["weight_digests"][0]) == (ema_decay is not None)


def test_max_minutes_checkpoints_where_time_runs_out_and_resume_goes_on(train_shards, tmp_path):
    """A job's time limit: the run ends after the first step past it with a checkpoint of that step,
    says so in its summary, and --resume continues to max_steps."""
    out = tmp_path / "timed"
    first = train(make_config(train_shards, out, max_steps=50, save_every=50, max_minutes=1e-6))
    assert first["step"] == 1 and first["time_limited"] is True
    assert last_checkpoint(out).name == "1"
    assert json.loads((out / "summary.json").read_text())["time_limited"] is True
    done = train(make_config(train_shards, out, max_steps=3, save_every=50, resume=True))
    assert done["step"] == 3 and done["time_limited"] is False
    assert [m["step"] for m in metrics(out)] == [1, 2, 3]
    assert all(0.0 <= m["data_wait"] <= 1.0 for m in metrics(out))  # share of the wall time spent on the loader


def test_training_goes_on_without_tensorboard(train_shards, tmp_path, monkeypatch, caplog):
    """An environment where TensorBoard cannot be imported (a protobuf too old for it) still trains
    and logs to metrics.jsonl."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # its import raises ImportError
    out = tmp_path / "no_tb"
    summary = train(make_config(train_shards, out, max_steps=2))
    assert summary["step"] == 2 and [m["step"] for m in metrics(out)] == [1, 2]
    assert not (out / "tensorboard").exists()
    assert "TensorBoard unavailable" in caplog.text


def test_corrupt_sample_is_skipped_and_counted(train_shards, tmp_path):
    out = tmp_path / "corrupt"
    out.mkdir()
    for index, url in enumerate(shard_urls(train_shards)):
        with tarfile.open(url) as tar:
            members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isreg()]
        first_key = members[0][0].name.split(".", 1)[0]
        with tarfile.open(out / Path(url).name, "w") as tar:
            for info, data in members:
                if index == 0 and info.name == f"{first_key}.mp4":
                    data = data[:48] + bytes(200)  # header kept, then zeros: undecodable
                    info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    train(make_config(out, tmp_path / "run", stage=1, max_steps=3, shuffle_buffer=0))
    lines = metrics(tmp_path / "run")
    assert lines[-1]["skipped"] == 1 and lines[-1]["skipped_by_reason"] == {"bad_mp4": 1}


def test_cli_help_and_errors(train_shards, tmp_path, monkeypatch, capsys):
    done = subprocess.run([sys.executable, "-m", "emo_train.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for option in ("--stage", "--shards", "--out", "--init-from", "--resume", "--num-workers", "--mixed-precision"):
        assert option in done.stdout
    missing = tmp_path / "missing"
    done = subprocess.run([sys.executable, "-m", "emo_train.cli", "--stage", "1", "--shards", str(missing), "--out",
                           str(tmp_path / "run")], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: --shards: no such file or directory: {missing}"]
    # bad option values, a missing checkpoint, resuming nothing: one line, exit code 1
    cases = [
        ("--stage", "4", "--shards", str(train_shards), "--out", str(tmp_path / "r")),
        ("--stage", "1", "--shards", str(train_shards), "--out", str(tmp_path / "r"), "--mixed-precision", "fp8"),
        ("--stage", "1", "--shards", str(train_shards), "--out", str(tmp_path / "r"), "--max-minutes", "0"),
        ("--stage", "2", "--shards", str(train_shards), "--out", str(tmp_path / "r"), "--init-from", str(missing)),
        ("--stage", "1", "--shards", str(train_shards), "--out", str(tmp_path / "r"), "--resume"),
        ("--stage", "1", "--shards", str(train_shards), "--out", str(tmp_path / "r"), "--config", str(missing)),
    ]
    for args in cases:
        assert run_cli(monkeypatch, *args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (args, err)


def test_base_model_and_motion_adapter_folders(train_shards, tmp_path):
    """--base-model (SD1.5 layout: unet/, vae/) and --motion-adapter load through from_pretrained;
    the VAE travels with the checkpoint, so the next stage encodes with the same one."""
    from diffusers import MotionAdapter, UNet2DConditionModel
    from emo_train.models import get_preset
    from emo_train.train import preset_vae

    torch.manual_seed(3)
    UNet2DConditionModel(**get_preset("tiny").unet).save_pretrained(tmp_path / "sd" / "unet")
    vae = preset_vae("tiny", seed=7)
    vae.save_pretrained(tmp_path / "sd" / "vae")
    adapter = MotionAdapter(block_out_channels=(16, 32), motion_layers_per_block=1, motion_num_attention_heads=4,
                            motion_norm_num_groups=8)
    adapter.save_pretrained(tmp_path / "adapter")
    train(make_config(train_shards, tmp_path / "s1", stage=1, max_steps=1, base_model=str(tmp_path / "sd")))
    ckpt = last_checkpoint(tmp_path / "s1")
    assert weights_digest(type(vae).from_pretrained(ckpt / "vae")) == weights_digest(vae)
    trainer = Trainer(make_config(train_shards, tmp_path / "s2", stage=2, max_steps=1, init_from=str(ckpt),
                                  motion_adapter=str(tmp_path / "adapter")))
    assert weights_digest(trainer.vae) == weights_digest(vae)
    ours = trainer.model.temporal.state_dict()
    shared = [name for name in adapter.state_dict() if name in ours]
    assert len(shared) > 10
    for name in shared:
        torch.testing.assert_close(ours[name], adapter.state_dict()[name])

    # a stage-2 checkpoint's temporal layers are trained: the adapter must not replace them
    trainer.fit()
    stage2 = last_checkpoint(tmp_path / "s2")
    for start in (str(stage2), str(tmp_path / "s2")):
        with pytest.raises(TrainError, match="would replace the trained temporal layers of the stage-2"):
            train(make_config(train_shards, tmp_path / "s3", stage=3, max_steps=1, init_from=start,
                              motion_adapter=str(tmp_path / "adapter")))
    assert not (tmp_path / "s3").exists()


@pytest.mark.parametrize("flag, field", [("drop_audio", "audio"), ("drop_motion", "motion"), ("drop_speed", "speed")])
def test_condition_dropout_flags_remove_the_condition(train_shards, tmp_path, perturb, flag, field):
    """A set dropout flag makes the loss independent of that condition; an unset one does not."""
    trainer = Trainer(make_config(train_shards, tmp_path / "run", stage=3, max_steps=1,
                                  drop_audio=0.0, drop_motion=0.0, drop_speed=0.0))
    perturb(trainer.model)  # zero-initialised layers (audio attention, temporal outputs) act
    batch = next(iter(trainer.loader))
    values = batch[field]
    changed = 255 - values if values.dtype == torch.uint8 else values.flip(0) + 0.5 * torch.randn_like(values)
    other = {**batch, field: changed}

    def loss(b, dropped: bool) -> float:
        b = {**b, flag: torch.full_like(b[flag], dropped)}
        with torch.no_grad():
            return trainer.loss(b, torch.Generator().manual_seed(0)).item()

    assert loss(batch, True) == loss(other, True)
    assert loss(batch, False) != loss(other, False)
