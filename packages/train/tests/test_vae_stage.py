"""`--stage vae`: a preset's own VAE trained on the shards' frames, checkpointed like the other
stages, resumable, and picked up by stage 1."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from diffusers import AutoencoderKL
from emo_train import cli
from emo_train.checkpoint import last_checkpoint
from emo_train.config import TrainConfig, TrainError
from emo_train.train import Trainer, preset_vae, train, weights_digest
from emo_train.vae_stage import evaluation_frames, reconstruction_psnr


def vae_config(shards, out, **options) -> TrainConfig:
    values = {"stage": "vae", "shards": str(shards), "out": str(out), "loader_workers": 0, "log_every": 1,
              "progress": False, "shuffle_buffer": 4, "batch_size": 2, "lr": 2e-3, **options}
    return TrainConfig.from_dict(values)


@pytest.fixture(scope="module")
def vae_run(train_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("vae_run") / "vae"
    summary = train(vae_config(train_shards, out, max_steps=60, save_every=30))
    return out, summary


def test_vae_stage_learns_to_reconstruct_the_frames(vae_run):
    out, summary = vae_run
    assert summary["stage"] == 0 and summary["step"] == 60
    # the trained VAE against the same preset's untrained one, on the same frames
    assert summary["reconstruction_psnr"] > summary["untrained_reconstruction_psnr"] + 5.0
    assert summary["evaluation_frames"] == 64
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])


def test_vae_checkpoint_layout_and_scaling_factor(vae_run, train_shards):
    out, summary = vae_run
    checkpoint = last_checkpoint(out)
    assert checkpoint.name == "60" and (out / "checkpoints" / "30").is_dir()
    assert sorted(p.name for p in checkpoint.iterdir()) == ["annotation.json", "config.json", "training_state", "vae"]
    vae = AutoencoderKL.from_pretrained(checkpoint / "vae")
    # latents x scaling_factor have about unit second moment (what the noise schedule assumes)
    frames = evaluation_frames(str(train_shards), 64, 16)
    with torch.no_grad():
        latents = vae.encode(frames).latent_dist.sample() * vae.config.scaling_factor
    assert 0.5 < latents.pow(2).mean().sqrt().item() < 2.0
    assert summary["scaling_factor"] == pytest.approx(vae.config.scaling_factor)
    assert reconstruction_psnr(vae, frames) > reconstruction_psnr(preset_vae("tiny"), frames) + 5.0


def test_stage_1_starts_from_the_trained_vae(vae_run, train_shards, tmp_path):
    out, _ = vae_run
    cfg = TrainConfig.from_dict({"stage": 1, "shards": str(train_shards), "out": str(tmp_path / "s1"),
                                 "init_from": str(out), "loader_workers": 0, "progress": False, "max_steps": 1})
    trainer = Trainer(cfg)
    trained = AutoencoderKL.from_pretrained(last_checkpoint(out) / "vae")
    assert weights_digest(trainer.vae) == weights_digest(trained)
    assert trainer.vae.config.scaling_factor == trained.config.scaling_factor
    summary = trainer.fit()
    # the stage-1 checkpoint carries that VAE on to the later stages and to inference
    assert weights_digest(AutoencoderKL.from_pretrained(last_checkpoint(tmp_path / "s1") / "vae")) == weights_digest(trained)
    assert summary["step"] == 1


def test_vae_stage_resume_reproduces_a_straight_run(train_shards, tmp_path):
    straight = train(vae_config(train_shards, tmp_path / "straight", max_steps=4))
    train(vae_config(train_shards, tmp_path / "resumed", max_steps=2))
    resumed = train(vae_config(train_shards, tmp_path / "resumed", max_steps=4, resume=True))
    assert resumed["weight_digests"] == straight["weight_digests"]
    assert resumed["scaling_factor"] == pytest.approx(straight["scaling_factor"], rel=1e-6)


def test_bad_vae_stage_uses_are_one_line_errors(vae_run, train_shards, tmp_path, monkeypatch, capsys):
    out, _ = vae_run
    with pytest.raises(TrainError, match="uses SD's"):
        vae_config(train_shards, tmp_path / "x", preset="sd15")
    with pytest.raises(TrainError, match="VAE-only checkpoint"):
        train(TrainConfig.from_dict({"stage": 2, "shards": str(train_shards), "out": str(tmp_path / "s2"),
                                     "init_from": str(out), "loader_workers": 0, "progress": False}))
    with pytest.raises(TrainError, match="needs a trained VAE"):
        train(TrainConfig.from_dict({"stage": 1, "preset": "small", "shards": str(train_shards),
                                     "out": str(tmp_path / "s1"), "loader_workers": 0, "progress": False}))
    monkeypatch.setattr(sys, "argv", ["emo-train", "--stage", "four", "--shards", str(train_shards), "--out", str(tmp_path / "y")])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == "error: --stage must be vae, 1, 2 or 3, not 'four'"
