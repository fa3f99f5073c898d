"""Tiny runs of the benchmarks (bench/), so that they keep working; no figures checked."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson
import pytest

from cxstream.emit import partition_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ sits beside tests/

import bench.common
import bench.memory
import bench.replay
import bench.stages
import bench.worker
from bench.common import load_events, mixed_lines, percentile, realistic_events, rebase, table
from bench.freshness import probe_users


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for module in (bench.common, bench.replay, bench.memory, bench.stages):
        monkeypatch.setattr(module, "DATA", tmp_path)
    return tmp_path


def test_replay_benchmark_runs(data_dir: Path) -> None:
    result = bench.replay.main(["--events", "2000", "--runs", "1", "--no-write"])
    assert result["events"] >= 2000
    assert result["replay_command"]["accepted"] > 1900
    assert result["ratio"] > 0


def test_stages_aid_runs_every_event_through_both_stages(data_dir: Path) -> None:
    msgs, now_ms = bench.stages.messages(3000, 1)
    assert list(data_dir.glob("stages-3000-1.pickle"))  # made once, then kept
    _, accepted = bench.stages.run(msgs, now_ms, fetch=4)
    assert accepted == 3000  # valid events, no duplicates
    assert {partition for partition, _ in msgs} == set(range(bench.stages.PARTITIONS))


def test_stages_aid_runs_on_other_partition_counts(data_dir: Path) -> None:
    msgs, now_ms = bench.stages.messages(3000, 1, partitions=3)
    assert list(data_dir.glob("stages-3000-1-p3.pickle"))
    assert {partition for partition, _ in msgs} == {0, 1, 2}
    _, accepted = bench.stages.run(msgs, now_ms, fetch=4, partitions=3)
    assert accepted == 3000


def test_worker_benchmark_takes_a_list_of_partition_counts() -> None:
    assert bench.worker.partition_counts("8") == [8]
    assert bench.worker.partition_counts("1,2,16") == [1, 2, 16]
    for bad in ("0", "2,x", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.worker.partition_counts(bad)


def test_replay_benchmark_measures_a_file_of_ones_own(tmp_path: Path) -> None:
    events = realistic_events(1500, seed=5, start_ms=1_790_000_000_000, span_s=3600,
                              users=150, messy=False)  # fmt: skip
    path = tmp_path / "mine.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    result = bench.replay.main(["--data", str(path), "--runs", "1", "--no-write"])
    assert result["data"] == str(path)
    assert result["events"] == 1500
    assert result["replay_command"]["accepted"] == 1500


def test_load_events_reads_events_and_batches_and_counts_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        '{"event_id": "a"}\n'
        "\n"
        '[{"event_id": "b"}, {"event_id": "c"}]\n'
        "{not json\n"
        '[7, {"event_id": "d"}]\n'
    )
    events, other = load_events(path)
    assert [e["event_id"] for e in events] == ["a", "b", "c", "d"]
    assert other == 2


def test_rebase_keeps_gaps_and_the_form_of_each_timestamp() -> None:
    events = [
        {"event_id": "text", "ts": "2026-09-21T14:13:20.844Z"},  # 1_790_000_000_844
        {"event_id": "int", "ts": 1_790_000_060_000},
        {"event_id": "float", "ts": 1_790_000_000_000.0},
        {"event_id": "offset", "ts": "2026-09-21T19:43:20+05:30"},  # 1_790_000_000_000
        {"event_id": "unreadable", "ts": "yesterday"},
    ]
    moved = rebase(events, latest_ms=1_800_000_060_000)  # shift: +10_000_000_000 ms
    assert moved[0]["ts"] == "2027-01-15T08:00:00.844Z"  # 1_800_000_000_844 ms, in UTC
    assert moved[1]["ts"] == 1_800_000_060_000
    assert moved[2]["ts"] == 1_800_000_000_000.0 and isinstance(moved[2]["ts"], float)
    assert moved[3]["ts"] == "2027-01-15T08:00:00.000Z"
    assert moved[4] == events[4]
    assert events[0]["ts"] == "2026-09-21T14:13:20.844Z"  # the input is not changed


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
