"""10,000 bad messages among valid traffic: metrics exact, every rejection accounted for.

Bad input never stops the worker and never changes a metric (SPEC section 5): the
valid events' hashes equal `replay` of the valid events alone, the dead-letter topic
holds exactly one record per rejected event with its reason, and
`cxstream_events_rejected_total` counts the same.
"""

from __future__ import annotations

import base64
import random
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from cxstream.events import MAX_MESSAGE_BYTES
from cxstream.generate import generate_bad_lines
from cxstream.replay import replay_lines

from infra import read_topic, wait_for
from integration.test_faults import (
    Expected,
    assert_exact,
    counted_30d,
    sample_sum,
    send_all,
    worker_for,
)
from integration.test_worker import realistic_events
from integration.worker import parse_samples, write_config

SEED = 4242
BAD_LINES = 9_000
RANDOM_MESSAGES = 1_000


def random_garbage(rng: random.Random, n: int) -> list[bytes]:
    """Random bytes that cannot start a JSON text: always `malformed_json`.

    Half start with 0xFF, so they are not UTF-8 either and dead-letter as base64.
    """
    out = []
    for i in range(n):
        lead = b"\xff" if i % 2 == 0 else rng.choice([b"}", b"]", b"x", b"\x00", b"'"])
        out.append(lead + rng.randbytes(rng.randint(0, 2000)))
    return out


def oversized() -> list[tuple[str, bytes]]:
    """Messages at the size limits, with the reason each must get."""
    return [
        # One event of almost 1 MiB, all control characters: its dead letter's `raw`,
        # JSON-escaped, would be six times as long if it were kept whole.
        ("too_large", b"\x01" * (MAX_MESSAGE_BYTES - 16)),
        # Over 1 MiB: refused before any parsing.
        ("too_large", b"[" + b"0," * (MAX_MESSAGE_BYTES // 2) + b"0]"),
        # A batch of 1 MiB that is not JSON at its very end.
        ("malformed_json", b"[" + b'"\\u0001",' * (MAX_MESSAGE_BYTES // 10) + b"}"),
    ]


@pytest.mark.slow
@pytest.mark.asyncio
async def test_ten_thousand_bad_messages_among_valid_ones(
    broker: str, redis_url: str, topic_prefix: str, app_id: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    config = write_config(tmp_path / "cx.yaml", topic_prefix)
    interactions, feedback = f"{topic_prefix}.interactions", f"{topic_prefix}.feedback"
    events = realistic_events(seed=SEED % 100, hours=2, rate=0.3)
    # `future_timestamp` lines lie more than 5 minutes after this: after the worker's
    # clock too, however long the test takes. The other faults come before `ts`.
    bad_now = int(time.time() * 1000) + 10 * 60_000
    bad: list[tuple[str, bytes]] = [
        (reason, line.encode())
        for reason, line in generate_bad_lines(SEED, BAD_LINES, now_ms=bad_now)
    ]
    bad += [("malformed_json", data) for data in random_garbage(rng, RANDOM_MESSAGES)]
    bad += oversized()
    rng.shuffle(bad)
    expected_reasons = Counter(reason for reason, _ in bad)
    assert sum(expected_reasons.values()) >= 10_000
    garbage_b64 = {
        base64.b64encode(data).decode() for reason, data in bad if data.startswith(b"\xff")
    }

    expected = Expected([orjson.dumps(e) for e in events])
    client = aioredis.from_url(redis_url)
    worker = worker_for(broker, redis_url, config, app_id, tmp_path / "data").start()
    try:
        await wait_for(worker.healthy, timeout=60, message=worker.log_tail)
        producer = AIOKafkaProducer(
            bootstrap_servers=broker, max_request_size=4 * MAX_MESSAGE_BYTES, linger_ms=5
        )
        await producer.start()
        try:
            # Records on a topic the worker's consumer subscribes for Faust (its leader
            # election), not for cxstream: ignored, never a crash.
            for i in range(3):
                await producer.send(f"{app_id}-__assignor-__leader", b"not an event %d" % i)
            # Bad messages and valid batches interleaved, on both input topics.
            chunks = 10
            for i in range(chunks):
                part = bad[i * len(bad) // chunks : (i + 1) * len(bad) // chunks]
                for _, value in part:
                    topic = interactions if rng.random() < 0.7 else feedback
                    await producer.send(topic, value, key=f"u{rng.randrange(500)}".encode())
                await producer.flush()
                share = events[i * len(events) // chunks : (i + 1) * len(events) // chunks]
                await send_all(broker, topic_prefix, share)
        finally:
            await producer.stop()

        await wait_for(
            lambda: counted_30d(client, expected), timeout=90, interval=0.5, message=worker.log_tail
        )
        await assert_exact(client, expected)
        assert worker.alive and worker.healthy()

        # Pipeline counters: every rejection counted under its reason, nothing else moved.
        def rejected_now() -> dict[str, float]:
            return {
                dict(labels)["reason"]: value
                for (name, labels), value in parse_samples(worker.metrics_text()).items()
                if name == "cxstream_events_rejected_total"
            }

        await wait_for(
            lambda: rejected_now() == {r: float(n) for r, n in expected_reasons.items()},
            timeout=30,
            interval=0.5,
            message=lambda: f"rejected {rejected_now()} != {dict(expected_reasons)}",
        )
        assert sample_sum(worker, "cxstream_events_total") == expected.accepted

        # The dead-letter topic: one record per rejected event, with its reason.
        records = await read_topic(broker, f"{topic_prefix}.deadletter", timeout_s=60)
        letters = [orjson.loads(r.value) for r in records]
        assert Counter(d["reason"] for d in letters) == expected_reasons
        assert {d["source_topic"] for d in letters} <= {interactions, feedback}
        where = {(d["source_topic"], d["partition"], d["offset"], d["index"]) for d in letters}
        assert len(where) == len(letters)  # each event of each message once
        assert garbage_b64 <= {d["raw"] for d in letters if d["reason"] == "malformed_json"}
        assert max(len(r.value) for r in records) < MAX_MESSAGE_BYTES

        # Bad input changes no metric: replay of everything equals replay of the valid.
        everything = [orjson.dumps(e) for e in events] + [value for _, value in bad]
        now = int(time.time() * 1000)
        assert (
            replay_lines(everything, now_ms=now).report["windows"]
            == expected.report(now)["windows"]
        )
    finally:
        await client.aclose()
        code = worker.stop()
    assert code == 0, worker.log_tail()
