"""Alerts end to end: a real worker, broker and Redis; restart in between.

A `below` rule with `min_n` on NPS over 1h: answers well below the threshold
fire exactly one alert (topic, Redis, counter); a restarted worker restores it
from the topic instead of firing again; promoters resolve it exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from cxstream.emit import Emitter

from infra import read_topic, wait_for, wait_for_messages
from integration.worker import WorkerProcess, parse_samples, write_config

RULE = {
    "name": "nps_low",
    "metric": "nps",
    "window": "1h",
    "scope": "all",
    "below": 20,
    "min_n": 10,
    "severity": "warning",
}
KEY = "nps_low|1h|all"
SPEC_FIELDS = {
    "alert_id", "rule", "state", "severity", "metric", "window", "scope",
    "value", "threshold", "n", "at", "message",
}  # fmt: skip


def answers(prefix: str, scores: list[int]) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    return [
        {
            "event_id": f"{prefix}{i}",
            "type": "nps",
            "ts": now - 1000 - i,
            "user_id": f"{prefix}-user-{i}",
            "product": "web",
            "properties": {"score": score},
        }
        for i, score in enumerate(scores)
    ]


async def send(broker: str, prefix: str, events: list[dict[str, Any]]) -> None:
    async with Emitter(
        broker,
        interactions_topic=f"{prefix}.interactions",
        feedback_topic=f"{prefix}.feedback",
    ) as emitter:
        for event in events:
            await emitter.send(event)


async def active_alerts(client: Any) -> dict[str, Any]:
    raw = await client.hgetall("cx:alerts:active")
    return {k.decode(): orjson.loads(v) for k, v in raw.items()}


def alerts_total(worker: WorkerProcess) -> float:
    samples = parse_samples(worker.metrics_text())
    labels = frozenset({"rule": "nps_low", "severity": "warning"}.items())
    return samples.get(("cxstream_alerts_total", labels), 0.0)


@pytest.mark.asyncio
async def test_below_rule_fires_once_survives_a_restart_and_resolves_once(
    broker: str, redis_url: str, topic_prefix: str, app_id: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "cx.yaml", topic_prefix, alerts=[RULE])
    common: dict[str, Any] = dict(
        broker=broker, redis_url=redis_url, config=config, app_id=app_id, datadir=tmp_path / "d"
    )
    topic = f"{topic_prefix}.alerts"
    client = aioredis.from_url(redis_url)
    try:
        # 12 detractors and 3 passives: NPS -80 from 15 answers, well below 20.
        first = WorkerProcess(**common).start()
        try:
            await wait_for(first.healthy, timeout=60, message=first.log_tail)
            await send(broker, topic_prefix, answers("bad", [0, 1, 2, 3, 4, 5, 6] * 2)[:12])
            await send(broker, topic_prefix, answers("meh", [7, 8, 7]))
            [record] = await wait_for_messages(broker, topic, 1, timeout=30)
            firing = orjson.loads(record.value)
            assert record.key == KEY.encode()
            assert set(firing) == SPEC_FIELDS
            assert {k: firing[k] for k in SPEC_FIELDS - {"alert_id", "at"}} == {
                "rule": "nps_low",
                "state": "firing",
                "severity": "warning",
                "metric": "nps",
                "window": "1h",
                "scope": "all",
                "value": -80.0,
                "threshold": 20.0,
                "n": 15,
                "message": "NPS -80 (n=15) below 20 over 1h for all",
            }
            assert firing["alert_id"] and isinstance(firing["at"], int)
            assert await wait_for(lambda: active_alerts(client), timeout=10) == {KEY: firing}
            assert alerts_total(first) == 1.0
        finally:
            assert first.stop() == 0, first.log_tail()

        # Restart on the same data dir: the firing alert is restored, not fired again.
        await client.delete("cx:alerts:active")
        second = WorkerProcess(**common).start()
        try:
            await wait_for(second.healthy, timeout=60, message=second.log_tail)
            restored = await wait_for(lambda: active_alerts(client), timeout=30)
            assert restored == {KEY: firing}  # the old alert_id: restored from the topic

            # 40 promoters lift NPS to 100 * (40 - 12) / 55 = 50.9: resolved, once.
            await send(broker, topic_prefix, answers("good", [9, 10] * 20))
            records = await wait_for_messages(broker, topic, 2, timeout=30)
            assert [r.key for r in records] == [KEY.encode()] * 2
            resolved = orjson.loads(records[1].value)
            assert set(resolved) == SPEC_FIELDS
            assert resolved["state"] == "resolved"
            assert resolved["alert_id"] == firing["alert_id"]
            assert (resolved["n"], resolved["value"]) == (55, pytest.approx(2800 / 55))
            assert resolved["message"] == (
                "resolved: NPS 50.91 (n=55) no longer below 20 over 1h for all"
            )

            async def cleared() -> bool:
                return await active_alerts(client) == {}

            await wait_for(cleared, timeout=15)
            assert alerts_total(second) == 0.0  # a restored alert is no new firing
            assert len(await read_topic(broker, topic)) == 2
        finally:
            assert second.stop() == 0, second.log_tail()
    finally:
        await client.aclose()
