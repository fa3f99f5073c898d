"""Two workers in one group: partitions move between them and the numbers stay exact.

Each worker has its own data dir, so a partition that moves finds no checkpoint (or a
stale one) on its new owner, which re-reads it up to the group's committed offset
before publishing anything of it. The last rebalance (the first worker rejoining)
typically lands after the last message was sent, so nothing but that re-read can
bring the moved partitions' numbers back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from cxstream.emit import Emitter
from cxstream.replay import replay_lines

from infra import wait_for
from integration.test_worker import assert_same, hash_of, realistic_events
from integration.worker import WorkerProcess, parse_samples, write_config


def owned_scopes(worker: WorkerProcess) -> set[str]:
    """Scopes with a cx_events series on this worker's /metrics (window 1h)."""
    scopes = set()
    for (name, labels), _ in parse_samples(worker.metrics_text()).items():
        if name != "cx_events":
            continue
        lbl = dict(labels)
        if lbl["window"] != "1h":
            continue
        dims = [(d, lbl[d]) for d in ("product", "channel", "touchpoint") if lbl[d] != "all"]
        scopes.add("all" if not dims else f"{dims[0][0]}={dims[0][1]}")
    return scopes


@pytest.mark.slow
@pytest.mark.asyncio
async def test_partitions_move_between_workers_and_metrics_stay_exact(
    broker: str, redis_url: str, topic_prefix: str, app_id: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "cx.yaml", topic_prefix)
    events = realistic_events(seed=21, hours=2, rate=0.3)
    thirds = [events[: len(events) // 3], events[len(events) // 3 : 2 * len(events) // 3]]
    thirds.append(events[2 * len(events) // 3 :])
    lines = [orjson.dumps(e) for e in events]
    client = aioredis.from_url(redis_url)

    def worker(name: str) -> WorkerProcess:
        return WorkerProcess(
            broker=broker,
            redis_url=redis_url,
            config=config,
            app_id=app_id,
            datadir=tmp_path / name,
        )

    async def send(part: list[dict[str, Any]]) -> None:
        async with Emitter(
            broker,
            interactions_topic=f"{topic_prefix}.interactions",
            feedback_topic=f"{topic_prefix}.feedback",
            max_batch_events=25,
        ) as emitter:
            for event in part:
                await emitter.send(event)

    async def counted(upto: int) -> bool:
        n = replay_lines(lines[:upto]).report["accepted"]
        return (await hash_of(client, "cx:metrics:30d:all")).get("events") == str(n)

    def logs() -> str:
        return f"first:\n{first.log_tail()}\nsecond:\n{second.log_tail()}"

    async def exact(upto: int) -> None:
        """The published `all` hashes equal a replay of the first `upto` events."""
        await wait_for(lambda: counted(upto), timeout=90, message=logs)
        for window in ("1h", "24h", "30d"):
            published = await hash_of(client, f"cx:metrics:{window}:all")
            report = replay_lines(lines[:upto], now_ms=int(published["window_end"])).report
            assert_same(published, report["windows"][window]["all"], f"{window}:all")

    def scopes_of(upto: int) -> set[str]:
        return set(replay_lines(lines[:upto]).report["windows"]["1h"])

    first, second = worker("a"), worker("b")
    try:
        first.start()
        await wait_for(first.healthy, timeout=60, message=first.log_tail)
        await send(thirds[0])
        await exact(len(thirds[0]))

        second.start()  # joins mid-ingest: the group rebalances
        await send(thirds[1])
        await wait_for(second.healthy, timeout=60, message=logs)
        upto = len(thirds[0]) + len(thirds[1])
        await exact(upto)

        # The first leaves; no message follows, so only the second's re-reading of
        # the partitions it takes over can keep the numbers whole.
        assert first.stop() == 0, first.log_tail()
        sent = scopes_of(upto)
        await wait_for(lambda: owned_scopes(second) >= sent, timeout=90, message=logs)
        await exact(upto)

        first = worker("a").start()  # back, with a checkpoint that is now stale
        await wait_for(first.healthy, timeout=60, message=logs)

        async def both_own_something() -> bool:
            return bool(owned_scopes(first)) and bool(owned_scopes(second))

        await wait_for(both_own_something, timeout=90, message=logs)
        await exact(upto)

        await send(thirds[2])
        await exact(len(events))
        # Each scope's gauges are on exactly one worker: the one that owns it now.
        mine, theirs = owned_scopes(first), owned_scopes(second)
        assert not (mine & theirs)
        assert mine | theirs == scopes_of(len(events))
    finally:
        await client.aclose()
        first.stop()
        second.stop()
