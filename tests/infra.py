"""Test helpers around real services: ports, polling, a private Redis, reading topics.

Import from tests as `from infra import wait_for, read_topic, ...` (pytest puts
`tests/` on sys.path for its conftest.py). The fixtures in conftest.py are
built from these.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cxstream.kafka import read_topic
from cxstream.local import LocalRedis, free_port

__all__ = [
    "RedisServer",
    "free_port",
    "read_topic",
    "safe_name",
    "wait_for",
    "wait_for_messages",
    "wait_until",
]

T = TypeVar("T")


async def wait_for(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] | None = None,
) -> T:
    """Poll `predicate` until it returns something truthy; return that value.

    `predicate` may be a plain function or an async one. Raises
    `TimeoutError` after `timeout` seconds, with `message` (or a callable
    producing it, to show the last state) and the last value seen.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        last = result
        if result:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise TimeoutError(
                f"{text or 'condition'} not met within {timeout:g} s (last value: {last!r})"
            )
        await asyncio.sleep(interval)


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | None = None,
) -> T:
    """Blocking twin of :func:`wait_for`, for fixtures and code outside an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{message or 'condition'} not met within {timeout:g} s (last value: {result!r})"
            )
        time.sleep(interval)


def safe_name(text: str, max_len: int = 60) -> str:
    """`text` reduced to the characters Kafka allows in topic names ([a-zA-Z0-9._-])."""
    return re.sub(r"[^a-zA-Z0-9._-]+", "-", text).strip("-")[:max_len] or "x"


# --------------------------------------------------------------------------- Kafka


async def wait_for_messages(
    bootstrap: str,
    topic: str,
    predicate: Callable[[list[Any]], bool] | int,
    *,
    timeout: float = 15.0,
) -> list[Any]:
    """Poll :func:`read_topic` until `predicate(messages)` holds (an int: that many).

    Returns the messages. For assertions on `cx.alerts` and `cx.deadletter`,
    which a worker writes some time after its input arrived.
    """
    check: Callable[[list[Any]], bool]
    if isinstance(predicate, int):
        count = predicate
        check = lambda messages: len(messages) >= count  # noqa: E731
    else:
        check = predicate
    last: list[Any] = []

    async def ready() -> list[Any] | None:
        nonlocal last
        last = await read_topic(bootstrap, topic, timeout_s=timeout)
        return last if check(last) else None

    result = await wait_for(
        ready,
        timeout=timeout,
        interval=0.2,
        message=lambda: f"messages on {topic} (have {len(last)})",
    )
    assert result is not None
    return result


# --------------------------------------------------------------------------- Redis


class RedisServer(LocalRedis):
    """The session's private redis-server (see :class:`cxstream.local.LocalRedis`).

    Tests share one server and empty it between them with :meth:`flush`.
    """

    def flush(self) -> None:
        """Empty every database (FLUSHALL)."""
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()
