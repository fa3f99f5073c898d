"""The dimension cap bounds Redis keys and Prometheus series, and survives restarts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cxstream.emit import Emitter

from infra import wait_for
from integration.test_worker import hash_of
from integration.worker import WorkerProcess, parse_samples, write_config

CAP = 5


def clicks(products: range) -> list[dict[str, object]]:
    now = int(time.time() * 1000) - 60_000
    return [
        {
            "event_id": f"c{i}",
            "type": "click",
            "ts": now,
            "user_id": f"u{i % 37}",
            "product": f"Product {i}",
            "properties": {"element": "cta"},
        }
        for i in products
    ]


@pytest.mark.asyncio
async def test_many_products_are_capped_and_keep_their_slots_after_restart(
    broker: str, redis_url: str, topic_prefix: str, app_id: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "cx.yaml", topic_prefix, limits={"max_dimension_values": CAP})
    client = aioredis.from_url(redis_url)

    def worker() -> WorkerProcess:
        return WorkerProcess(
            broker=broker,
            redis_url=redis_url,
            config=config,
            app_id=app_id,
            datadir=tmp_path / "data",
        )

    async def send(products: range) -> None:
        async with Emitter(
            broker,
            interactions_topic=f"{topic_prefix}.interactions",
            feedback_topic=f"{topic_prefix}.feedback",
        ) as emitter:
            for event in clicks(products):
                await emitter.send(event)

    async def product_scopes() -> dict[str, int]:
        keys = [k.decode() for k in await client.keys("cx:metrics:1h:product=*")]
        return {k.split(":", 3)[3]: int((await hash_of(client, k))["events"]) for k in keys}

    async def total_is(n: int) -> bool:
        return (await hash_of(client, "cx:metrics:1h:all")).get("events") == str(n)

    first = worker().start()
    try:
        await wait_for(first.healthy, timeout=60, message=first.log_tail)
        await send(range(300))
        await wait_for(lambda: total_is(300), timeout=60, message=first.log_tail)
        scopes = await product_scopes()
        admitted = {s for s in scopes if s != "product=other"}
        assert len(admitted) == CAP
        assert sum(scopes.values()) == 300
        assert scopes["product=other"] == 300 - CAP
        series = {
            dict(lbl)["product"]
            for (name, lbl), _ in parse_samples(first.metrics_text()).items()
            if name == "cx_events" and dict(lbl)["product"] != "all"
        }
        assert series == {s.split("=", 1)[1] for s in scopes}
    finally:
        assert first.stop() == 0, first.log_tail()

    second = worker().start()
    try:
        await wait_for(second.healthy, timeout=60, message=second.log_tail)
        await send(range(300, 400))
        await wait_for(lambda: total_is(400), timeout=60, message=second.log_tail)
        scopes = await product_scopes()
        assert {s for s in scopes if s != "product=other"} == admitted
        assert scopes["product=other"] == 400 - CAP
    finally:
        assert second.stop() == 0, second.log_tail()
        await client.aclose()
