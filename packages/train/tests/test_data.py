"""The training data pipeline on real shards written by the real annotator (carphone, 64 px)."""

from __future__ import annotations

import io
import logging
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from emo_annotate import samples as sample_media
from emo_annotate.media import decode_mp4
from emo_annotate.shards import shard_urls
from emo_train.data import (
    DataConfig,
    DecodedClipCache,
    EMODataset,
    SampleError,
    SkipCounter,
    make_dataloader,
    resolve_shards,
    shard_audio_feature_shape,
)
from emo_train.models import AudioProjection, FaceLocator, SpeedEncoder, get_preset
from emo_train.models.windows import frame_windows

SIZE = 64


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory) -> Path:
    """One real annotation (no Ray): the carphone talking head with speech (~4 s), 64 px crops,
    clips of at most 1 s (5 clips of ~20 frames at 25 fps), two clips per shard."""
    out = sample_media.make_sample_shards(tmp_path_factory.mktemp("emo_data"), size=SIZE)
    assert len(shard_urls(out)) >= 2
    return out


def read_tar(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isreg()]


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="session")
def raw(shard_dir) -> dict[str, dict[str, bytes]]:
    """key -> member -> bytes, straight from the tars."""
    out: dict[str, dict[str, bytes]] = {}
    for url in shard_urls(shard_dir):
        for name, data in read_tar(Path(url)):
            key, member = name.split(".", 1)
            out.setdefault(key, {})[member] = data
    return out


def all_samples(cfg: DataConfig, **kw) -> list[dict]:
    return list(EMODataset(cfg, **kw))


def expected_pixels(mp4: bytes, indices) -> torch.Tensor:
    """(3, k, h, w) uint8: frames are handed out as decoded (the trainer scales them on its device)."""
    frames = decode_mp4(mp4)
    return torch.from_numpy(np.stack([frames[i] for i in indices])).permute(3, 0, 1, 2)


# --------------------------------------------------------------------------------------- tests


def test_resolve_shards(shard_dir, tmp_path):
    committed = shard_urls(shard_dir)
    assert resolve_shards(shard_dir) == committed
    assert resolve_shards(str(shard_dir / "shards")) == committed
    assert resolve_shards(committed) == committed
    assert resolve_shards(str(shard_dir / "shards" / "*.tar")) == committed
    names = [Path(u).name[: -len(".tar")] for u in committed]
    pattern = str(shard_dir / "shards") + "/{" + ",".join(names) + "}.tar"
    assert resolve_shards(pattern) == committed
    # a shard without its stats file (commit marker) is not used
    copy = tmp_path / "copy"
    shutil.copytree(shard_dir, copy)
    (copy / "stats" / f"{names[-1]}.json").unlink()
    assert [Path(u).name for u in resolve_shards(copy)] == [Path(u).name for u in committed[:-1]]
    # nor the shards of a unit that never committed its index part (it died after some shards)
    for unit in (copy / "units").glob("*.parquet"):
        unit.unlink()
    for spec in (copy, copy / "shards"):
        with pytest.raises(ValueError, match="no shards"):
            resolve_shards(spec)
    with pytest.raises(ValueError, match="no shards"):
        resolve_shards(tmp_path / "copy" / "units")
    assert shard_audio_feature_shape(shard_dir) == (320,)  # 4 mel frames x 80 bands


def test_stage1_batches(shard_dir, raw):
    cfg = DataConfig(shards=shard_dir, stage=1, size=SIZE, shuffle_buffer=0, seed=3)
    loader = make_dataloader(cfg, batch_size=2, num_workers=0)
    batches = list(loader)
    keys = [k for b in batches for k in b["key"]]
    assert sorted(keys) == sorted(raw)  # every clip once
    b = batches[0]
    assert b["video"].shape == (2, 3, 1, SIZE, SIZE) and b["video"].dtype == torch.uint8
    assert b["reference"].shape == (2, 3, SIZE, SIZE) and b["reference"].dtype == torch.uint8
    assert b["mask"].shape == (2, 1, SIZE, SIZE) and b["mask"].dtype == torch.float32
    assert set(b["mask"].unique().tolist()) <= {0.0, 1.0} and b["mask"].sum() > 0
    assert "audio" not in b and "motion" not in b and not any(name.startswith("drop_") for name in b)
    for batch in batches:
        for i, key in enumerate(batch["key"]):
            t, r = int(batch["frame_indices"][i, 0]), int(batch["reference_index"][i])
            assert t != r
            mp4 = raw[key]["mp4"]
            assert torch.equal(batch["video"][i], expected_pixels(mp4, [t]))
            assert torch.equal(batch["reference"][i], expected_pixels(mp4, [r])[:, 0])
    assert loader.dataset.counter.counts()["yielded"] == len(raw)
    assert loader.dataset.counter.skipped == 0


