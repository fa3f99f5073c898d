"""The services a worker benchmark runs against: a local broker, a private Redis, workers.

Everything runs on this machine: the Tansu broker that the integration tests use
(`cxstream.kafka.LocalBroker`), a `redis-server` without persistence, and
`cxstream worker` subprocesses configured through the environment of SPEC section 6.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench.common import PYTHON, RESULTS, ROOT, Event, log, proc_status_kib
from cxstream.emit import Emitter
from cxstream.errors import InvalidEvent
from cxstream.events import FEEDBACK_TYPES
from cxstream.kafka import LocalBroker, ensure_topics
from cxstream.local import LocalRedis, free_port, local_worker_env

PARTITIONS = 8


class Redis(LocalRedis):
    """The run's private Redis (no persistence), with a client to read what workers publish."""

    def __init__(self) -> None:
        super().__init__()
        self.start()
        import redis

        self.client = redis.Redis(port=self.port)


class Worker:
    """One `cxstream worker` subprocess."""

    def __init__(
        self,
        *,
        broker: str,
        redis_url: str,
        config: Path,
        app_id: str,
        datadir: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        datadir.mkdir(parents=True, exist_ok=True)
        self.log_path = datadir / f"worker-{self.port}.log"
        env = local_worker_env(
            broker_url=f"kafka://{broker}",
            redis_url=redis_url,
            config=config,
            app_id=app_id,
            datadir=datadir,
            metrics_port=self.port,
        )
        env["PYTHONPATH"] = str(ROOT)
        env.update(extra_env or {})
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "cxstream.cli", "worker"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def get(self, path: str) -> tuple[int, str]:
        try:
            url = f"http://127.0.0.1:{self.port}{path}"
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    def healthy(self) -> bool:
        return self.get("/healthz")[0] == 200

    def events_total(self) -> float:
        total = 0.0
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith("cxstream_events_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def peak_rss_mib(self) -> float:
        """VmHWM of the worker process (its peak resident set)."""
        return self._status_mib("VmHWM")

    def rss_mib(self) -> float:
        return self._status_mib("VmRSS")

    def _status_mib(self, name: str) -> float:
        kib = proc_status_kib(self.proc.pid, name)
        return kib / 1024 if kib is not None else float("nan")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def consuming_since(self) -> float | None:
        """Epoch seconds of the log line saying the worker started consuming."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return None
        match = re.search(
            r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\D.*cxstream worker consuming", text
        )
        if match is None:
            return None
        return (
            time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
            + int(match.group(2)) / 1000
        )

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


class Stack:
    """A broker and a Redis for one benchmark run; `topics()` gives a fresh topic set."""

    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="cxbench-")
        self.root = Path(self.tmp.name)
        self.broker = LocalBroker().start()
        self.redis = Redis()
        self.workers: list[Worker] = []
        self._n = 0

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for worker in self.workers:
            worker.stop(10)
        self.redis.close()
        self.broker.close()
        self.tmp.cleanup()

    def topics(
        self, name: str, *, publish_interval_s: float = 1.0, partitions: int = PARTITIONS
    ) -> tuple[dict[str, str], Path]:
        """A fresh set of topics (created), `partitions` each, and a worker config naming them."""
        self._n += 1
        prefix = f"bench{self._n}-{name}"
        topics = {
            "interactions": f"{prefix}.interactions",
            "feedback": f"{prefix}.feedback",
            "alerts": f"{prefix}.alerts",
            "deadletter": f"{prefix}.deadletter",
        }
        config = self.root / f"{prefix}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "topics": {**topics, "partitions": partitions},
                    "publish": {"interval_s": publish_interval_s},
                }
            )
        )
        app_id = f"{prefix}-app"
        asyncio.run(
            ensure_topics(
                self.broker.bootstrap,
                {**{t: partitions for t in topics.values()}, f"{app_id}-partials": partitions},
            )
        )
        return {**topics, "app_id": app_id}, config

    def start_worker(
        self,
        topics: dict[str, str],
        config: Path,
        extra_env: dict[str, str] | None = None,
    ) -> Worker:
        worker = Worker(
            broker=self.broker.bootstrap,
            redis_url=self.redis.url,
            config=config,
            app_id=topics["app_id"],
            datadir=self.root / f"data-{topics['app_id']}-{len(self.workers)}",
            extra_env=extra_env,
        )
        self.workers.append(worker)
        return worker

    def stop_workers(self) -> None:
        logs = RESULTS / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for worker in self.workers:
            worker.stop()
            with contextlib.suppress(OSError):
                shutil.copy(worker.log_path, logs / f"{worker.log_path.parent.name}.log")
        self.workers.clear()
        self.redis.client.flushall()


# --------------------------------------------------------------------------- traffic


def topic_of(event: Event, topics: dict[str, str]) -> str:
    return topics["feedback"] if event["type"] in FEEDBACK_TYPES else topics["interactions"]


async def send_with_emitter(
    bootstrap: str, events: Sequence[Event], topics: dict[str, str], *, batch: bool
) -> dict[str, Any]:
    """Send `events` with the SDK (batched per partition, or one event per message);
    those it refuses as invalid are counted, not sent."""
    started = time.perf_counter()
    refused = 0
    async with Emitter(
        bootstrap,
        interactions_topic=topics["interactions"],
        feedback_topic=topics["feedback"],
        batch=batch,
    ) as emitter:
        for event in events:
            try:
                await emitter.send(event)
            except InvalidEvent:
                refused += 1
    return {
        "seconds": time.perf_counter() - started,
        "events": emitter.stats.events,
        "messages": emitter.stats.messages,
        "refused": refused,
    }


async def bare_consume(
    bootstrap: str, topic_names: Iterable[str], expected: int, timeout: float = 300
) -> dict[str, Any]:
    """A bare aiokafka consumer reading and parsing `expected` events from the start.

    The clock runs from the first record received to the last, so connection set-up
    is not counted (the worker's clock starts when it starts consuming, after its join).
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = []
        for topic in topic_names:
            parts = consumer.partitions_for_topic(topic)
            if parts is None:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or set()
            tps.extend(TopicPartition(topic, p) for p in sorted(parts))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loads = orjson.loads
        events = messages = 0
        first = 0.0
        deadline = time.monotonic() + timeout
        while events < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"bare consumer read {events:,} of {expected:,} events")
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batches.values():
                if not first:
                    first = time.perf_counter()
                for record in records:
                    doc = loads(record.value)
                    events += len(doc) if isinstance(doc, list) else 1
                messages += len(records)
        seconds = time.perf_counter() - first
    finally:
        await consumer.stop()
    return {
        "seconds": seconds,
        "events": events,
        "messages": messages,
        "events_per_s": events / seconds,
    }


def redis_events(redis: Redis, key: str = "cx:metrics:30d:all") -> int:
    value = redis.client.hget(key, "events")
    return int(value) if value is not None else 0


def watch_redis(
    redis: Redis,
    expected: int,
    workers: Sequence[Worker],
    timeout: float = 600,
    stall_timeout: float = 120,
) -> dict[str, Any]:
    """Poll the 30d:all events count until it is `expected`: first and last publish."""
    first_t = last_t = 0.0
    first_count = 0
    deadline = time.monotonic() + timeout
    samples: list[tuple[float, int]] = []
    stalled_since = time.monotonic()
    while True:
        count = redis_events(redis)
        now = time.perf_counter()
        if samples and samples[-1][1] != count:
            stalled_since = time.monotonic()
        if count and time.monotonic() - stalled_since > stall_timeout:
            raise TimeoutError(
                f"Redis shows {count:,} of {expected:,} events, unchanged for {stall_timeout:g} s"
            )
        if count and not first_t:
            first_t, first_count = now, count
        if not samples or samples[-1][1] != count:
            samples.append((now, count))
        if count >= expected:
            last_t = now
            last_wall = time.time()
            break
        if time.monotonic() > deadline:
            tails = "\n".join(w.log_tail() for w in workers)
            raise TimeoutError(f"Redis shows {count:,} of {expected:,} events\n{tails}")
        if any(w.proc.poll() is not None for w in workers):
            tails = "\n".join(w.log_tail() for w in workers)
            raise RuntimeError(f"a worker exited\n{tails}")
        time.sleep(0.02)
    # The first publish can come late and already hold most of a backlog (the
    # publisher shares the event loop with the stages), so the clock that counts
    # runs from the log line where a worker starts consuming to the publish that
    # shows every event; first to last publish is kept for comparison.
    starts = [s for s in (w.consuming_since() for w in workers) if s is not None]
    seconds = last_wall - min(starts) if starts else float("nan")
    publish_s = last_t - first_t
    return {
        "seconds": seconds,
        "events": expected,
        "events_per_s": expected / seconds if seconds > 0 else float("nan"),
        "last_publish_at": last_wall,
        "first_to_last_publish_s": publish_s,
        "first_publish_count": first_count,
        "first_to_last_publish_events_per_s": (
            (expected - first_count) / publish_s if publish_s > 0 else None
        ),
        "samples": [(round(t - first_t, 3), c) for t, c in samples],
    }


def wait_healthy(workers: Sequence[Worker], timeout: float = 60) -> float:
    started = time.monotonic()
    while not all(w.healthy() for w in workers):
        if time.monotonic() - started > timeout:
            raise TimeoutError("workers not healthy:\n" + "\n".join(w.log_tail() for w in workers))
        if any(w.proc.poll() is not None for w in workers):
            raise RuntimeError("a worker exited:\n" + "\n".join(w.log_tail() for w in workers))
        time.sleep(0.1)
    return time.monotonic() - started


__all__ = [
    "PARTITIONS",
    "Redis",
    "Stack",
    "Worker",
    "bare_consume",
    "log",
    "redis_events",
    "send_with_emitter",
    "topic_of",
    "wait_healthy",
    "watch_redis",
]
