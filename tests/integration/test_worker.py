"""The streaming worker end to end: real broker, real Redis, real /metrics.

Every assertion compares with `replay` evaluated at the same `now` as the published
hash (`window_end`), and with counts of what the test itself sent.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from cxstream.emit import Emitter
from cxstream.events import MAX_EVENT_BYTES
from cxstream.generate import generate_events
from cxstream.replay import replay_lines

from infra import read_topic, wait_for
from integration.worker import WorkerProcess, parse_samples, write_config

HOUR = 3_600_000


def realistic_events(seed: int, hours: float, rate: float) -> list[dict[str, Any]]:
    start = int(time.time() * 1000) - int(hours * HOUR)
    return list(
        generate_events(
            seed=seed, start_ms=start, duration_s=hours * 3600, rate=rate, users=120, messy=True
        )
    )


def bad_messages() -> list[tuple[str, bytes]]:
    """One message per reject reason, with the reason expected."""
    good = {"event_id": "b", "type": "nps", "ts": int(time.time() * 1000), "user_id": "ub"}
    future = int(time.time() * 1000) + 3_600_000
    cases: list[tuple[str, Any]] = [
        ("malformed_json", b'{"event_id": "x", '),
        ("malformed_json", b'{"event_id": NaN}'),
        ("not_an_object", b"42"),
        ("too_large", {**good, "event_id": "big", "pad": "x" * (70 * 1024)}),
        ("missing_field", {**good, "event_id": "m1", "properties": {}}),
        ("bad_type", {**good, "event_id": "t1", "properties": {"score": "9"}}),
        ("unknown_type", {**good, "event_id": "u1", "type": "teleport"}),
        ("out_of_range", {**good, "event_id": "r1", "properties": {"score": 11}}),
        ("bad_timestamp", {**good, "event_id": "t2", "ts": "noon", "properties": {"score": 1}}),
        ("future_timestamp", {**good, "event_id": "f1", "ts": future, "properties": {"score": 1}}),
    ]
    return [(r, v if isinstance(v, bytes) else orjson.dumps(v)) for r, v in cases]


async def hash_of(client: Any, key: str) -> dict[str, str]:
    raw = await client.hgetall(key)
    return {k.decode(): v.decode() for k, v in raw.items()}


def assert_same(published: dict[str, str], expected: dict[str, Any], where: str) -> None:
    fields = {k: v for k, v in published.items() if k not in ("updated_at", "window_end")}
    assert set(fields) == set(expected), f"{where}: fields differ"
    for name, value in expected.items():
        got = float(fields[name])
        if isinstance(value, int):
            assert fields[name] == str(value), f"{where}.{name}: {fields[name]} != {value}"
        else:
            # Partials of several partitions are summed in another order than replay's.
            assert math.isclose(got, value, rel_tol=1e-12, abs_tol=1e-12), (
                f"{where}.{name}: {got} != {value}"
            )


@pytest.mark.asyncio
async def test_worker_matches_replay_and_dead_letters_every_reason(
    broker: str, redis_url: str, topic_prefix: str, app_id: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "cx.yaml", topic_prefix)
    worker = WorkerProcess(
        broker=broker,
        redis_url=redis_url,
        config=config,
        app_id=app_id,
        datadir=tmp_path / "data",
    ).start()
    client = aioredis.from_url(redis_url)
    try:
        await wait_for(worker.healthy, timeout=60, message=worker.log_tail)
        events = realistic_events(seed=7, hours=3, rate=0.25)
        singles, batched = events[::2], events[1::2]
        bad = bad_messages()
        interactions = f"{topic_prefix}.interactions"
        producer = AIOKafkaProducer(bootstrap_servers=broker, max_request_size=2**21)
        await producer.start()
        try:
            for event in singles:
                topic = f"{topic_prefix}.feedback" if event["type"] in (
                    "nps", "csat", "ces"
                ) else interactions
                await producer.send(topic, orjson.dumps(event), key=event["user_id"].encode())
            for _, value in bad:
                await producer.send(interactions, value, key=b"ub")
            await producer.flush()
        finally:
            await producer.stop()
        async with Emitter(
            broker,
            interactions_topic=interactions,
            feedback_topic=f"{topic_prefix}.feedback",
        ) as emitter:
            for event in batched:
                await emitter.send(event)
        assert emitter.stats.messages < len(batched)  # batches, not one message per event

        lines = [orjson.dumps(e) for e in events]
        expected_accepted = replay_lines(lines).report["accepted"]

        async def all_counted() -> bool:
            h = await hash_of(client, "cx:metrics:30d:all")
            return h.get("events") == str(expected_accepted)

        await wait_for(all_counted, timeout=60, message=worker.log_tail)

        # Every hash equals replay at that hash's own window_end.
        by_now: dict[int, dict[str, Any]] = {}
        keys = sorted(k.decode() for k in await client.keys("cx:metrics:*"))
        assert keys
        for key in keys:
            _, _, window, scope = key.split(":", 3)
            published = await hash_of(client, key)
            now = int(published["window_end"])
            if now not in by_now:
                by_now[now] = replay_lines(lines, now_ms=now).report
            report = by_now[now]
            assert scope in report["windows"][window], f"{key} not in replay"
            assert_same(published, report["windows"][window][scope], key)
        any_report = next(iter(by_now.values()))
        assert len(keys) == sum(len(s) for s in any_report["windows"].values())

        # Features and exit pages of the 1h/all window.
        published = await hash_of(client, "cx:metrics:1h:all")
        report = by_now[int(published["window_end"])]
        features = await hash_of(client, "cx:features:1h:all")
        assert {k: float(v) for k, v in features.items()} == pytest.approx(
            report["features"]["1h"]["all"], rel=1e-12
        )
        exits = await client.zrange("cx:top:1h:all:exit_pages", 0, -1, withscores=True)
        assert sorted((k.decode(), int(v)) for k, v in exits) == sorted(
            (k, v) for k, v in report["top"]["1h"]["all"]["exit_pages"]
        )

        # Dead letters: one per bad message, with its reason and the SPEC fields.
        def dead_letters() -> Any:
            return read_topic(broker, f"{topic_prefix}.deadletter")

        records = await wait_for(
            lambda: _with_count(dead_letters, len(bad)), timeout=30, message="dead letters"
        )
        letters = [orjson.loads(r.value) for r in records]
        assert Counter(d["reason"] for d in letters) == Counter(r for r, _ in bad)
        for letter in letters:
            assert set(letter) == {
                "reason", "error", "source_topic", "partition", "offset", "index", "raw", "at"
            }
            assert letter["source_topic"] == interactions
            assert letter["index"] is None
        big = next(d for d in letters if d["reason"] == "too_large")
        assert len(big["raw"]) > MAX_EVENT_BYTES

        # Prometheus: gauges equal the Redis values; counters count what was sent.
        samples = parse_samples(worker.metrics_text())
        labels = frozenset(
            {"window": "1h", "product": "all", "channel": "all", "touchpoint": "all"}.items()
        )
        assert samples[("cx_events", labels)] == float(published["events"])
        if "nps" in published:
            assert samples[("cx_nps_score", labels)] == pytest.approx(float(published["nps"]))
        rejected = {
            dict(lbl)["reason"]: v
            for (name, lbl), v in samples.items()
            if name == "cxstream_events_rejected_total"
        }
        assert rejected == {r: float(n) for r, n in Counter(r for r, _ in bad).items()}
        accepted_by_type = sum(
            v for (name, _), v in samples.items() if name == "cxstream_events_total"
        )
        duplicates = samples[("cxstream_events_duplicate_total", frozenset())]
        assert accepted_by_type == expected_accepted
        assert accepted_by_type + duplicates == len(events)
    finally:
        await client.aclose()
        code = worker.stop()
    assert code == 0, worker.log_tail()


async def _with_count(read: Any, n: int) -> Any:
    records = await read()
    return records if len(records) >= n else None


@pytest.mark.asyncio
async def test_worker_restart_keeps_state_exactly(
    broker: str, redis_url: str, topic_prefix: str, app_id: str, tmp_path: Path
) -> None:
    """kill -9 after the first half, restart on the same data dir, then the rest."""
    config = write_config(tmp_path / "cx.yaml", topic_prefix)
    common = dict(
        broker=broker, redis_url=redis_url, config=config, app_id=app_id, datadir=tmp_path / "d"
    )
    events = realistic_events(seed=11, hours=2, rate=0.3)
    half = len(events) // 2
    client = aioredis.from_url(redis_url)
    lines = [orjson.dumps(e) for e in events]

    async def send(part: list[dict[str, Any]]) -> None:
        async with Emitter(
            broker,
            interactions_topic=f"{topic_prefix}.interactions",
            feedback_topic=f"{topic_prefix}.feedback",
            max_batch_events=20,
        ) as emitter:
            for event in part:
                await emitter.send(event)

    async def counted(n: int) -> bool:
        return (await hash_of(client, "cx:metrics:30d:all")).get("events") == str(n)

    try:
        first = WorkerProcess(**common).start()  # type: ignore[arg-type]
        await wait_for(first.healthy, timeout=60, message=first.log_tail)
        await send(events[:half])
        n_first = replay_lines(lines[:half]).report["accepted"]
        await wait_for(lambda: counted(n_first), timeout=60, message=first.log_tail)
        first.kill()
        second = WorkerProcess(**common).start()  # type: ignore[arg-type]
        try:
            await send(events[half:])
            n_all = replay_lines(lines).report["accepted"]
            await wait_for(lambda: counted(n_all), timeout=90, message=second.log_tail)
            await asyncio.sleep(0)  # let no stale tick interleave with the reads below
            published = await hash_of(client, "cx:metrics:24h:all")
            report = replay_lines(lines, now_ms=int(published["window_end"])).report
            assert_same(published, report["windows"]["24h"]["all"], "24h:all")
        finally:
            assert second.stop() == 0, second.log_tail()
    finally:
        await client.aclose()
