"""`emo-annotate verify` on the real annotated output and on deliberately damaged copies."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from emo_annotate.cli import app
from emo_annotate.layout import OutputLayout
from emo_annotate.media import Mp4Writer
from emo_annotate.verify import check_sample, iter_samples, verify_output

Edit = Callable[[str, bytes], list[tuple[str, bytes]]]


def rewrite_tar(path: Path, edit: Edit) -> None:
    """Rewrite a tar member by member: `edit(name, data)` returns the members to write instead."""
    with tarfile.open(path) as tar:
        members = [(info.name, tar.extractfile(info).read()) for info in tar.getmembers()]
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            for new_name, new_data in edit(name, data):
                info = tarfile.TarInfo(new_name)
                info.size = len(new_data)
                tar.addfile(info, io.BytesIO(new_data))


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def mp4(frames: int, size: int, fps: float = 25.0) -> bytes:
    writer = Mp4Writer(fps, size, size, 30, "ultrafast")
    for _ in range(frames):
        writer.add(np.zeros((size, size, 3), np.uint8))
    return writer.finish()


def wav(seconds: float, rate: int = 16000, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.zeros(int(seconds * rate) * channels, "<i2").tobytes())
    return buffer.getvalue()


def ok_keys(out: Path) -> list[str]:
    table = pq.read_table(OutputLayout(out).index)
    return [k for k, s in zip(table.column("key").to_pylist(), table.column("status").to_pylist()) if s == "ok"]


# -- the real output -------------------------------------------------------------------------------
def test_verify_passes_on_real_output(annotated):
    _, out, _, summary = annotated
    problems, checked = verify_output(out)
    assert problems == []
    assert checked == summary["clips"] == len(ok_keys(out)) >= 3


@pytest.fixture(scope="module")
def real_sample(annotated) -> tuple[str, dict[str, bytes]]:
    _, out, _, _ = annotated
    return next(iter_samples(OutputLayout(out).shard_files()[0]))


def _meta(sample: dict[str, bytes]) -> dict:
    return json.loads(sample["json"])


def _t(sample: dict[str, bytes]) -> int:
    return _meta(sample)["frames"]


def _size(sample: dict[str, bytes]) -> int:
    return _meta(sample)["size"]


def _seconds(sample: dict[str, bytes]) -> float:
    return _t(sample) / _meta(sample)["fps"]


def _with_json(sample: dict[str, bytes], **changes) -> bytes:
    return json.dumps({**_meta(sample), **changes}).encode()


PICKLED = npy(np.array([{"a": 1}], dtype=object), allow_pickle=True)

# each case: (replacement members made from a real sample, a fragment the problem must contain)
SAMPLE_DAMAGE: dict[str, tuple[Callable[[dict[str, bytes]], dict[str, bytes]], str]] = {
    "pose float64": (lambda s: {"pose.npy": npy(np.zeros((_t(s), 6)))}, "pose.npy dtype float64, expected float32"),
    "speed one short": (lambda s: {"speed.npy": npy(np.zeros(_t(s) - 1, np.float32))}, "speed.npy shape"),
    "bbox NaN": (lambda s: {"bbox.npy": npy(np.full((_t(s), 4), np.nan, np.float32))}, "bbox.npy holds NaN"),
    "pickled audio": (lambda s: {"audio.npy": PICKLED}, "audio.npy does not load with allow_pickle=False"),
    "truncated lmk": (lambda s: {"lmk.npy": s["lmk.npy"][: len(s["lmk.npy"]) // 2]}, "lmk.npy does not load"),
    "short mp4": (lambda s: {"mp4": mp4(5, _size(s))}, "mp4 decodes to 5 frames"),
    "mp4 wrong size": (lambda s: {"mp4": mp4(_t(s), 64)}, "mp4 is 64x64"),
    "mp4 wrong fps": (lambda s: {"mp4": mp4(_t(s), _size(s), fps=24.0)}, "mp4 frame rate 24"),
    "not an mp4": (lambda s: {"mp4": b"not a video at all"}, "mp4 does not decode"),
    "stereo wav": (lambda s: {"wav": wav(_seconds(s), channels=2)}, "wav has 2 channels"),
    "44.1 kHz wav": (lambda s: {"wav": wav(_seconds(s), rate=44100)}, "wav rate 44100 Hz"),
    "wav a second short": (lambda s: {"wav": wav(_seconds(s) - 1)}, "wav lasts"),
    "rgb mask": (lambda s: {"mask.png": _png(np.full((_size(s), _size(s), 3), 255, np.uint8))}, "expected single-channel uint8"),
    "empty mask": (lambda s: {"mask.png": _png(np.zeros((_size(s), _size(s)), np.uint8))}, "mask.png is empty"),
    "json T off by one": (lambda s: {"json": _with_json(s, frames=_t(s) + 1)}, "pose.npy shape"),
    "json other key": (lambda s: {"json": _with_json(s, key="someone-else_000")}, "json key 'someone-else_000' differs"),
    "json not json": (lambda s: {"json": b"{nope"}, "json does not parse"),
    "pickle member": (lambda s: {"pose.pth": b"\x80\x04K\x01."}, "pickle member .pose.pth"),
    "unknown member": (lambda s: {"depth.npy": s["speed.npy"]}, "unexpected member .depth.npy"),
}


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_real_sample_is_clean(real_sample):
    key, members = real_sample
    problems, frames = check_sample(key, members)
    assert problems == [] and frames == _meta(members)["frames"]


@pytest.mark.parametrize("case", list(SAMPLE_DAMAGE))
def test_sample_damage_is_named(real_sample, case):
    key, members = real_sample
    damage, fragment = SAMPLE_DAMAGE[case]
    problems, _ = check_sample(key, {**members, **damage(members)})
    assert any(fragment in p for p in problems), problems


@pytest.mark.parametrize("member", ["mask.png", "lmk.npy", "wav"])
def test_missing_member_is_named(real_sample, member):
    key, members = real_sample
    problems, _ = check_sample(key, {k: v for k, v in members.items() if k != member})
    assert f"missing members: {member}" in problems


def test_lmk_not_required_when_json_says_not_stored(real_sample):
    key, members = real_sample
    meta = _meta(members)
    meta["landmarks"]["stored"] = False
    rest = {k: v for k, v in members.items() if k != "lmk.npy"}
    assert check_sample(key, {**rest, "json": json.dumps(meta).encode()})[0] == []


def test_dotted_key_is_named(real_sample):
    key, members = real_sample
    problems, _ = check_sample("with.dot_000", {**members, "json": _with_json(members, key="with.dot_000")})
    assert problems == ["key contains a dot (WebDataset would split it)"]


# -- a damaged copy of the whole output ----------------------------------------------------------
@pytest.fixture(scope="module")
def broken(annotated, tmp_path_factory) -> tuple[Path, dict]:
    """A copy of the real output with damage in tars, stats, index and leftovers; (dir, facts)."""
    _, out, _, _ = annotated
    copy = tmp_path_factory.mktemp("broken") / "out"
    shutil.copytree(out, copy)
    layout = OutputLayout(copy)
    tars = layout.shard_files()
    assert len(tars) >= 2, "the fixture run should give at least two shards"
    stats = {t.stem: json.loads(layout.stats_path(t.stem).read_text()) for t in tars}
    first = next(t for t in tars if stats[t.stem]["clips"] >= 2)
    k1, k2 = stats[first.stem]["keys"][:2]
    other = next(t for t in tars if t != first)

    def damage(name: str, data: bytes) -> list[tuple[str, bytes]]:
        if name == f"{k1}.pose.npy":
            return [(name, data[: len(data) // 2])]  # truncated array
        if name == f"{k1}.json":
            return [(name, data), (f"{k1}.state.pth", b"\x80\x04K\x01.")]  # a pickle inside the sample
        if name == f"{k2}.mask.png":
            return []  # dropped member
        return [(name, data)]

    rewrite_tar(first, damage)
    layout.stats_path(other.stem).unlink()  # shard without its commit marker
    (layout.shards / "00099-000.tar.tmp").write_bytes(b"partial")  # an interrupted write
    # the index loses k2's row and mislabels k1's shard
    table = pq.read_table(layout.index)
    rows = [r for r in table.to_pylist() if r["key"] != k2]
    for r in rows:
        if r["key"] == k1:
            r["shard"] = "00042-000"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), layout.index)
    return copy, {"first": first.name, "other": other.name, "k1": k1, "k2": k2}


def test_verify_names_each_damage(broken):
    out, f = broken
    problems, checked = verify_output(out)
    expected = [
        f"shards/{f['first']} {f['k1']}: pose.npy does not load with allow_pickle=False",
        f"shards/{f['first']} {f['k1']}: pickle member .state.pth",
        f"shards/{f['first']} {f['k2']}: missing members: mask.png",
        f"shards/{f['other']}: no stats/",
        "shards/00099-000.tar.tmp: leftover temporary file",
        f"stats/{Path(f['first']).stem}.json: says",  # the rewritten tar's size no longer matches
        f"shards/{f['first']} {f['k2']}: not in index.parquet as an ok clip",
        f"index.parquet: clip {f['k1']} says shard 00042-000, it is in shards/{f['first']}",
    ]
    for fragment in expected:
        assert any(p.startswith(fragment) for p in problems), (fragment, problems)
    assert len(problems) == len(expected), problems  # nothing else is reported
    assert checked >= 3


def test_verify_reports_duplicate_keys_and_stats_disagreement(annotated, tmp_path):
    _, out, _, _ = annotated
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    layout = OutputLayout(copy)
    first, other = layout.shard_files()[:2]
    key, members = next(iter_samples(first))
    copy_of_sample = [(f"{key}.{ext}", data) for ext, data in members.items()]

    def add_copy_after_first_sample(name: str, data: bytes) -> list[tuple[str, bytes]]:
        return [(name, data)] + (copy_of_sample if name.endswith(".json") else [])

    rewrite_tar(other, add_copy_after_first_sample)  # the same sample again in another shard
    problems, _ = verify_output(copy)
    duplicate = f"shards/{other.name} {key}: duplicate key (also in shards/{first.name})"
    assert any(p.startswith(duplicate) for p in problems), problems
    assert any(p.startswith(f"stats/{other.stem}.json: keys disagree") for p in problems), problems


def test_verify_reports_uncommitted_unit_and_orphan_stats(annotated, tmp_path):
    _, out, _, _ = annotated
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    layout = OutputLayout(copy)
    first = layout.shard_files()[0]
    layout.unit_path(int(first.stem[:5])).unlink()
    shutil.copy(layout.stats_path(first.stem), layout.stats_path("00077-000"))
    problems, _ = verify_output(copy)
    assert f"shards/{first.name}: its unit has no units/{first.stem[:5]}.parquet (the unit was never committed)" in problems
    assert "stats/00077-000.json: its shard shards/00077-000.tar is missing" in problems


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_verify_exit_codes(annotated, broken):
    _, out, _, summary = annotated
    good = CliRunner().invoke(app, ["verify", str(out)])
    assert good.exit_code == 0, good.output
    assert f"ok: {summary['clips']} clips verified" in good.output
    bad = CliRunner().invoke(app, ["verify", str(broken[0])])
    assert bad.exit_code == 1
    assert bad.output.count("PROBLEM ") >= 8


def test_unit_numbers_past_99999_are_valid(annotated, tmp_path):
    """Unit 100000 names its shards 100000-000: six digits, still a committed, valid output."""
    _, out, _, _ = annotated
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    layout = OutputLayout(copy)
    unit = int(layout.shard_files()[0].stem.split("-")[0])
    renamed = {}
    for tar in [t for t in layout.shard_files() if int(t.stem.split("-")[0]) == unit]:
        new = f"{unit + 100000}-{tar.stem.split('-')[1]}"
        renamed[tar.stem] = new
        tar.rename(layout.shard_path(new))
        stats = json.loads(layout.stats_path(tar.stem).read_text())
        layout.stats_path(tar.stem).unlink()
        layout.stats_path(new).write_text(json.dumps({**stats, "shard": f"{new}.tar", "unit": unit + 100000}))
    layout.unit_path(unit).rename(layout.unit_path(unit + 100000))
    table = pq.read_table(layout.index).to_pylist()
    for row in table:
        row["shard"] = renamed.get(row["shard"], row["shard"])
    pq.write_table(pa.Table.from_pylist(table, schema=pq.read_schema(layout.index)), layout.index)
    assert verify_output(copy)[0] == []
