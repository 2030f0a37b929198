"""`emo-annotate stats` against the index of the real annotated output, plus the pure helpers."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from emo_annotate.cli import app
from emo_annotate.layout import OutputLayout
from emo_annotate.runner import RunError
from emo_annotate.stats import (
    HIST_BIN,
    MIN_RADIUS,
    NUM_BUCKETS,
    compute_stats,
    format_stats,
    reason_group,
    speed_summary,
    suggest_speed_buckets,
)


@pytest.fixture(scope="module")
def stats_and_rows(annotated) -> tuple[dict, list[dict]]:
    _, out, _, _ = annotated
    return compute_stats(out), pq.read_table(OutputLayout(out).index).to_pylist()


def test_counts_agree_with_index_and_run_summary(annotated, stats_and_rows):
    _, _, expected, summary = annotated
    stats, rows = stats_and_rows
    clip_rows = [r for r in rows if r["key"]]
    assert stats["clips"] == summary["clips"] == len(clip_rows)
    assert stats["hours"] == pytest.approx(summary["hours"])
    assert stats["frames"] == sum(r["frames"] for r in clip_rows)
    videos = stats["videos"]
    assert videos["total"] == len(expected)  # every input has an outcome
    assert videos["ok"] + videos["skipped"] + videos["failed"] == videos["total"]
    assert videos["skipped"] == summary["skipped_inputs"]
    assert videos["failed"] == summary["failed_inputs"]
    assert videos["ok"] == len({r["video_id"] for r in clip_rows})


def test_reasons_are_grouped_before_the_parenthesis(stats_and_rows):
    stats, rows = stats_and_rows
    for status in ("skipped", "failed"):
        video_rows = [r for r in rows if not r["key"] and r["status"] == status]
        assert sum(stats["reasons"][status].values()) == len(video_rows)
        assert all("(" not in reason for reason in stats["reasons"][status])
        assert stats["reasons"][status] == dict(Counter(r["reason"].split("(")[0].strip() for r in video_rows))
    # the truncated file and the text file fail with the same reason but different FFmpeg detail
    assert stats["reasons"]["failed"]["not a readable video"] == 2
    assert stats["reasons"]["skipped"]["no audio track"] == 1


def test_speed_distribution_covers_every_frame(stats_and_rows):
    stats, _ = stats_and_rows
    speed = stats["speed"]
    assert speed["frames"] == stats["frames"]
    hist = speed["histogram"]
    assert sum(hist["counts"]) + hist["overflow"] == speed["frames"]
    assert hist["bin_edges"][0] == 0 and hist["bin_edges"][-1] == 180 and len(hist["counts"]) == 18
    pct = list(speed["percentiles"].values())
    assert list(speed["percentiles"]) == ["p5", "p25", "p50", "p75", "p95", "p99"]
    assert all(a <= b for a, b in zip(pct, pct[1:])) and 0 <= pct[0] and pct[-1] <= speed["max"]
    buckets = stats["speed_buckets"]
    assert len(buckets["centers"]) == len(buckets["radii"]) == NUM_BUCKETS
    assert buckets["centers"] == sorted(buckets["centers"]) and min(buckets["radii"]) >= MIN_RADIUS


def test_histogram_bins_are_half_open_with_overflow():
    speeds = np.array([0.0, 9.99, 10.0, 179.9, 180.0, 500.0])
    hist = speed_summary(speeds)["histogram"]
    assert hist["counts"][0] == 2 and hist["counts"][1] == 1 and hist["counts"][17] == 1
    assert hist["overflow"] == 2
    assert speed_summary(np.zeros(0))["percentiles"]["p50"] is None


def test_bucket_rule_on_known_distributions():
    uniform = suggest_speed_buckets(np.linspace(0, 100, 100_001))
    assert uniform["centers"] == pytest.approx([5 + 10 * i for i in range(10)], abs=0.01)
    assert uniform["radii"] == pytest.approx([5.0] * 10, abs=0.01)  # half of the 10 deg/s spacing
    # uneven gaps: each radius is half the larger neighbouring gap
    skewed = suggest_speed_buckets(np.concatenate([np.zeros(50), np.linspace(0, 90, 50)]))
    c, r = np.array(skewed["centers"]), np.array(skewed["radii"])
    gaps = np.diff(c)
    inner = np.maximum(np.maximum(gaps[:-1], gaps[1:]) / 2, MIN_RADIUS)
    assert r[1:-1] == pytest.approx(inner, abs=0.02)
    # still frames give identical centres: radii fall back to the minimum
    assert suggest_speed_buckets(np.zeros(10))["radii"] == [MIN_RADIUS] * NUM_BUCKETS


def test_reason_group():
    assert reason_group("not a readable video (Invalid data found)") == "not a readable video"
    assert reason_group("too short: 1 frames, a clip needs 16") == "too short: 1 frames, a clip needs 16"
    assert reason_group(None) == "(no reason recorded)"


def test_text_report(stats_and_rows):
    stats, _ = stats_and_rows
    text = format_stats(stats)
    assert f"clips     {stats['clips']:>8}" in text
    assert "not a readable video" in text and "p95" in text and "centers = [" in text
    bars = [line for line in text.splitlines() if "|" in line]
    assert len(bars) == 180 / HIST_BIN + 1  # 18 bins and the overflow bin
    assert any("#" * 40 in line for line in bars)  # the fullest bin spans the whole bar width


def test_cli_stats_text_and_json(annotated, stats_and_rows):
    _, out, _, _ = annotated
    stats, _ = stats_and_rows
    as_json = CliRunner().invoke(app, ["stats", str(out), "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == json.loads(json.dumps(stats))
    text = CliRunner().invoke(app, ["stats", str(out)])
    assert text.exit_code == 0 and "head rotation speed" in text.output


def test_stats_of_a_directory_without_index(tmp_path):
    with pytest.raises(RunError, match="no index.parquet"):
        compute_stats(tmp_path)
