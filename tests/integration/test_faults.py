"""Faults on purpose: kill -9 the worker, lose or hang Redis, freeze the broker.

Each test sends realistic traffic while something breaks and then compares every
published hash exactly with `cxstream replay` evaluated at that hash's own
`window_end`: nothing may be lost or counted twice, whatever broke.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from cxstream.emit import Emitter
from cxstream.kafka import LocalBroker
from cxstream.replay import replay_lines

from infra import RedisServer, wait_for
from integration.test_worker import assert_same, hash_of, realistic_events
from integration.worker import WorkerProcess, parse_samples, write_config

PUBLISH_INTERVAL_S = 0.5


# --------------------------------------------------------------------------- helpers


def sample_sum(worker: WorkerProcess, name: str, **labels: str) -> float:
    """Sum of the samples `name` on the worker's /metrics whose labels include `labels`."""
    total = 0.0
    for (sample, lbl), value in parse_samples(worker.metrics_text()).items():
        if sample == name and all(dict(lbl).get(k) == v for k, v in labels.items()):
            total += value
    return total


def events_read(worker: WorkerProcess) -> float:
    """Events this worker process has judged: accepted + duplicates + rejected."""
    text = worker.metrics_text()
    if not text:
        return 0.0
    total = 0.0
    for (sample, _), value in parse_samples(text).items():
        if sample in (
            "cxstream_events_total",
            "cxstream_events_duplicate_total",
            "cxstream_events_rejected_total",
        ):
            total += value
    return total


def gauge(worker: WorkerProcess, name: str, window: str) -> float | None:
    """A `cx_*` gauge of the `all` scope on the worker's /metrics (None: no sample)."""
    labels = {"window": window, "product": "all", "channel": "all", "touchpoint": "all"}
    return parse_samples(worker.metrics_text()).get((name, frozenset(labels.items())))


class Traffic:
    """Sends events in the background at about `rate` events per second (pacing traffic).

    Events go through the Emitter in small batches, so there are many messages and
    many offsets at which a fault can strike. `sent` counts the events the broker
    acknowledged.
    """

    def __init__(
        self,
        broker: str,
        prefix: str,
        events: Sequence[dict[str, Any]],
        *,
        rate: float,
        chunk: int = 40,
        batch_events: int = 10,
    ) -> None:
        self.broker = broker
        self.prefix = prefix
        self.events = list(events)
        self.rate = rate
        self.chunk = chunk
        self.batch_events = batch_events
        self.sent = 0
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with Emitter(
            self.broker,
            interactions_topic=f"{self.prefix}.interactions",
            feedback_topic=f"{self.prefix}.feedback",
            max_batch_events=self.batch_events,
        ) as emitter:
            started = time.monotonic()
            for i in range(0, len(self.events), self.chunk):
                part = self.events[i : i + self.chunk]
                for event in part:
                    await emitter.send(event)
                await emitter.flush()
                self.sent += len(part)
                # Pacing, not waiting for a condition: the next chunk is due at this time.
                due = started + self.sent / self.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))

    def start(self) -> Traffic:
        self.task = asyncio.create_task(self._run())
        return self

    @property
    def done(self) -> bool:
        return self.task is not None and self.task.done()

    async def wait(self, timeout: float = 120) -> None:
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout)

    async def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def send_all(broker: str, prefix: str, events: Sequence[dict[str, Any]]) -> None:
    async with Emitter(
        broker,
        interactions_topic=f"{prefix}.interactions",
        feedback_topic=f"{prefix}.feedback",
        max_batch_events=25,
    ) as emitter:
        for event in events:
            await emitter.send(event)


class Expected:
    """What replay says about `lines`, cached per evaluation time."""

    def __init__(self, lines: Sequence[bytes]) -> None:
        self.lines = list(lines)
        self._reports: dict[int | None, dict[str, Any]] = {}

    def report(self, now_ms: int | None = None) -> dict[str, Any]:
        if now_ms not in self._reports:
            self._reports[now_ms] = replay_lines(self.lines, now_ms=now_ms).report
        return self._reports[now_ms]

    @property
    def accepted(self) -> int:
        return int(self.report()["accepted"])

    def scopes(self) -> set[str]:
        return set(self.report()["windows"]["30d"])


