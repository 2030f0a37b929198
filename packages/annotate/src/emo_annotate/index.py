"""The parquet index: one row per clip and one row per skipped or failed input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .layout import atomic_path

STATUS_OK = "ok"
STATUS_SKIPPED = "skipped"  # a readable input with nothing to train on
STATUS_FAILED = "failed"  # an input that could not be processed
STATUS_DROPPED = "dropped"  # a stretch of an input left out for a label problem (one row each)

SCHEMA = pa.schema(
    [
        ("key", pa.string()),  # clip key (null for a video row)
        ("status", pa.string()),  # ok | skipped | failed | dropped (a stretch of a video, see reason)
        ("reason", pa.string()),  # human-readable, null when ok
        ("video_id", pa.string()),
        ("source", pa.string()),  # input path relative to the input directory
        ("unit", pa.int32()),
        ("shard", pa.string()),  # shard file name (null for a video row)
        ("clip_index", pa.int32()),
        ("start_s", pa.float64()),  # clip (or dropped stretch) span in the source video
        ("end_s", pa.float64()),
        ("frames", pa.int32()),
        ("fps", pa.float64()),
        ("speed_mean", pa.float32()),  # head rotation speed, deg/s
        ("speed_p95", pa.float32()),
        ("yaw_range", pa.float32()),  # degrees
        ("audio_coverage", pa.float32()),  # share of the clip covered by the source's audio
        ("face_side_px", pa.float32()),  # median face size in source pixels
    ]
)


def clip_row(meta: dict, unit: int, shard: str) -> dict:
    quality = meta["quality"]
    return {
        "key": meta["key"],
        "status": "ok",
        "reason": None,
        "video_id": meta["video_id"],
        "source": meta["source"],
        "unit": unit,
        "shard": shard,
        "clip_index": meta["clip_index"],
        "start_s": meta["source_span_s"][0],
        "end_s": meta["source_span_s"][1],
        "frames": meta["frames"],
        "fps": meta["fps"],
        "speed_mean": quality["speed_mean"],
        "speed_p95": quality["speed_p95"],
        "yaw_range": quality["yaw_range"],
        "audio_coverage": quality["audio_coverage"],
        "face_side_px": quality["face_side_px_source"],
    }


def video_row(video_id: str, source: str, unit: int, status: str, reason: str | None) -> dict:
    return {"video_id": video_id, "source": source, "unit": unit, "status": status, "reason": reason}


def dropped_row(video_id: str, source: str, unit: int, start_s: float, end_s: float, frames: int, fps: float, reason: str) -> dict:
    """A stretch of a video that had a face but makes no clip (a label problem), with its reason."""
    return {**video_row(video_id, source, unit, "dropped", reason), "start_s": start_s, "end_s": end_s, "frames": frames, "fps": fps}


def to_table(rows: list[dict]) -> pa.Table:
    columns = {name: [row.get(name) for row in rows] for name in SCHEMA.names}
    return pa.table(columns, schema=SCHEMA)


def write_rows(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(to_table(rows), tmp)


PARTS_PER_CHUNK = 256  # unit parts read before they are combined into one chunk


def read_parts(parts: list[Path]) -> pa.Table:
    """Unit index parts concatenated in unit order, as few chunks as the parts / PARTS_PER_CHUNK.

    A run has tens of thousands of parts of a few rows each. Read one file at a time and combined
    as it goes, they cost the driver about 11 KB of memory each; a pyarrow dataset scan of all of
    them at once held about 68 KB each (1.7 GB at 25,000 units) and left a table of as many chunks.
    """
    chunks, pending = [], []
    for path in sorted(parts):
        with pq.ParquetFile(path) as part:
            table = part.read()
        pending.append(table if table.schema == SCHEMA else table.cast(SCHEMA))
        if len(pending) == PARTS_PER_CHUNK:
            chunks.append(pa.concat_tables(pending).combine_chunks())
            pending = []
    if pending:
        chunks.append(pa.concat_tables(pending).combine_chunks())
    return pa.concat_tables(chunks) if chunks else SCHEMA.empty_table()


def merge(parts: list[Path], extra_rows: list[dict], out: Path) -> pa.Table:
    """Concatenate unit index parts (in unit order) plus extra rows into `out`, atomically."""
    table = pa.concat_tables([read_parts(parts), to_table(extra_rows)])
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return table


def summarize(table: pa.Table) -> dict:
    """Counts for the end-of-run summary."""
    status = table.column("status").to_pylist()
    keys = table.column("key").to_pylist()
    frames = np.array([f or 0 for f, k in zip(table.column("frames").to_pylist(), keys) if k])
    fps = np.array([f or 1 for f, k in zip(table.column("fps").to_pylist(), keys) if k])
    return {
        "clips": sum(1 for k in keys if k),
        "hours": float((frames / fps).sum() / 3600) if len(frames) else 0.0,
        "skipped_inputs": sum(1 for s, k in zip(status, keys) if s == "skipped" and not k),
        "failed_inputs": sum(1 for s, k in zip(status, keys) if s == "failed" and not k),
        "dropped_stretches": sum(1 for s in status if s == "dropped"),
    }
