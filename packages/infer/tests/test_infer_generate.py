"""`emo_infer.generate` end to end on a tiny trained checkpoint: the video, its sound, determinism,
clip-after-clip generation with motion frames, the audio formats and features of the checkpoint."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from infer_media import FAST, FPS, SECONDS, decode, write_audio, write_talking_video
from emo_annotate import samples
from emo_annotate.media import AUDIO_RATE, read_audio
from emo_infer import InferError, generate
from emo_infer.checkpoint import load_weights, open_checkpoint
from emo_infer.pipeline import EMOPipeline
from emo_train.samples import tiny_checkpoint


def test_video_has_the_frames_fps_size_and_sound_of_the_audio(assets, tmp_path):
    out = tmp_path / "talking.mp4"
    result = generate(checkpoint=assets["root"] / "run",  # a run directory: its last checkpoint
                      image=assets["image"], audio=assets["speech"], out=out, speed=12.0, **FAST)
    frames, facts = decode(out)
    expected = round(SECONDS * FPS)
    assert len(frames) == result.frames == expected == 75 and result.clips == 7
    assert facts["codec"] == "h264" and facts["audio_codec"] == "aac" and facts["fps"] == FPS
    assert (facts["width"], facts["height"]) == (64, 64) == frames[0].shape[1::-1]
    sound = read_audio(out)  # decoded back, aligned to the first video frame
    assert abs(len(sound) / AUDIO_RATE - SECONDS) <= 1 / FPS
    assert abs(len(frames) / FPS - len(sound) / AUDIO_RATE) <= 1 / FPS
    assert np.std(np.stack(frames).astype(np.float32)) > 1  # pixels, not a constant image
    assert set(result.seconds) >= {"reference_net", "denoise", "vae_decode", "total"}


def test_same_seed_same_video_other_seed_other_video(assets, tmp_path):
    videos = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        generate(checkpoint=assets["checkpoint"], image=assets["image"], audio=assets["short"],
                 out=tmp_path / f"{name}.mp4", seed=seed, **FAST)
        videos[name] = np.stack(decode(tmp_path / f"{name}.mp4")[0])
    assert np.array_equal(videos["a"], videos["b"])
    assert not np.array_equal(videos["a"], videos["c"])


def test_bfloat16_on_the_cpu(assets, tmp_path):
    result = generate(checkpoint=assets["checkpoint"], image=assets["image"], audio=assets["short"],
                      out=tmp_path / "bf16.mp4", dtype="bfloat16", device="cpu", **FAST)
    frames = np.stack(decode(tmp_path / "bf16.mp4")[0])
    assert result.frames == len(frames) == 25 and frames.std() > 1


def test_channels_last_gives_the_same_frames(assets, tmp_path):
    from emo_train.models import use_channels_last

    result = generate(checkpoint=assets["checkpoint"], image=assets["image"], audio=assets["short"],
                      out=tmp_path / "cl.mp4", channels_last=True, **FAST)
    assert result.frames == len(decode(tmp_path / "cl.mp4")[0]) == 25
    info = open_checkpoint(assets["checkpoint"])
    portrait = samples.astronaut_image()[::8, ::8].copy()
    mask = np.full((64, 64), 255, np.uint8)
    features = np.random.default_rng(0).standard_normal((24, 320)).astype(np.float32)
    frames = {}
    for channels_last in (False, True):
        model, vae, scheduler = load_weights(info, torch.device("cpu"), torch.float32)
        if channels_last:
            for module in (model.backbone, model.reference_net, model.face_locator, vae):
                use_channels_last(module)
        pipeline = EMOPipeline(model, vae, scheduler, torch.device("cpu"), torch.float32)
        frames[channels_last] = np.stack(list(pipeline.generate(portrait, mask, features, None, 24, steps=2, progress=False)))
    assert np.abs(frames[True].astype(int) - frames[False]).max() <= 2  # float rounding only


def test_clips_are_joined_through_motion_frames(assets):
    """Three clips: the ReferenceNet sees the reference once, then the previous clip's last 4
    frames once per clip (never per denoising step), VAE-encoded from the decoded pixels as
    training encodes real frames; the backbone runs once per step and clip."""
    info = open_checkpoint(assets["checkpoint"])
    model, vae, scheduler = load_weights(info, torch.device("cpu"), torch.float32)
    pipeline = EMOPipeline(model, vae, scheduler, torch.device("cpu"), torch.float32)
    reference_inputs, backbone_calls = [], []
    model.reference_net.register_forward_hook(lambda m, args, out: reference_inputs.append(args[0].clone()))
    model.backbone.register_forward_hook(lambda m, args, out: backbone_calls.append(args[0].shape[0]))

    portrait = samples.astronaut_image()[::8, ::8].copy()  # (64, 64, 3)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    features = np.random.default_rng(0).standard_normal((36, 320)).astype(np.float32)
    frames = list(pipeline.generate(portrait, mask, features, np.full(30, 10.0, np.float32), 30, steps=3,
                                    guidance=2.0, progress=False))

    assert len(frames) == 30 and frames[0].shape == (64, 64, 3)
    assert len(backbone_calls) == 3 * 3
    assert set(backbone_calls) == {2 * 12}  # [unconditional, conditional] x 12 frames per call
    assert [x.shape[0] for x in reference_inputs] == [1, 4, 4]  # reference, then 4 motion frames per clip
    for clip in (1, 2):  # clip k's motion frames: the VAE posterior means of clip k-1's last 4 frames
        last4 = np.stack(frames[12 * clip - 4 : 12 * clip])
        encoded = vae.encode(torch.from_numpy(last4).permute(0, 3, 1, 2).float() / 127.5 - 1).latent_dist.mode()
        torch.testing.assert_close(reference_inputs[clip], encoded * vae.config.scaling_factor)


def test_motion_frames_and_frames_per_clip_options(assets, tmp_path):
    result = generate(checkpoint=assets["checkpoint"], image=assets["image"], audio=assets["short"],
                      out=tmp_path / "o.mp4", frames_per_clip=8, motion_frames=2, guidance=1.0, **FAST)
    assert result.frames == 25 and result.clips == 4
    assert len(decode(tmp_path / "o.mp4")[0]) == 25


@pytest.mark.parametrize("container", ["flac", "m4a", "mp3", "video", "odd-rate wav"])
def test_audio_formats(assets, tmp_path, container):
    speech = read_audio(assets["short"])
    if container == "video":
        audio = write_talking_video(tmp_path / "clip.mp4", speech)
    elif container == "odd-rate wav":  # a rate AAC cannot encode: the output's sound is resampled
        audio = write_audio(tmp_path / "speech.wav", speech, "pcm_s16le", rate=37800)
    else:
        codec = {"flac": "flac", "m4a": "aac", "mp3": "libmp3lame"}[container]
        audio = write_audio(tmp_path / f"speech.{container}", speech, codec, rate=44100, stereo=True)
    out = tmp_path / "out.mp4"
    result = generate(checkpoint=assets["checkpoint"], image=assets["image"], audio=audio, out=out, guidance=1.0, **FAST)
    assert abs(result.frames - FPS) <= 1  # 1 s of sound (+ codec padding)
    frames, facts = decode(out)
    assert len(frames) == result.frames
    if container == "odd-rate wav":
        assert facts["audio_rate"] == 48000 and facts["audio_channels"] == 1
    elif container != "video":  # the input's own rate and channels are kept in the output
        assert facts["audio_rate"] == 44100 and facts["audio_channels"] == 2
    assert abs(len(read_audio(out)) / AUDIO_RATE - len(frames) / FPS) <= 1 / FPS


@pytest.mark.parametrize("speed_guidance", [1.0, 2.0])
def test_each_clip_gets_its_audio_speed_mask_and_guidance(assets, speed_guidance):
    """Inside the sampler: per denoising call the batch is [no audio, audio] with the clip's own
    audio windows, speeds and the face mask; the scheduler gets uncond + g * (cond - uncond).
    With speed guidance a third entry [audio, speed dropped] adds (s - 1) * (cond - no_speed)."""
    from emo_infer.pipeline import _pad_frames
    from emo_train.models.windows import frame_windows

    info = open_checkpoint(assets["checkpoint"])
    model, vae, scheduler = load_weights(info, torch.device("cpu"), torch.float32)
    pipeline = EMOPipeline(model, vae, scheduler, torch.device("cpu"), torch.float32)
    calls, steps_taken = [], []
    denoise, step = model.denoise, scheduler.step

    def recording_denoise(latents, t, reference, audio, mask, speed, keep_speed=None):
        noise = denoise(latents, t, reference, audio, mask, speed, keep_speed=keep_speed)
        calls.append({"audio": audio, "mask": mask, "speed": speed, "keep_speed": keep_speed, "noise": noise})
        return noise

    def recording_step(noise, t, latents, **kwargs):
        steps_taken.append(noise)
        return step(noise, t, latents, **kwargs)

    model.denoise, scheduler.step = recording_denoise, recording_step
    rng = np.random.default_rng(1)
    features = rng.standard_normal((20, 320)).astype(np.float16)  # 20 frames: 2 clips, the 2nd padded
    speed = np.linspace(0, 30, 20).astype(np.float32)
    mask = np.zeros((64, 64), np.uint8)
    mask[10:50, 12:52] = 255
    guidance = 2.5
    list(pipeline.generate(samples.astronaut_image()[::8, ::8].copy(), mask, features, speed, 20, steps=2,
                           guidance=guidance, speed_guidance=speed_guidance, progress=False))

    halves = 3 if speed_guidance != 1.0 else 2
    assert len(calls) == len(steps_taken) == 2 * 2
    windows = frame_windows(torch.from_numpy(_pad_frames(features, 24).astype(np.float32))[None], 2)[0]
    for index, call in enumerate(calls):
        frames = slice(12 * (index // 2), 12 * (index // 2 + 1))
        assert len(call["audio"]) == halves
        assert torch.count_nonzero(call["audio"][0]) == 0  # unconditional half: audio dropped
        for half in range(1, halves):
            torch.testing.assert_close(call["audio"][half], windows[frames])  # this clip's own windows
        expected_speed = torch.from_numpy(_pad_frames(speed, 24)[frames])
        torch.testing.assert_close(call["speed"], torch.stack([expected_speed] * halves))
        torch.testing.assert_close(call["mask"][0, 0], torch.from_numpy(mask / 255.0).float())
        assert all(torch.equal(call["mask"][0], m) for m in call["mask"])
        if halves == 2:
            assert call["keep_speed"] is None
            unconditional, conditional = call["noise"].chunk(2)
            expected = unconditional + guidance * (conditional - unconditional)
        else:
            assert call["keep_speed"].tolist() == [1.0, 1.0, 0.0]  # the third entry: speed dropped
            unconditional, conditional, no_speed = call["noise"].chunk(3)
            expected = (unconditional + guidance * (conditional - unconditional)
                        + (speed_guidance - 1.0) * (conditional - no_speed))
        torch.testing.assert_close(steps_taken[index], expected)
    # frames after the audio's end repeat its last frame (what a training clip's end sees)
    centre = windows[:, 2]  # (24, 320): each frame's own features
    assert torch.equal(centre[20:], centre[19:20].expand(4, -1))


def test_init_strength_starts_each_clip_from_the_noised_portrait(assets):
    """Below strength 1 each clip runs the last share of the DDIM schedule, from the portrait's
    latents noised to its first timestep with the clip's own noise draw. The lower the strength,
    the nearer the video stays to the portrait (this model is barely trained: from pure noise it
    draws no portrait at all)."""
    from emo_infer.pipeline import denoising_timesteps

    info = open_checkpoint(assets["checkpoint"])
    portrait = samples.astronaut_image()[::8, ::8].copy()  # (64, 64, 3)
    mask = np.full((64, 64), 255, np.uint8)
    features = np.random.default_rng(0).standard_normal((24, 320)).astype(np.float32)
    videos, first_inputs, timesteps = {}, {}, {}
    for strength in (1.0, 0.3, 0.1):
        model, vae, scheduler = load_weights(info, torch.device("cpu"), torch.float32)
        pipeline = EMOPipeline(model, vae, scheduler, torch.device("cpu"), torch.float32)
        inputs, seen = [], []
        denoise = model.denoise

        def recording_denoise(latents, t, *args, **kwargs):
            inputs.append(latents.clone())
            seen.append(int(t))
            return denoise(latents, t, *args, **kwargs)

        model.denoise = recording_denoise
        videos[strength] = np.stack(list(pipeline.generate(portrait, mask, features, None, 24, steps=10, guidance=1.0,
                                                           init_strength=strength, seed=5, progress=False)))
        first_inputs[strength], timesteps[strength] = inputs[0], seen

    schedule = denoising_timesteps(scheduler, 10).tolist()
    assert timesteps[1.0] == schedule * 2  # two clips, the whole schedule each
    assert timesteps[0.3] == schedule[-3:] * 2  # the last 3 of 10 steps
    noise = torch.randn(1, 4, 12, 8, 8, generator=torch.Generator("cpu").manual_seed(5))  # the first clip's draw
    torch.testing.assert_close(first_inputs[1.0], noise * scheduler.init_noise_sigma)
    portrait_latent = pipeline.encode_frames(portrait[None])  # (1, 4, 1, 8, 8)
    expected = scheduler.add_noise(portrait_latent.expand(1, 4, 12, 8, 8), noise, torch.tensor([schedule[-3]]))
    torch.testing.assert_close(first_inputs[0.3], expected)
    reconstruction = pipeline.decode(portrait_latent)[0].astype(np.float32)  # the VAE's picture of the portrait
    error = {s: np.abs(video.astype(np.float32) - reconstruction).mean() for s, video in videos.items()}
    assert error[0.1] < error[0.3] < error[1.0] and error[0.1] < 0.8 * error[1.0], error


def test_api_validates_like_the_cli(assets, tmp_path):
    common = dict(checkpoint=assets["checkpoint"], image=assets["image"], audio=assets["short"], out=tmp_path / "o.mp4")
    with pytest.raises(InferError, match="--speed must be >= 0"):
        generate(speed="-5", **common, **FAST)
    track = tmp_path / "speeds.txt"
    track.write_text(" ".join(["8"] * 25))
    assert generate(speed=str(track), **common, **FAST).frames == 25  # a path given as a string


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_float16(assets, tmp_path):
    result = generate(checkpoint=assets["checkpoint"], image=assets["image"], audio=assets["short"],
                      out=tmp_path / "gpu.mp4", device="cuda", dtype="auto", speed=10.0, **FAST)
    frames = np.stack(decode(tmp_path / "gpu.mp4")[0]).astype(np.float32)
    assert result.frames == len(frames) == 25 and np.isfinite(frames).all() and frames.std() > 1


def test_speed_file_one_value_per_frame(assets, tmp_path):
    track = tmp_path / "speed.txt"
    track.write_text("\n".join(str(v) for v in np.linspace(0, 40, 25)))
    result = generate(checkpoint=assets["checkpoint"], image=assets["image"], audio=assets["short"],
                      out=tmp_path / "o.mp4", speed=track, **FAST)
    assert result.frames == 25
    short = tmp_path / "short.npy"
    np.save(short, np.ones(10, np.float32))
    with pytest.raises(InferError, match="10 values.*25"):
        generate(checkpoint=assets["checkpoint"], image=assets["image"], audio=assets["short"],
                 out=tmp_path / "o2.mp4", speed=short, **FAST)


def test_wav2vec2_features_from_the_recorded_encoder_or_audio_encoder(assets, tmp_path):
    """A model trained on wav2vec2 shards: inference loads the encoder the checkpoint recorded
    (a tiny random model saved with save_pretrained), or the one --audio-encoder names."""
    encoder = samples.save_tiny_wav2vec2(tmp_path / "w2v")
    checkpoint = tiny_checkpoint(tmp_path, stage=2, wav2vec2=str(encoder))
    recorded = json.loads((checkpoint / "annotation.json").read_text())["audio_features"]
    assert recorded["kind"] == "wav2vec2" and recorded["model"] == str(encoder) and recorded["shape"] == [3, 32]

    common = dict(checkpoint=checkpoint, image=assets["image"], audio=assets["short"], **FAST)
    first = generate(out=tmp_path / "a.mp4", **common)
    moved = shutil.move(str(encoder), str(tmp_path / "elsewhere"))
    with pytest.raises(InferError, match="--audio-encoder"):
        generate(out=tmp_path / "b.mp4", **common)
    second = generate(out=tmp_path / "b.mp4", audio_encoder=moved, **common)
    assert first.frames == second.frames == 25
    assert np.array_equal(np.stack(decode(tmp_path / "a.mp4")[0]), np.stack(decode(tmp_path / "b.mp4")[0]))


def test_clip_windows_equal_the_whole_videos_windows():
    """Audio windows are cut per clip (memory stays flat for long songs) yet clip edges see the
    neighbouring clip's audio, exactly as windows over the whole video would."""
    from emo_infer.pipeline import _clip_windows
    from emo_train.models.windows import frame_windows

    features = np.random.default_rng(0).standard_normal((30, 3, 4)).astype(np.float16)
    whole = frame_windows(torch.from_numpy(features.astype(np.float32))[None], 2)
    per_clip = torch.cat([_clip_windows(features, slice(s, min(s + 12, 30)), 2) for s in range(0, 30, 12)], dim=1)
    assert torch.equal(per_clip, whole)


