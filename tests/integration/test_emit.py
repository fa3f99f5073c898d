"""The producer SDK and `cxstream emit` against the real broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from cxstream.emit import Emitter, SyncEmitter, partition_for
from cxstream.errors import InvalidEvent
from cxstream.kafka import ensure_topics

from infra import read_topic, wait_for

NOW = int(time.time() * 1000)


def nps(i: int, user: str) -> dict[str, object]:
    return {
        "event_id": f"e{i}",
        "type": "nps",
        "ts": NOW,
        "user_id": user,
        "properties": {"score": i % 11},
    }


def click(i: int, user: str) -> dict[str, object]:
    return {
        "event_id": f"c{i}",
        "type": "click",
        "ts": NOW,
        "user_id": user,
        "properties": {"element": "cta"},
    }


async def topics(broker: str, prefix: str) -> tuple[str, str]:
    inter, feed = f"{prefix}.interactions", f"{prefix}.feedback"
    await ensure_topics(broker, {inter: 4, feed: 4})
    return inter, feed


@pytest.mark.asyncio
async def test_batches_hold_one_partition_of_users_and_go_to_the_right_topic(
    broker: str, topic_prefix: str
) -> None:
    inter, feed = await topics(broker, topic_prefix)
    events = [nps(i, f"u{i % 13}") for i in range(60)] + [click(i, f"u{i}") for i in range(40)]
    async with Emitter(broker, interactions_topic=inter, feedback_topic=feed) as emitter:
        for event in events:
            await emitter.send(event)
    assert emitter.stats.events == 100
    for topic, expected in ((feed, 60), (inter, 40)):
        records = await wait_for(
            lambda t=topic, n=expected: _count(broker, t, n),
            timeout=20,
        )
        total = 0
        for record in records:
            batch = orjson.loads(record.value)
            assert isinstance(batch, list)
            for event in batch:
                assert partition_for(event["user_id"], 4) == record.partition
            assert record.key == batch[0]["user_id"].encode()
            total += len(batch)
        assert total == expected


async def _count(broker: str, topic: str, n: int) -> object:
    records = await read_topic(broker, topic)
    events = sum(len(orjson.loads(r.value)) for r in records)
    return records if events >= n else None


@pytest.mark.asyncio
async def test_a_lingering_batch_is_sent_without_flush(broker: str, topic_prefix: str) -> None:
    inter, feed = await topics(broker, topic_prefix)
    async with Emitter(broker, interactions_topic=inter, feedback_topic=feed, linger_s=0.05) as e:
        await e.send(nps(1, "u1"))
        records = await wait_for(lambda: _count(broker, feed, 1), timeout=10)
        assert [orjson.loads(r.value)[0]["event_id"] for r in records] == ["e1"]


@pytest.mark.asyncio
async def test_invalid_events_are_refused_before_sending(broker: str, topic_prefix: str) -> None:
    inter, feed = await topics(broker, topic_prefix)
    async with Emitter(broker, interactions_topic=inter, feedback_topic=feed) as emitter:
        with pytest.raises(InvalidEvent) as info:
            await emitter.send({**nps(1, "u1"), "properties": {"score": 11}})
    assert info.value.reason == "out_of_range"
    assert "properties.score" in str(info.value)
    assert emitter.stats.events == 0


@pytest.mark.asyncio
async def test_sync_emitter_unbatched(broker: str, topic_prefix: str) -> None:
    inter, feed = await topics(broker, topic_prefix)

    def produce() -> None:
        with SyncEmitter(broker, interactions_topic=inter, feedback_topic=feed, batch=False) as e:
            for i in range(5):
                e.send(click(i, f"u{i}"))

    await asyncio.to_thread(produce)
    records = await wait_for(lambda: _count_single(broker, inter, 5), timeout=20)
    for record in records:
        event = orjson.loads(record.value)
        assert record.key == event["user_id"].encode()
        assert partition_for(event["user_id"], 4) == record.partition


async def _count_single(broker: str, topic: str, n: int) -> object:
    records = await read_topic(broker, topic)
    return records if len(records) >= n else None


def test_emit_command_reports_bad_lines_and_exits_nonzero(
    broker: str, topic_prefix: str, tmp_path: Path
) -> None:
    inter, feed = asyncio.run(topics(broker, topic_prefix))
    config = tmp_path / "cx.yaml"
    config.write_text(f"topics:\n  interactions: {inter}\n  feedback: {feed}\n  partitions: 4\n")
    lines = [
        orjson.dumps(nps(1, "u1")).decode(),
        "{not json",
        "",
        orjson.dumps([click(1, "u2"), click(2, "u2")]).decode(),
        orjson.dumps({**nps(2, "u1"), "ts": "yesterday"}).decode(),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "CXSTREAM_BROKER": f"kafka://{broker}", "CXSTREAM_CONFIG": str(config)}
    proc = subprocess.run(
        [sys.executable, "-m", "cxstream.cli", "emit", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "line 2: malformed_json" in proc.stderr
    assert "line 5: bad_timestamp" in proc.stderr
    assert "sent 3 events" in proc.stderr
    assert "2 invalid lines skipped" in proc.stderr
