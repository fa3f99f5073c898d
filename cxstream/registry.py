"""The deployment-wide registry of admitted dimension values.

SPEC caps each dimension at `limits.max_dimension_values` values, first come first
served across the whole deployment and remembered across restarts. The order of
arrival is the order of a single-partition topic, `{app_id}-dimensions`: a worker
that meets new values appends claims to it and waits until it has read its own
claims back; every worker admits exactly the first values of the log, so all agree,
and a restarted worker reads the same log again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar

import orjson

from cxstream.engine import DimensionCap
from cxstream.errors import CxStreamError

__all__ = ["DimensionRegistry", "RegistryError", "registry_topic_name"]

log = logging.getLogger("cxstream.registry")
T = TypeVar("T")

CLAIM_TIMEOUT_S = 60.0
# A claim or a start-up step that waits this long says so in the log: events wait
# with it, and a worker that processes nothing and logs nothing would leave an
# operator guessing.
WAIT_WARNING_S = 10.0


class RegistryError(CxStreamError):
    """The registry cannot confirm a claim: events cannot be capped consistently."""


def registry_topic_name(app_id: str) -> str:
    return f"{app_id}-dimensions"


class DimensionRegistry:
    """Keeps `cap` equal to the first values of the registry topic."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        cap: DimensionCap,
        *,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.cap = cap
        self.security = dict(security or {})
        self.position = 0  # next offset to read
        self._advanced = asyncio.Condition()
        self._consumer: Any = None
        self._producer: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the log to its end before any event is processed."""
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, **self.security)
        await self._patiently("connecting its producer", self._producer.start())
        # A claim waits for its own write to be read back: a short fetch wait bounds
        # that on brokers that hold a fetch for its whole wait even when data arrives.
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            **self.security,
        )
        await self._patiently("connecting its consumer", self._consumer.start())
        tp = TopicPartition(self.topic, 0)
        self._consumer.assign([tp])
        await self._patiently("finding the start of the log", self._consumer.seek_to_beginning(tp))
        self._task = asyncio.create_task(self._read())
        # A marker written now and read back proves the whole log before it was read.
        await self._append([("", "")])

    async def _patiently(self, what: str, step: Awaitable[T]) -> T:
        """Await a step of start-up or a claim, saying so every WAIT_WARNING_S while it
        waits (the clients and `_read_back` time out on their own)."""
        task = asyncio.ensure_future(step)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=WAIT_WARNING_S)
                if done:
                    return task.result()
                log.warning(
                    "dimension registry: %s for %s has taken %.0f s; events wait for it",
                    what,
                    self.topic,
                    loop.time() - started,
                )
        finally:
            task.cancel()  # only if this wait itself is cancelled

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def _read(self) -> None:
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        try:
                            dimension, value = orjson.loads(record.value)
                        except (orjson.JSONDecodeError, TypeError, ValueError):
                            dimension = ""
                        if dimension:
                            self.cap.restore(dimension, [value])
                        self.position = record.offset + 1
                if batches:
                    async with self._advanced:
                        self._advanced.notify_all()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("dimension registry: reading %s stopped: %r", self.topic, exc)
            raise
        finally:
            # Whoever waits for a claim must not wait for a reader that is gone.
            async with self._advanced:
                self._advanced.notify_all()

    def _reader_gone(self) -> BaseException | None:
        task = self._task
        if task is None or not task.done():
            return None
        if task.cancelled():
            return asyncio.CancelledError()
        return task.exception() or RegistryError("the reader ended")

    async def _append(self, pairs: Sequence[tuple[str, str]]) -> None:
        last = None
        for dimension, value in pairs:
            last = await self._producer.send(
                self.topic, orjson.dumps([dimension, value]), partition=0
            )
        if last is None:
            return
        offset = (await last).offset
        await self._patiently(f"reading offset {offset} back", self._read_back(offset))

    async def _read_back(self, offset: int) -> None:
        """Return once the reader is past `offset`; raise if it stopped or took too long."""
        async with self._advanced:
            try:
                await asyncio.wait_for(
                    self._advanced.wait_for(
                        lambda: self.position > offset or self._reader_gone() is not None
                    ),
                    CLAIM_TIMEOUT_S,
                )
            except TimeoutError:
                raise RegistryError(
                    f"dimension registry: offset {offset} of {self.topic} not read back "
                    f"in {CLAIM_TIMEOUT_S:.0f} s (read up to {self.position})"
                ) from None
            if self.position <= offset:
                gone = self._reader_gone()
                raise RegistryError(
                    f"dimension registry: cannot read {self.topic} back ({gone!r})"
                ) from gone

    async def claim(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Claim new values; on return the cap holds the deployment's decision."""
        if pairs:
            await self._append(pairs)
