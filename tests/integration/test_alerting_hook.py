"""The worker's alert hook with the real broker and Redis, driven tick by tick.

Two hooks stand for two workers of one deployment: they share the alerts
topic and `cx:alerts:active`, and a scope moves from one to the other. The
worker itself is replaced by the few attributes the hook uses; the topic,
Redis and the restore read are real.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from cxstream.alerting import FORGET_AFTER_MS, REDIS_REFRESH_MS, AlertPublisher, attach_alerts
from cxstream.config import AlertRule, Settings, Topics
from cxstream.engine import Bucket, C, compute_fields
from cxstream.kafka import ensure_topics
from cxstream.sinks import Published
from cxstream.sinks.prometheus import PipelineMetrics
from cxstream.sinks.redis import RedisSink

from infra import RedisServer, read_topic

RULE = AlertRule(name="nps_low", metric="nps", window="1h", below=20.0, min_n=10)


def nps_item(scope: str, good: bool, now: int) -> Published:
    b = Bucket()
    v = b.values
    v[C.NPS_N] = 20
    v[C.NPS_PROMOTERS], v[C.NPS_DETRACTORS] = (15, 1) if good else (1, 15)
    return Published(
        window="1h",
        scope=scope,
        fields=compute_fields(b, active_subscribers=0),
        features={},
        pages=[],
        exit_pages=[],
        top_features=[],
        window_end_ms=now,
        total=b,
    )


class KafkaTopic:
    """What the hook needs of a Faust topic: `send` that returns a delivery future."""

    def __init__(self, producer: AIOKafkaProducer, name: str) -> None:
        self.producer, self.name = producer, name

    async def send(self, *, key: bytes, value: bytes) -> Any:
        return await self.producer.send(self.name, value, key=key)


def worker(broker: str, topic: str, redis_url: str, producer: AIOKafkaProducer) -> Any:
    settings = Settings(
        broker=f"kafka://{broker}",
        redis_url=redis_url,
        topics=Topics(alerts=topic),
        alerts=(RULE,),
    )
    return SimpleNamespace(
        settings=settings,
        metrics=PipelineMetrics(CollectorRegistry()),
        redis=RedisSink(aioredis.from_url(redis_url)),
        topics={"alerts": KafkaTopic(producer, topic)},
        on_publish=[],
    )


async def active(client: Any) -> dict[str, str]:
    raw = await client.hgetall("cx:alerts:active")
    return {k.decode(): orjson.loads(v)["alert_id"] for k, v in raw.items()}


async def messages(broker: str, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in await read_topic(broker, topic)]


@pytest.mark.asyncio
async def test_two_workers_share_the_hash_and_hand_a_scope_over(
    broker: str, redis_url: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}.alerts"
    await ensure_topics(broker, {topic: 2})
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    client = aioredis.from_url(redis_url)
    try:
        wa, wb = (worker(broker, topic, redis_url, producer) for _ in range(2))
        a, b = attach_alerts(wa), attach_alerts(wb)
        assert isinstance(a, AlertPublisher) and isinstance(b, AlertPublisher)
        assert wa.on_publish == [a.on_publish]
        t0 = int(time.time() * 1000)
        await a.on_publish([nps_item("all", False, t0), nps_item("product=web", False, t0)], t0)
        await b.on_publish([nps_item("product=app", False, t0)], t0)
        fired = {m["scope"]: m["alert_id"] for m in await messages(broker, topic)}
        assert set(fired) == {"all", "product=web", "product=app"}
        expected = {f"nps_low|1h|{s}": alert_id for s, alert_id in fired.items()}
        assert await active(client) == expected
        # A's periodic rewrite of its own part leaves B's entry alone.
        t1 = t0 + REDIS_REFRESH_MS
        await a.on_publish([nps_item("all", False, t1), nps_item("product=web", False, t1)], t1)
        assert await active(client) == expected

        # product=web moves to B: restored from the topic, not fired again.
        t2 = t1 + 1000
        await b.on_publish(
            [nps_item("product=web", False, t2), nps_item("product=app", False, t2)], t2
        )
        assert len(await messages(broker, topic)) == 3
        assert set(b.engine.active()) == {"nps_low|1h|product=web", "nps_low|1h|product=app"}
        t3 = t2 + FORGET_AFTER_MS + 1
        await a.on_publish([nps_item("all", False, t3)], t3)
        assert set(a.engine.active()) == {"nps_low|1h|all"}
        assert await active(client) == expected  # forgetting is not resolving

        # B resolves it with A's alert_id.
        await b.on_publish(
            [nps_item("product=web", True, t3), nps_item("product=app", False, t3)], t3
        )
        [resolved] = [m for m in await messages(broker, topic) if m["state"] == "resolved"]
        assert resolved["scope"] == "product=web"
        assert resolved["alert_id"] == fired["product=web"]
        del expected["nps_low|1h|product=web"]
        assert await active(client) == expected
        assert len(await messages(broker, topic)) == 4
    finally:
        await producer.stop()
        await client.aclose()


@pytest.mark.asyncio
async def test_redis_outage_is_counted_and_repaired(
    broker: str, redis_url: str, redis_proc: RedisServer, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}.alerts"
    await ensure_topics(broker, {topic: 1})
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        w = worker(broker, topic, redis_url, producer)
        hook = attach_alerts(w)
        assert hook is not None
        redis_proc.kill()
        t0 = int(time.time() * 1000)
        await hook.on_publish([nps_item("all", False, t0)], t0)  # does not raise
        [fired] = await messages(broker, topic)
        assert fired["state"] == "firing"
        errors = w.metrics.sink_errors.labels("redis")._value.get()
        assert errors >= 1
        redis_proc.start()  # back, and empty
        await hook.on_publish([nps_item("all", False, t0 + 1000)], t0 + 1000)
        client = aioredis.from_url(redis_url)
        try:
            assert await active(client) == {"nps_low|1h|all": fired["alert_id"]}
        finally:
            await client.aclose()
        assert w.metrics.sink_errors.labels("redis")._value.get() == errors
    finally:
        await producer.stop()


def test_no_rules_no_hook() -> None:
    w = SimpleNamespace(settings=Settings(), on_publish=[])
    assert attach_alerts(w) is None  # type: ignore[arg-type]
    assert w.on_publish == []