async def counted_30d(client: Any, expected: Expected) -> bool:
    """Every scope's 30d hash exists and counts its events (cheap; all events are recent)."""
    want = {s: v["events"] for s, v in expected.report()["windows"]["30d"].items()}
    keys = [k.decode() for k in await client.keys("cx:metrics:30d:*")]
    if {k.split(":", 3)[3] for k in keys} != set(want):
        return False
    for scope, events in want.items():
        if (await hash_of(client, f"cx:metrics:30d:{scope}")).get("events") != str(events):
            return False
    return True


async def mismatches(client: Any, expected: Expected, scopes: set[str] | None = None) -> list[str]:
    """Differences between Redis and replay (every window; `scopes`, or every scope)."""
    problems: list[str] = []
    report = expected.report()
    want_keys = {
        f"cx:metrics:{w}:{s}"
        for w, by_scope in report["windows"].items()
        for s in by_scope
        if scopes is None or s in scopes
    }
    have_keys = {k.decode() for k in await client.keys("cx:metrics:*")}
    if scopes is not None:
        have_keys = {k for k in have_keys if k.split(":", 3)[3] in scopes}
    if have_keys != want_keys:
        problems.append(
            f"keys: missing {sorted(want_keys - have_keys)[:5]}, "
            f"unexpected {sorted(have_keys - want_keys)[:5]}"
        )
    for key in sorted(want_keys & have_keys):
        _, _, window, scope = key.split(":", 3)
        published = await hash_of(client, key)
        if "window_end" not in published:
            problems.append(f"{key}: no window_end")
            continue
        at = expected.report(int(published["window_end"]))
        try:
            assert scope in at["windows"][window], f"{key} not in replay"
            assert_same(published, at["windows"][window][scope], key)
        except AssertionError as exc:
            problems.append(str(exc))
    return problems


async def assert_exact(
    client: Any, expected: Expected, scopes: set[str] | None = None, timeout: float = 20
) -> None:
    """Wait until Redis equals replay (values can be mid-publish), then insist on it."""
    last: list[str] = []

    async def exact() -> bool:
        nonlocal last
        try:
            last = await mismatches(client, expected, scopes)
        except RedisConnectionError as exc:  # a connection from before a Redis restart
            last = [f"redis: {exc}"]
        return not last

    await wait_for(exact, timeout=timeout, interval=0.5, message=lambda: "; ".join(last[:5]))


def some_scopes(expected: Expected, rng: random.Random, n: int = 6) -> set[str]:
    """`all` plus a few scopes of each dimension (seeded)."""
    scopes = sorted(expected.scopes() - {"all"})
    return {"all", *rng.sample(scopes, min(n, len(scopes)))}


def worker_for(
    broker: str, redis_url: str, config: Path, app_id: str, datadir: Path, **kw: Any
) -> WorkerProcess:
    return WorkerProcess(
        broker=broker, redis_url=redis_url, config=config, app_id=app_id, datadir=datadir, **kw
    )


# --------------------------------------------------------------------------- crash


CRASH_SEED = 20261127


@pytest.mark.slow
@pytest.mark.asyncio
async def test_kill_9_three_times_mid_ingest_loses_and_doubles_nothing(
    broker: str, redis_url: str, topic_prefix: str, app_id: str, tmp_path: Path
) -> None:
    rng = random.Random(CRASH_SEED)
    config = write_config(tmp_path / "cx.yaml", topic_prefix)
    events = realistic_events(seed=CRASH_SEED % 1000, hours=3, rate=0.5)
    expected = Expected([orjson.dumps(e) for e in events])
    client = aioredis.from_url(redis_url)
    datadir = tmp_path / "data"
    worker = worker_for(broker, redis_url, config, app_id, datadir).start()
    # About 60 s of traffic: each restart (group join included) takes 8-15 s, and a new
    # process only reaches its kill point while it has events to judge.
    traffic = Traffic(broker, topic_prefix, events, rate=90)
    kills: list[tuple[int, float]] = []
    try:
        await wait_for(worker.healthy, timeout=60, message=worker.log_tail)
        traffic.start()
        for _ in range(3):
            # A random point of the ingest: after this process judged a random number of
            # events (it may be catching up after the last kill, or following live traffic).
            threshold = rng.randint(60, 600)
            await wait_for(
                lambda w=worker, n=threshold: events_read(w) >= n,
                timeout=60,
                interval=0.02,
                message=worker.log_tail,
            )
            kills.append((threshold, events_read(worker)))
            worker.kill()
            worker = worker_for(broker, redis_url, config, app_id, datadir).start()
        await traffic.wait()
        await wait_for(
            lambda: counted_30d(client, expected), timeout=90, interval=0.5, message=worker.log_tail
        )
        await assert_exact(client, expected, some_scopes(expected, rng))
        # The pipeline counters of the last process never count what its state already had.
        assert sample_sum(worker, "cxstream_events_total") <= expected.accepted
    finally:
        await traffic.cancel()
        await client.aclose()
        code = worker.stop()
    assert len(kills) == 3
    assert code == 0, worker.log_tail()