def test_stage2_batches(shard_dir, raw):
    cfg = DataConfig(shards=shard_dir, stage=2, size=SIZE, shuffle_buffer=4, seed=0)
    items = all_samples(cfg)
    assert sorted(s["key"] for s in items) == sorted(raw)  # all clips have >= 16 frames
    loader = make_dataloader(cfg, batch_size=2, num_workers=0, drop_last=True)
    b = next(iter(loader))
    assert b["video"].shape == (2, 3, 12, SIZE, SIZE)
    assert b["motion"].shape == (2, 3, 4, SIZE, SIZE)
    assert b["reference"].shape == (2, 3, SIZE, SIZE)
    assert b["mask"].shape == (2, 1, SIZE, SIZE)
    assert b["audio"].shape == (2, 12, 5, 320) and b["audio"].dtype == torch.float32
    assert b["speed"].shape == (2, 12) and b["speed"].dtype == torch.float32
    for name in ("video", "motion", "reference"):
        assert b[name].dtype == torch.uint8
    for name in ("drop_audio", "drop_motion", "drop_speed"):
        assert b[name].dtype == torch.bool and b[name].shape == (2,)
    # the batch fits the model's conditioning modules (tiny preset: mel features)
    preset = get_preset("tiny", audio_feature_shape=shard_audio_feature_shape(shard_dir))
    assert AudioProjection(**preset.audio_projection)(b["audio"]).shape[:2] == (2, 12)
    assert SpeedEncoder(**preset.speed_encoder)(b["speed"]).shape[:2] == (2, 12)
    assert FaceLocator(**preset.face_locator)(b["mask"]).shape == (2, 4, SIZE // 8, SIZE // 8)

    for s in items:
        key, idx, motion = s["key"], s["frame_indices"].tolist(), s["motion_indices"].tolist()
        members = raw[key]
        assert motion + idx == list(range(motion[0], motion[0] + 16))  # 4 motion then 12 targets
        if len(np.load(io.BytesIO(members["speed.npy"]))) > 16:  # a frame outside the window exists
            assert not motion[0] <= s["reference_index"] < motion[0] + 16
        mp4 = members["mp4"]
        assert torch.equal(s["video"], expected_pixels(mp4, idx))
        assert torch.equal(s["motion"], expected_pixels(mp4, motion))
        assert torch.equal(s["reference"], expected_pixels(mp4, [s["reference_index"]])[:, 0])
        audio = torch.from_numpy(np.load(io.BytesIO(members["audio.npy"])).astype(np.float32))
        assert torch.equal(s["audio"], frame_windows(audio[None], 2)[0, idx])  # windows over the whole clip
        speed = np.load(io.BytesIO(members["speed.npy"]))
        assert torch.equal(s["speed"], torch.from_numpy(speed[idx]))


def test_resize_and_raw_audio(shard_dir):
    cfg = DataConfig(shards=shard_dir, stage=3, size=32, shuffle_buffer=0, audio_windows=False)
    b = next(iter(make_dataloader(cfg, batch_size=2)))
    assert b["video"].shape == (2, 3, 12, 32, 32) and b["motion"].shape == (2, 3, 4, 32, 32)
    assert b["reference"].shape == (2, 3, 32, 32) and b["mask"].shape == (2, 1, 32, 32)
    assert b["audio"].shape == (2, 12, 320)
    assert b["video"].dtype == torch.uint8 and b["video"].float().std() > 1  # resized pictures, not a constant


def test_short_clips_are_skipped_and_counted(shard_dir, raw, caplog):
    cfg = DataConfig(shards=shard_dir, stage=2, frames=30, size=SIZE, shuffle_buffer=0)
    dataset = EMODataset(cfg)
    with caplog.at_level(logging.INFO, logger="emo_train.data"):
        assert list(dataset) == []
    assert dataset.counter.counts()["too_short"] == len(raw)
    assert "too_short" in caplog.text


@pytest.fixture
def corrupted(shard_dir, tmp_path) -> tuple[Path, set[str], dict[str, str]]:
    """A copy of the shards with one bad pose.npy, one garbage mp4, one sample without its mask
    and an extra file that is not a tar: (directory, good keys, bad key -> reason)."""
    out = tmp_path / "corrupted"
    out.mkdir()
    urls = shard_urls(shard_dir)
    shards = {Path(u).name: read_tar(Path(u)) for u in urls}
    keys = [name.split(".", 1)[0] for members in shards.values() for name, _ in members]
    keys = list(dict.fromkeys(keys))
    bad = {keys[0]: "bad_npy", keys[2]: "bad_mp4", keys[3]: "missing_member"}
    for shard, members in shards.items():
        rewritten = []
        for name, data in members:
            key, member = name.split(".", 1)
            if bad.get(key) == "bad_npy" and member == "pose.npy":
                data = b"\x93NUMPY garbage" + bytes(range(40))
            elif bad.get(key) == "bad_mp4" and member == "mp4":
                data = data[:48] + bytes(200)  # header kept, then zeros
            elif bad.get(key) == "missing_member" and member == "mask.png":
                continue
            rewritten.append((name, data))
        write_tar(out / shard, rewritten)
    (out / "zz-not-a-tar.tar").write_bytes(b"this is not a tar file\n" * 100)
    return out, set(keys) - set(bad), bad


def test_corrupt_samples_are_skipped_counted_and_logged(corrupted, caplog):
    directory, good, bad = corrupted
    cfg = DataConfig(shards=directory, stage=1, size=SIZE, shuffle_buffer=0)
    dataset = EMODataset(cfg)
    with caplog.at_level(logging.WARNING, logger="emo_train.data"):
        keys = [s["key"] for s in dataset]
    assert sorted(keys) == sorted(good)
    counts = dataset.counter.counts()
    for reason in ("bad_npy", "bad_mp4", "missing_member"):
        assert counts[reason] == 1, counts
    assert counts["read_error"] >= 1
    assert dataset.counter.yielded == len(good)
    for key, reason in bad.items():
        assert key in caplog.text and reason in caplog.text


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=array.dtype == object)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "member, value, reason",
    [
        ("speed.npy", npy(np.zeros(3, np.float32)), "bad_shape"),  # wrong length
        ("bbox.npy", npy(np.zeros((20, 5), np.float32)), "bad_shape"),
        ("audio.npy", npy(np.zeros((2, 2), object)), "bad_npy"),  # would need a pickle
        ("mask.png", b"not a png", "bad_mask"),
        ("json", b"{not json", "bad_json"),
        ("audio.npy", None, "missing_member"),
    ],
)
def test_bad_members_raise_sample_errors(shard_dir, raw, member, value, reason):
    dataset = EMODataset(DataConfig(shards=shard_dir, stage=2, size=SIZE))
    key = sorted(raw)[0]
    sample = {"__key__": key, **raw[key]}
    if value is None:
        del sample[member]
    else:
        sample[member] = value
    with pytest.raises(SampleError) as info:
        dataset.make_sample(sample, np.random.default_rng(0))
    assert info.value.reason == reason
    # a clip with another audio feature shape than configured
    strict = EMODataset(DataConfig(shards=shard_dir, stage=2, size=SIZE, audio_feature_shape=(13, 768)))
    with pytest.raises(SampleError, match="audio.npy"):
        strict.make_sample({"__key__": key, **raw[key]}, np.random.default_rng(0))


