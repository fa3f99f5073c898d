"""The test infrastructure itself, against the real broker and Redis.

Also the Faust probe: a two-agent app with a RocksDB table, run as a worker
process, killed with SIGKILL and restarted (docs/faust-on-tansu.md).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from cxstream.kafka import (
    BrokerError,
    LocalBroker,
    correct_end_offsets,
    ensure_topics,
    free_port,
    wait_for_kafka,
)
from cxstream.local import LocalRedis, LocalRedisError, local_worker_env

from infra import RedisServer, read_topic, wait_for

PROBE_APP = Path(__file__).with_name("faust_probe_app.py")


async def _partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
    finally:
        await admin.close()


# --------------------------------------------------------------------------- broker


async def test_broker_round_trips_messages(broker: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}.rt"
    await ensure_topics(broker, {topic: 3})
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        for i in range(6):
            await producer.send_and_wait(topic, f"v{i}".encode(), key=f"k{i % 2}".encode())
    finally:
        await producer.stop()

    records = await read_topic(broker, topic)

    assert sorted(r.value for r in records) == [b"v0", b"v1", b"v2", b"v3", b"v4", b"v5"]
    by_key: dict[bytes, list[bytes]] = {}
    for r in records:
        by_key.setdefault(r.key, []).append(r.value)
    # One key, one partition: its messages keep their order.
    assert by_key == {b"k0": [b"v0", b"v2", b"v4"], b"k1": [b"v1", b"v3", b"v5"]}
    assert len({r.partition for r in records if r.key == b"k0"}) == 1


async def test_ensure_topics_creates_the_partition_counts_asked_for(
    broker: str, topic_prefix: str
) -> None:
    wanted = {f"{topic_prefix}.eight": 8, f"{topic_prefix}.one": 1}

    await ensure_topics(broker, wanted)
    await ensure_topics(broker, wanted)  # existing topics with the same count are fine

    assert await _partition_counts(broker, list(wanted)) == wanted


async def test_ensure_topics_refuses_an_existing_topic_with_another_count(
    broker: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}.four"
    await ensure_topics(broker, {topic: 4})

    with pytest.raises(BrokerError, match=rf"topic {topic} has 4 partitions, expected 8"):
        await ensure_topics(broker, {topic: 8})


async def test_read_topic_of_a_missing_topic_is_empty_and_does_not_create_it(
    broker: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}.missing"

    assert await read_topic(broker, topic) == []
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        assert topic not in await admin.list_topics()
    finally:
        await admin.close()


def test_local_broker_stop_ends_the_process_and_frees_the_port() -> None:
    broker = LocalBroker()
    with broker:
        assert broker.running
        with socket.create_connection((broker.host, broker.port), timeout=2):
            pass
    assert not broker.running
    with pytest.raises(OSError), socket.create_connection((broker.host, broker.port), timeout=2):
        pass


def test_local_broker_that_cannot_start_says_why() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = LocalBroker(taken.getsockname()[1], startup_timeout_s=10)

        with pytest.raises(BrokerError, match=r"Tansu broker on 127\.0\.0\.1:\d+ exited"):
            broker.start()

    assert not broker.running


def test_wait_for_kafka(local_broker: LocalBroker) -> None:
    wait_for_kafka(local_broker.bootstrap, timeout_s=5)
    with pytest.raises(BrokerError, match=r"no Kafka broker answered on 127\.0\.0\.1:"):
        wait_for_kafka(f"127.0.0.1:{free_port()}", timeout_s=0.3)


async def test_tansu_under_reports_end_offsets_and_correct_end_offsets_finds_the_end(
    broker: str, topic_prefix: str
) -> None:
    # The quirk apply_broker_compat() exists for: three records sent as one
    # batch get offsets 0..2, ListOffsets says the partition ends at 1.
    topic = f"{topic_prefix}.ends"
    await ensure_topics(broker, {topic: 1})
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        batch = producer.create_batch()
        for i in range(3):
            batch.append(key=None, value=f"b{i}".encode(), timestamp=None)
        await (await producer.send_batch(batch, topic, partition=0))
    finally:
        await producer.stop()
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=broker)
    await consumer.start()
    try:
        reported = await consumer.end_offsets([tp])
    finally:
        await consumer.stop()

    corrected = await correct_end_offsets(
        AIOKafkaConsumer(bootstrap_servers=broker), reported, timeout_s=10
    )

    assert reported == {tp: 1}
    assert corrected == {tp: 3}
    assert [r.value for r in await read_topic(broker, topic)] == [b"b0", b"b1", b"b2"]


# --------------------------------------------------------------------------- redis


def test_redis_fixture_serves_and_restarts_empty_on_the_same_port(
    redis_proc: RedisServer, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.hset("cx:metrics:1h:all", mapping={"events": "3"})
        assert client.hgetall("cx:metrics:1h:all") == {b"events": b"3"}

        redis_proc.kill()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        redis_proc.restart_empty()

        assert redis_proc.url == redis_url
        assert client.ping()
        assert client.hgetall("cx:metrics:1h:all") == {}
    finally:
        client.close()


def test_a_redis_that_cannot_start_says_why_and_leaves_nothing_running(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = LocalRedis(taken.getsockname()[1], directory=tmp_path)
        with pytest.raises(LocalRedisError, match=r"exited with 1; its log:\n.*(?s:.*)bind"):
            server.start()
    assert not server.running
    assert server.pid is None


def test_worker_env_keeps_the_users_kafka_settings_out(tmp_path: Path) -> None:
    env = local_worker_env(
        broker_url="kafka://127.0.0.1:1",
        redis_url="redis://127.0.0.1:2/0",
        config=tmp_path / "c.yaml",
        app_id="app",
        datadir=tmp_path,
        metrics_port=3,
        base={"PATH": "/bin", "CXSTREAM_KAFKA_SASL_PASSWORD": "s3cret", "CXSTREAM_BROKER": "x"},
    )
    assert env["PATH"] == "/bin"
    assert "CXSTREAM_KAFKA_SASL_PASSWORD" not in env
    assert env["CXSTREAM_BROKER"] == "kafka://127.0.0.1:1"
    assert env["CXSTREAM_METRICS_PORT"] == "3"


def test_redis_url_fixture_starts_empty(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.dbsize() == 0
    finally:
        client.close()


# --------------------------------------------------------------------------- faust probe


class ProbeWorker:
    """`faust_probe_app.py worker` as a subprocess; its table is read from its log."""

    def __init__(
        self,
        broker: LocalBroker,
        app_id: str,
        prefix: str,
        datadir: Path,
        log_path: Path,
        *,
        compat: bool,
    ) -> None:
        env = dict(
            os.environ,
            PROBE_BROKER=broker.url,
            PROBE_APP_ID=app_id,
            PROBE_PREFIX=prefix,
            PROBE_DATADIR=str(datadir),
            PYTHONUNBUFFERED="1",
        )
        env.pop("CXSTREAM_BROKER_COMPAT", None)
        if compat:
            env["CXSTREAM_BROKER_COMPAT"] = "tansu"
        self.log_path = log_path
        self.started = time.monotonic()
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(PROBE_APP), "worker", "--without-web", "--loglevel=info"],
                env=env,
                cwd=str(log_path.parent),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def state(self) -> dict[str, int]:
        """The table as last printed (`STATE {...}`), {} before the first print."""
        last: dict[str, int] = {}
        for line in self.log().splitlines():
            at = line.find("STATE {")
            if at >= 0:
                last = json.loads(line[at + len("STATE ") :].strip())
        return last

    def total(self) -> int:
        """Sum of the table; raises if the worker died, so waits fail fast."""
        if self.proc.poll() is not None:
            raise AssertionError(
                f"probe worker exited with {self.proc.returncode}:\n{self.log()[-3000:]}"
            )
        return sum(self.state().values())

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Graceful stop (SIGTERM: the member leaves the group), SIGKILL after 30 s."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def reap(self) -> None:
        if self.proc.poll() is None:
            self.kill9()


@pytest.fixture
def probes() -> Any:
    started: list[ProbeWorker] = []

    class Spawner:
        def __call__(self, *args: Any, **kwargs: Any) -> ProbeWorker:
            worker = ProbeWorker(*args, **kwargs)
            started.append(worker)
            return worker

    yield Spawner()
    for worker in started:
        worker.reap()


async def _produce(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for event in events:
            await producer.send(topic, json.dumps(event).encode(), key=event["user"].encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Sum of the group's committed offsets on `topic`.

    A group-less read through a consumer of that group id: the admin client's
    list_consumer_group_offsets cannot decode Tansu's OffsetFetch answer.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        total = 0
        for p in range(partitions):
            total += await consumer.committed(TopicPartition(topic, p)) or 0
        return total
    finally:
        await consumer.stop()


async def _run_until_committed(
    local_broker: LocalBroker, app_id: str, prefix: str, datadir: Path, log: Path, spawn: Any
) -> tuple[ProbeWorker, Counter[str], float]:
    """Start a compat worker, feed it 2,001 events, wait until they are committed."""
    await ensure_topics(
        local_broker.bootstrap,
        {f"{prefix}.in": 8, f"{prefix}.mid": 8, f"{app_id}-counts-changelog": 8},
    )
    worker = spawn(local_broker, app_id, prefix, datadir, log, compat=True)
    events = [{"user": "u0", "n": 1}]
    await _produce(local_broker.bootstrap, f"{prefix}.in", events)
    await wait_for(lambda: worker.total() == 1, timeout=30, message="first event")
    first_event_s = time.monotonic() - worker.started

    burst = [{"user": f"u{i % 20}", "n": 1} for i in range(2000)]
    await _produce(local_broker.bootstrap, f"{prefix}.in", burst)
    events += burst
    await wait_for(lambda: worker.total() == 2001, timeout=30, message="2,001 events")
    await wait_for(
        _is_committed(local_broker.bootstrap, app_id, f"{prefix}.mid", 2001),
        timeout=20,
        message="offsets committed",
    )
    expected: Counter[str] = Counter()
    for e in events:
        expected[e["user"]] += e["n"]
    return worker, expected, first_event_s


def _is_committed(bootstrap: str, group: str, topic: str, count: int) -> Any:
    async def check() -> bool:
        return await _committed(bootstrap, group, topic, 8) == count

    return check


@pytest.mark.slow
async def test_faust_table_recovers_after_kill9_with_broker_compat(
    local_broker: LocalBroker, topic_prefix: str, app_id: str, tmp_path: Path, probes: Any
) -> None:
    first, expected, first_event_s = await _run_until_committed(
        local_broker, app_id, topic_prefix, tmp_path / "data-a", tmp_path / "w1.log", probes
    )
    first.kill9()

    # Same datadir: RocksDB holds the state, the changelog's real end is checked.
    restarted_at = time.monotonic()
    second = probes(
        local_broker, app_id, topic_prefix, tmp_path / "data-a", tmp_path / "w2.log", compat=True
    )
    await _produce(local_broker.bootstrap, f"{topic_prefix}.in", [{"user": "u0", "n": 1}])
    expected["u0"] += 1
    await wait_for(lambda: second.total() == 2002, timeout=45, message="restart after kill -9")
    restart_s = time.monotonic() - restarted_at
    assert second.state() == dict(expected)
    assert "broker compat: corrected changelog ends" in second.log()
    second.stop()

    # Empty datadir: everything comes back from the changelog alone.
    third = probes(
        local_broker, app_id, topic_prefix, tmp_path / "data-b", tmp_path / "w3.log", compat=True
    )
    await wait_for(lambda: third.total() == 2002, timeout=30, message="recovery from changelog")
    assert third.state() == dict(expected)
    print(
        f"first event after {first_event_s:.1f} s; back after kill -9 in {restart_s:.1f} s; "
        f"recovered from the changelog alone in {time.monotonic() - third.started:.1f} s"
    )


@pytest.mark.slow
async def test_faust_recovery_without_broker_compat_crashes_on_tansu(
    local_broker: LocalBroker, topic_prefix: str, app_id: str, tmp_path: Path, probes: Any
) -> None:
    # Shows why apply_broker_compat() exists: if this starts failing, Tansu's
    # ListOffsets has been fixed and the compat may be dropped.
    first, _, _ = await _run_until_committed(
        local_broker, app_id, topic_prefix, tmp_path / "data", tmp_path / "w1.log", probes
    )
    first.kill9()

    second = probes(
        local_broker, app_id, topic_prefix, tmp_path / "data", tmp_path / "w2.log", compat=False
    )
    await wait_for(lambda: second.proc.poll() is not None, timeout=45, message="worker exit")

    assert second.proc.returncode != 0
    assert "ConsistencyError" in second.log()
    assert "than the last offset in that topic" in second.log()