# --------------------------------------------------------------------------- Redis


def _signal_redis(redis_proc: RedisServer, sig: signal.Signals) -> None:
    assert redis_proc.pid is not None
    os.kill(redis_proc.pid, sig)


@pytest.mark.slow
@pytest.mark.asyncio
async def test_redis_hang_and_outage_never_stall_the_worker_and_an_empty_redis_is_refilled(
    broker: str,
    redis_url: str,
    redis_proc: RedisServer,
    topic_prefix: str,
    app_id: str,
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path / "cx.yaml", topic_prefix)
    events = realistic_events(seed=33, hours=3, rate=0.45)
    first, last = events[: len(events) * 3 // 4], events[len(events) * 3 // 4 :]
    client = aioredis.from_url(redis_url)
    worker = worker_for(broker, redis_url, config, app_id, tmp_path / "data").start()
    traffic = Traffic(broker, topic_prefix, first, rate=150)
    stopped = False
    try:
        await wait_for(worker.healthy, timeout=60, message=worker.log_tail)
        traffic.start()
        await wait_for(
            lambda: _has_events(client), timeout=30, interval=0.2, message=worker.log_tail
        )

        # Redis hangs (SIGSTOP: connections stay open, nothing answers). The worker
        # must keep consuming *and* publishing to Prometheus: Redis calls time out.
        _signal_redis(redis_proc, signal.SIGSTOP)
        stopped = True
        read_then = events_read(worker)
        gauge_then = gauge(worker, "cx_events", "30d") or 0.0
        await wait_for(
            lambda: sample_sum(worker, "cxstream_sink_errors_total", sink="redis") >= 1,
            timeout=30,
            interval=0.2,
            message="sink errors while Redis hangs",
        )
        # Twice: a publisher stuck on the first Redis call would move the gauge once at most.
        for _ in range(2):
            await wait_for(
                lambda then=gauge_then: (gauge(worker, "cx_events", "30d") or 0.0) >= then + 100,
                timeout=20,
                interval=0.1,
                message=lambda then=gauge_then: (
                    f"cx_events gauge moving while Redis hangs: {then} -> "
                    f"{gauge(worker, 'cx_events', '30d')}, sent {traffic.sent}"
                ),
            )
            gauge_then = gauge(worker, "cx_events", "30d") or 0.0
        assert events_read(worker) > read_then

        # Redis dies: still consuming, errors counted.
        redis_proc.kill()
        stopped = False
        errors_then = sample_sum(worker, "cxstream_sink_errors_total", sink="redis")
        read_then = events_read(worker)
        await wait_for(
            lambda: events_read(worker) >= read_then + 100,
            timeout=30,
            interval=0.2,
            message="consuming while Redis is down",
        )
        await wait_for(
            lambda: sample_sum(worker, "cxstream_sink_errors_total", sink="redis") > errors_then,
            timeout=10,
            interval=0.2,
        )
        await traffic.wait()
        expected = Expected([orjson.dumps(e) for e in first])
        await wait_for(
            lambda: sample_sum(worker, "cxstream_events_total") >= expected.accepted,
            timeout=60,
            interval=0.2,
            message=worker.log_tail,
        )
        assert worker.alive

        # An empty Redis on the same port: every key comes back, exact, within a few ticks.
        redis_proc.restart_empty()
        back = time.monotonic()
        want = {
            f"cx:metrics:{w}:{s}"
            for w, by_scope in expected.report()["windows"].items()
            for s in by_scope
        }

        async def refilled() -> bool:
            try:
                return {k.decode() for k in await client.keys("cx:metrics:*")} == want
            except RedisConnectionError:  # the test's own connection from before
                return False

        await wait_for(
            refilled,
            timeout=10 * PUBLISH_INTERVAL_S,
            interval=0.05,
            message=lambda: f"every key back within 10 publish intervals; {worker.log_tail()}",
        )
        assert time.monotonic() - back <= 10 * PUBLISH_INTERVAL_S
        await assert_exact(client, expected)

        # And it goes on exactly afterwards.
        await send_all(broker, topic_prefix, last)
        expected = Expected([orjson.dumps(e) for e in events])
        await wait_for(
            lambda: counted_30d(client, expected), timeout=60, interval=0.5, message=worker.log_tail
        )
        await assert_exact(client, expected)
        assert sample_sum(worker, "cxstream_events_total") == expected.accepted
    finally:
        await traffic.cancel()
        if stopped:
            with contextlib.suppress(ProcessLookupError):
                _signal_redis(redis_proc, signal.SIGCONT)
        if not redis_proc.running:
            redis_proc.start()
        await client.aclose()
        code = worker.stop()
    assert code == 0, worker.log_tail()


async def _has_events(client: Any) -> bool:
    return bool((await hash_of(client, "cx:metrics:30d:all")).get("events"))


# --------------------------------------------------------------------------- broker


@pytest.mark.slow
@pytest.mark.asyncio
async def test_broker_frozen_for_20_s_then_the_worker_reconnects_and_loses_nothing(
    redis_url: str, topic_prefix: str, app_id: str, tmp_path: Path
) -> None:
    """SIGSTOP the broker (a private one: the session's is shared) for 20 s, then SIGCONT."""
    config = write_config(tmp_path / "cx.yaml", topic_prefix)
    events = realistic_events(seed=44, hours=2, rate=0.4)
    parts = [events[: len(events) // 3], events[len(events) // 3 : 2 * len(events) // 3]]
    parts.append(events[2 * len(events) // 3 :])
    client = aioredis.from_url(redis_url)
    with LocalBroker() as own:
        worker = worker_for(own.bootstrap, redis_url, config, app_id, tmp_path / "data").start()
        sender: asyncio.Task[None] | None = None
        frozen = False
        try:
            await wait_for(worker.healthy, timeout=60, message=worker.log_tail)
            pid = worker.proc.pid if worker.proc else None
            await send_all(own.bootstrap, topic_prefix, parts[0])
            first = Expected([orjson.dumps(e) for e in parts[0]])
            await wait_for(
                lambda: counted_30d(client, first),
                timeout=60,
                interval=0.5,
                message=worker.log_tail,
            )

            assert own.pid is not None
            os.killpg(own.pid, signal.SIGSTOP)
            frozen = True
            # Producers keep sending while it is frozen (their requests wait in the socket).
            sender = asyncio.create_task(send_all(own.bootstrap, topic_prefix, parts[1]))
            # The fault lasts 20 s; meanwhile the worker must stay up.
            thawed_at = time.monotonic() + 20
            while time.monotonic() < thawed_at:
                assert worker.alive, worker.log_tail()
                await asyncio.sleep(0.5)
            os.killpg(own.pid, signal.SIGCONT)
            frozen = False

            await asyncio.wait_for(sender, 60)
            await send_all(own.bootstrap, topic_prefix, parts[2])
            expected = Expected([orjson.dumps(e) for e in events])
            await wait_for(
                lambda: counted_30d(client, expected),
                timeout=90,
                interval=0.5,
                message=worker.log_tail,
            )
            await assert_exact(client, expected)
            assert worker.alive and worker.proc is not None and worker.proc.pid == pid
            assert worker.healthy()
        finally:
            if frozen and own.pid is not None:
                os.killpg(own.pid, signal.SIGCONT)
            if sender is not None and not sender.done():
                sender.cancel()
            await client.aclose()
            code = worker.stop()
    assert code == 0, worker.log_tail()
