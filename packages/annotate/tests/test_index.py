"""The index merge: unit parts (as the workers write them) into one parquet file, in unit order."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from emo_annotate import index


def test_merge_keeps_unit_order_in_few_chunks(tmp_path):
    """600 parts of 1-3 rows (a run writes one per unit): every row once, in unit order, read
    into ceil(600 / PARTS_PER_CHUNK) chunks rather than one per part."""
    parts, expected = [], []
    for unit in range(600):
        rows = [index.video_row(f"v{unit}_{i}", f"in/{unit}_{i}.mp4", unit, index.STATUS_SKIPPED, "no audio track")
                for i in range(1 + unit % 3)]
        path = tmp_path / "units" / f"{unit:05d}.parquet"
        path.parent.mkdir(exist_ok=True)
        index.write_rows(path, rows)
        parts.append(path)
        expected += rows
    failed = [index.video_row("gone", "in/gone.mp4", 600, index.STATUS_FAILED, "worker died")]

    table = index.merge(parts[::-1], failed, tmp_path / "index.parquet")  # any order in, unit order out

    assert table.schema == index.SCHEMA
    assert table.column("video_id").num_chunks <= -(-600 // index.PARTS_PER_CHUNK) + 1
    written = pq.read_table(tmp_path / "index.parquet")
    assert written.to_pylist() == table.to_pylist() == index.to_table(expected + failed).to_pylist()


def test_a_part_of_an_older_width_is_cast_to_the_schema(tmp_path):
    """A part whose integer columns were written wider (int64) is read as the schema's types."""
    row = index.video_row("v", "in/v.mp4", 3, index.STATUS_SKIPPED, "too short")
    wide = index.to_table([row])
    wide = wide.set_column(wide.schema.get_field_index("unit"), "unit", pa.array([3], pa.int64()))
    pq.write_table(wide, tmp_path / "00003.parquet")

    table = index.read_parts([tmp_path / "00003.parquet"])

    assert table.schema == index.SCHEMA and table.to_pylist() == index.to_table([row]).to_pylist()


def test_no_parts_is_an_empty_index(tmp_path):
    assert index.read_parts([]).schema == index.SCHEMA and index.read_parts([]).num_rows == 0
