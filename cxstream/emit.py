"""The producer SDK: validate events, then send them keyed, batched per partition.

    from cxstream import Emitter

    async with Emitter("localhost:9092") as emitter:
        await emitter.send({"event_id": "e1", "type": "nps", "ts": 1795766400000,
                            "user_id": "u1", "properties": {"score": 9}})

`SyncEmitter` offers the same for code without an event loop. Events are checked
with the worker's own validation before they leave, so a producer learns of a bad
event at once (an `InvalidEvent` naming the field) instead of in the dead-letter
topic. By default events are batched (SPEC section 1): one JSON array per message,
all for users of one partition, which is how high volumes are sent.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from cxstream.errors import InvalidEvent
from cxstream.events import (
    FEEDBACK_TYPES,
    MAX_EVENT_BYTES,
    MAX_MESSAGE_BYTES,
    Event,
    Rejection,
    validate_event,
)

__all__ = ["Emitter", "EmitterStats", "SyncEmitter", "partition_for"]

DEFAULT_BATCH_EVENTS = 500
# Room for the brackets and commas around the events of a batch.
_BATCH_BUDGET = MAX_MESSAGE_BYTES - 1024

T = TypeVar("T")


def partition_for(user_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives a `user_id` key."""
    from aiokafka.partitioner import murmur2

    return int(murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class EmitterStats:
    events: int = 0
    messages: int = 0


@dataclass(slots=True)
class _Pending:
    events: list[bytes] = field(default_factory=list)
    size: int = 0
    key: bytes = b""


class Emitter:
    """Async producer of cx events (validated, keyed by `user_id`, batched by default).

    `bootstrap` is `host:port[,host:port]` or a `kafka://` URL; `security` is what
    `cxstream.kafka.kafka_security_settings` returns. `batch=False` sends one event
    per message (what any Kafka producer does). A batch is sent when it holds
    `max_batch_events`, nears 1 MiB, or has waited `linger_s` seconds.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        interactions_topic: str = "cx.interactions",
        feedback_topic: str = "cx.feedback",
        batch: bool = True,
        max_batch_events: int = DEFAULT_BATCH_EVENTS,
        linger_s: float = 0.1,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        if max_batch_events < 1:
            raise ValueError("max_batch_events must be >= 1")
        if linger_s <= 0:
            raise ValueError("linger_s must be > 0")
        self.linger_s = linger_s
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False
        self.bootstrap = bootstrap.replace("kafka://", "").replace(";", ",")
        self.interactions_topic = interactions_topic
        self.feedback_topic = feedback_topic
        self.batch = batch
        self.max_batch_events = max_batch_events
        self.security = dict(security or {})
        self.stats = EmitterStats()
        self._producer: Any = None
        self._partitions: dict[str, int] = {}
        self._pending: dict[tuple[str, int], _Pending] = {}

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            max_request_size=2 * MAX_MESSAGE_BYTES,
            linger_ms=5,
            **self.security,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # a half-started producer still holds its client
            raise
        self._producer = producer
        self._closing = False
        self._flusher = asyncio.create_task(self._flush_lingering())

    async def _flush_lingering(self) -> None:
        # A batch waits at most `linger_s` for more events, so a slow producer's
        # events still leave promptly. Never cancelled mid-send: `stop` asks it to end
        # and waits, so no batch it has taken from the queue is lost.
        while not self._closing:
            await asyncio.sleep(self.linger_s)
            for topic, partition in list(self._pending):
                await self._send_batch(topic, partition)

    async def stop(self) -> None:
        if self._producer is None:
            return
        if self._flusher is not None:
            self._closing = True
            await self._flusher
            self._flusher = None
        try:
            await self.flush()
        finally:
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> Emitter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def topic_for(self, event_type: str) -> str:
        return self.feedback_topic if event_type in FEEDBACK_TYPES else self.interactions_topic

    async def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            parts = await self._producer.partitions_for(topic)
            count = self._partitions[topic] = len(parts)
        return count

    async def send(self, event: Mapping[str, Any]) -> Event:
        """Validate and queue (or, unbatched, send) one event; raises InvalidEvent."""
        if self._producer is None:
            raise RuntimeError("Emitter not started: use `async with Emitter(...)`")
        checked = validate_event(dict(event), now_ms())
        data = orjson.dumps(event)
        if len(data) > MAX_EVENT_BYTES:
            raise InvalidEvent("too_large", f"event: {len(data)} bytes, limit 64 KiB")
        topic = self.topic_for(checked.type)
        key = checked.user_id.encode()
        if not self.batch:
            await self._producer.send(topic, data, key=key)
            self.stats.events += 1
            self.stats.messages += 1
            return checked
        partition = partition_for(checked.user_id, await self._partition_count(topic))
        pending = self._pending.setdefault((topic, partition), _Pending(key=key))
        if pending.events and pending.size + len(data) + 1 > _BATCH_BUDGET:
            await self._send_batch(topic, partition)
            pending = self._pending.setdefault((topic, partition), _Pending(key=key))
        pending.events.append(data)
        pending.size += len(data) + 1
        if len(pending.events) >= self.max_batch_events:
            await self._send_batch(topic, partition)
        return checked

    async def _send_batch(self, topic: str, partition: int) -> None:
        pending = self._pending.pop((topic, partition), None)
        if pending is None or not pending.events:
            return
        value = b"[" + b",".join(pending.events) + b"]"
        await self._producer.send(topic, value, key=pending.key, partition=partition)
        self.stats.events += len(pending.events)
        self.stats.messages += 1

    async def flush(self) -> None:
        """Send every queued batch and wait until the broker has them."""
        for topic, partition in list(self._pending):
            await self._send_batch(topic, partition)
        if self._producer is not None:
            await self._producer.flush()


class SyncEmitter:
    """`Emitter` for synchronous code: runs it on a private event loop thread."""

    def __init__(self, bootstrap: str, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._emitter = Emitter(bootstrap, **kwargs)
        self._call(self._emitter.start())

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def stats(self) -> EmitterStats:
        return self._emitter.stats

    def send(self, event: Mapping[str, Any]) -> Event:
        return self._call(self._emitter.send(event))

    def flush(self) -> None:
        self._call(self._emitter.flush())

    def close(self) -> None:
        try:
            self._call(self._emitter.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()

    def __enter__(self) -> SyncEmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def line_events(line: bytes) -> list[dict[str, Any]] | Rejection:
    """The event objects of one JSON line (an event or a batch), or why it is not one."""
    from cxstream.events import decode_message

    items = decode_message(line, now_ms())
    for item in items:
        if isinstance(item, Rejection):
            return item
    doc = orjson.loads(line)
    return doc if isinstance(doc, list) else [doc]