def test_loader_workers_read_disjoint_shards_and_share_the_counter(corrupted):
    directory, good, bad = corrupted
    cfg = DataConfig(shards=directory, stage=1, size=SIZE, shuffle_buffer=8, seed=1)
    loader = make_dataloader(cfg, batch_size=1, num_workers=2)
    keys = [k for batch in loader for k in batch["key"]]
    assert len(keys) == len(set(keys))  # without splitting, both workers would yield every sample
    assert set(keys) == good
    counts = loader.dataset.counter.counts()  # summed over the two worker processes
    assert counts["yielded"] == len(good)
    assert counts["bad_npy"] == counts["bad_mp4"] == counts["missing_member"] == 1
    assert counts["read_error"] >= 1


def test_split_by_worker_gives_disjoint_samples(shard_dir, raw):
    cfg = DataConfig(shards=shard_dir, stage=2, size=SIZE, shuffle_buffer=0)
    loader = make_dataloader(cfg, batch_size=1, num_workers=2)
    keys = [k for batch in loader for k in batch["key"]]
    assert sorted(keys) == sorted(raw)


def test_repeat_and_epochs(shard_dir, raw):
    cfg = DataConfig(shards=shard_dir, stage=1, size=SIZE, shuffle_buffer=2, seed=5, repeat=True)
    stream = iter(EMODataset(cfg))
    keys = [next(stream)["key"] for _ in range(2 * len(raw) + 1)]
    assert set(keys) == set(raw)
    # same seed and epoch -> same samples; another epoch -> another draw
    once = DataConfig(shards=shard_dir, stage=1, size=SIZE, shuffle_buffer=2, seed=5)
    first = [(s["key"], int(s["frame_indices"][0])) for s in EMODataset(once)]
    assert first == [(s["key"], int(s["frame_indices"][0])) for s in EMODataset(once)]
    later = EMODataset(once)
    later.set_epoch(1)
    assert first != [(s["key"], int(s["frame_indices"][0])) for s in later]


