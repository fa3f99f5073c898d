"""Test helpers around real services: ports, polling, a private Redis, reading topics.

Import from tests as `from infra import wait_for, read_topic, ...` (pytest puts
`tests/` on sys.path for its conftest.py). The fixtures in conftest.py are
built from these.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from cxstream.kafka import free_port, read_topic

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


def _redis_ping(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A private `redis-server` on 127.0.0.1: no persistence, its own temp dir.

    `url` stays valid across :meth:`restart_empty`, which is what outage
    tests need: kill Redis, let the worker notice, bring back an empty one
    on the same port.
    """

    def __init__(self, port: int | None = None, binary: str | None = None) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise RuntimeError(
                "redis-server is not installed: apt-get install -y redis-server "
                "(make test does this)"
            )
        self.binary = found
        self.port = port if port is not None else free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="cxstream-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT/0`."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        return Path(self._dir.name) / "redis.log"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start an empty server and wait until it answers PING."""
        if self.running:
            return self
        cmd = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir.name,
            "--daemonize", "no",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not _redis_ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                self.kill()
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{tail}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL the server (an outage, no clean shutdown) and wait until it is gone."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def restart_empty(self) -> None:
        """Kill the server and start an empty one on the same port."""
        self.kill()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.kill()
        self._dir.cleanup()

    def flush(self) -> None:
        """Empty every database (FLUSHALL)."""
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()