def test_long_audio_wav2vec2_runs_in_near_equal_pieces(tmp_path):
    """25 s of speech: wav2vec2 sees three pieces of about 8.3 s, as the annotator splits a 25 s
    face track into clips of at most 10 s; mel runs over the whole audio at once."""
    from emo_infer.audio import audio_features, make_featurizer

    encoder = samples.save_tiny_wav2vec2(tmp_path / "w2v")
    featurizer = make_featurizer({"kind": "wav2vec2", "model": str(encoder), "layers": [0, 1, 2], "shape": [3, 32]})
    lengths = []

    class Recording:  # the real featurizer, with its calls noted
        kind = featurizer.kind

        def __call__(self, audio, num_frames, fps):
            lengths.append((len(audio), num_frames))
            return featurizer(audio, num_frames, fps)

    features = audio_features(Recording(), samples.synth_speech(25.0), 625, 25.0)
    assert features.shape == (625, 3, 32) and features.dtype == np.float16 and np.isfinite(features).all()
    assert [frames for _, frames in lengths] == [208, 209, 208]
    assert [samples_ for samples_, _ in lengths] == [frames * 640 for _, frames in lengths]

    mel = make_featurizer({"kind": "mel", "n_mels": 80, "n_fft": 400, "frames_per_video_frame": 4})
    assert audio_features(mel, samples.synth_speech(25.0), 625, 25.0).shape == (625, 320)