@pytest.mark.parametrize("stage", [1, 2])
def test_clip_cache_gives_the_same_samples_and_decodes_each_clip_once(shard_dir, raw, stage):
    def passes(cache_mb: float) -> tuple[list[dict], EMODataset]:
        cfg = DataConfig(shards=shard_dir, stage=stage, size=SIZE, shuffle_buffer=4, seed=2, repeat=True,
                         clip_cache_mb=cache_mb)
        dataset = EMODataset(cfg)
        stream = iter(dataset)
        return [next(stream) for _ in range(3 * len(raw))], dataset  # three passes over the clips

    plain, _ = passes(0)
    cached, dataset = passes(64)
    assert dataset.clips.misses == len(raw) and dataset.clips.hits == 2 * len(raw)
    assert len(dataset.clips) == len(raw)
    for a, b in zip(plain, cached):
        assert a["key"] == b["key"]
        for name in ("video", "reference", "motion", "frame_indices", "audio", "speed"):
            if name in a:
                assert torch.equal(a[name], b[name]), name


def test_clip_cache_keeps_within_its_budget(shard_dir, raw):
    clip_bytes = {key: len(decode_mp4(members["mp4"])) * SIZE * SIZE * 3 for key, members in raw.items()}
    budget = 2.5 * max(clip_bytes.values())  # two clips, not three
    cfg = DataConfig(shards=shard_dir, stage=1, size=SIZE, shuffle_buffer=0, repeat=True, clip_cache_mb=budget / 2**20)
    dataset = EMODataset(cfg)
    stream = iter(dataset)
    for _ in range(2 * len(raw)):
        next(stream)
        assert dataset.clips.used <= budget and len(dataset.clips) <= 2
    # shard order with no shuffle buffer: every clip falls out before it comes round again
    assert dataset.clips.hits == 0 and dataset.clips.misses == 2 * len(raw)
    # a clip larger than the whole budget is never kept; a loader worker starts empty
    key = next(iter(raw))
    tiny = DecodedClipCache(capacity_mb=clip_bytes[key] / 2 / 2**20)
    tiny.put(("url", key), dict(enumerate(decode_mp4(raw[key]["mp4"]))))
    assert len(tiny) == 0 and tiny.used == 0
    import pickle

    copy = pickle.loads(pickle.dumps(dataset.clips))
    assert len(copy) == 0 and copy.capacity == dataset.clips.capacity


def test_fsspec_urls(shard_dir, raw):
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    for path in sorted((shard_dir / "shards").glob("*.tar")) + sorted((shard_dir / "stats").glob("*.json")):
        fs.pipe(f"/emo-test/run/{path.parent.name}/{path.name}", path.read_bytes())
    try:
        with pytest.raises(ValueError, match="no shards"):  # no unit committed yet: nothing to read
            resolve_shards("memory://emo-test/run")
        for path in sorted((shard_dir / "units").glob("*.parquet")):
            fs.pipe(f"/emo-test/run/units/{path.name}", path.read_bytes())
        urls = resolve_shards("memory://emo-test/run")
        assert [u.rsplit("/", 1)[1] for u in urls] == [Path(u).name for u in shard_urls(shard_dir)]
        cfg = DataConfig(shards="memory://emo-test/run", stage=1, size=SIZE, shuffle_buffer=0)
        assert sorted(s["key"] for s in EMODataset(cfg)) == sorted(raw)
    finally:
        fs.rm("/emo-test", recursive=True)


def test_config_validation():
    with pytest.raises(ValueError, match="stage"):
        DataConfig(shards="x", stage=4)
    with pytest.raises(ValueError, match="multiple of 8"):
        DataConfig(shards="x", size=60)
    with pytest.raises(ValueError, match="drop_audio"):
        DataConfig(shards="x", drop_audio=1.5)
    with pytest.raises(ValueError, match="clip_cache_mb"):
        DataConfig(shards="x", clip_cache_mb=-1)


def test_counter_pickles_as_a_snapshot():
    import pickle

    counter = SkipCounter()
    counter.add("bad_mp4", slot=3)
    counter.add_yielded(slot=1, n=5)
    copy = pickle.loads(pickle.dumps(counter))
    assert copy.counts() == counter.counts()
    assert counter.summary() == "yielded 5, skipped 1 (bad_mp4 1)"
