"""Tiny runs of the benchmarks (bench/), so that they keep working; no figures checked."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

from cxstream.emit import partition_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ sits beside tests/

import bench.common
import bench.memory
import bench.replay
from bench.common import mixed_lines, percentile, realistic_events, table
from bench.freshness import probe_users


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for module in (bench.common, bench.replay, bench.memory):
        monkeypatch.setattr(module, "DATA", tmp_path)
    return tmp_path


def test_replay_benchmark_runs(data_dir: Path) -> None:
    result = bench.replay.main(["--events", "2000", "--runs", "1", "--no-write"])
    assert result["events"] >= 2000
    assert result["replay_command"]["accepted"] > 1900
    assert result["ratio"] > 0


def test_memory_benchmark_replay_part_runs(data_dir: Path) -> None:
    result = bench.memory.main(["--users", "300", "--skip-worker", "--no-write"])
    assert result["replay"]["accepted"] == result["events"]
    assert result["replay"]["peak_rss_mib"] > 0


def test_mixed_lines_hold_batches_of_one_partition_and_bad_lines() -> None:
    events = realistic_events(3000, seed=3, start_ms=1_790_000_000_000, span_s=3600,
                              users=300, messy=False)  # fmt: skip
    lines = list(mixed_lines(events, seed=3, batch_share=0.3, bad_lines=16,
                             now_ms=1_790_003_600_000))  # fmt: skip
    parsed = []
    bad = 0
    for line in lines:
        try:
            parsed.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            bad += 1
    batches = [doc for doc in parsed if isinstance(doc, list) and len(doc) > 1]
    assert batches
    for batch in batches:
        if all(isinstance(e, dict) and "user_id" in e for e in batch):
            assert len({partition_for(str(e["user_id"]), 8) for e in batch}) == 1
    assert bad >= 1
    assert sum(len(d) if isinstance(d, list) else 1 for d in parsed) >= 3000


def test_probe_users_cover_every_partition() -> None:
    users = probe_users(8)
    assert [partition_for(u, 8) for u in users] == list(range(8))


def test_helpers() -> None:
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([1.0, 2.0], 0.99) == pytest.approx(1.99)
    text = table(("a", "b"), [("x", 1234.5), ("y", 0.25)])
    assert "1,234" in text and "0.250" in text
