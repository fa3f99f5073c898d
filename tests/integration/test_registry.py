"""The dimension registry on a real broker: claims read back, and a stall is never silent."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from aiokafka import TopicPartition

from cxstream import registry as registry_module
from cxstream.engine import DimensionCap
from cxstream.kafka import ensure_topics, free_port
from cxstream.registry import DimensionRegistry, RegistryError, registry_topic_name

from infra import wait_for


async def started_registry(broker: str, app_id: str, cap: DimensionCap) -> DimensionRegistry:
    topic = registry_topic_name(app_id)
    await ensure_topics(broker, {topic: 1})
    registry = DimensionRegistry(broker, topic, cap)
    await registry.start()
    return registry


@pytest.mark.asyncio
async def test_a_claim_that_waits_says_so_and_completes_once_read_back(
    broker: str, app_id: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_module, "WAIT_WARNING_S", 0.2)
    cap = DimensionCap(3)
    registry = await started_registry(broker, app_id, cap)
    try:
        tp = TopicPartition(registry.topic, 0)
        registry._consumer.pause(tp)  # the read-back stalls, as behind a slow broker
        caplog.set_level(logging.WARNING, logger="cxstream.registry")
        claim = asyncio.create_task(registry.claim([("product", "web")]))
        await wait_for(
            lambda: any("events wait for it" in r.getMessage() for r in caplog.records),
            timeout=30,
        )
        assert not claim.done()
        assert cap.unknown([("product", "web")]) == [("product", "web")]
        registry._consumer.resume(tp)
        await asyncio.wait_for(claim, 30)
        assert cap.unknown([("product", "web")]) == []
        warning = next(r for r in caplog.records if "events wait for it" in r.getMessage())
        assert registry.topic in warning.getMessage()
    finally:
        await registry.stop()


@pytest.mark.asyncio
async def test_a_claim_fails_at_once_with_the_reason_when_the_reader_is_gone(
    broker: str, app_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    cap = DimensionCap(3)
    registry = await started_registry(broker, app_id, cap)
    try:
        caplog.set_level(logging.ERROR, logger="cxstream.registry")
        await registry._consumer.stop()  # the reader's next fetch fails
        assert registry._task is not None
        await wait_for(registry._task.done, timeout=30)
        assert any("reading" in r.getMessage() for r in caplog.records)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RegistryError, match=r"cannot read .* back"):
            await asyncio.wait_for(registry.claim([("product", "web")]), 30)
        # Well before the claim's own deadline: nothing waits for a reader that is gone.
        assert loop.time() - started < registry_module.CLAIM_TIMEOUT_S / 2
    finally:
        await registry.stop()


@pytest.mark.asyncio
async def test_a_start_that_hangs_on_a_silent_broker_says_so(
    app_id: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_module, "WAIT_WARNING_S", 0.2)
    caplog.set_level(logging.WARNING, logger="cxstream.registry")
    held: list[asyncio.StreamWriter] = []

    async def accept_and_say_nothing(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", free_port())
    port = server.sockets[0].getsockname()[1]
    registry = DimensionRegistry(f"127.0.0.1:{port}", registry_topic_name(app_id), DimensionCap(3))
    start = asyncio.create_task(registry.start())
    try:
        await wait_for(
            lambda: any("connecting its producer" in r.getMessage() for r in caplog.records),
            timeout=30,
        )
        assert not start.done()
        assert registry.topic in caplog.records[-1].getMessage()
    finally:
        start.cancel()
        with contextlib.suppress(BaseException):
            await start
        await registry.stop()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
