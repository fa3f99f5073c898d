"""Shared fixtures: one Kafka broker and one Redis per session, unique names per test.

Services are real and started here (never mocked, never skipped):

- `broker` — bootstrap `127.0.0.1:PORT` of a Tansu broker (`local_broker`
  is the :class:`cxstream.kafka.LocalBroker` itself, `.url` is
  `kafka://127.0.0.1:PORT`). Topics are shared by the session: create yours
  under `topic_prefix` with `cxstream.kafka.ensure_topics`, since the broker
  auto-creates missing ones with 4 partitions.
- `redis_server` — URL `redis://127.0.0.1:PORT/0` of a private redis-server;
  `redis_proc` is its :class:`infra.RedisServer` (`.kill()`,
  `.restart_empty()` for outage tests); `redis_url` is the same URL after a
  FLUSHALL, for tests that read fixed `cx:*` keys.
- `topic_prefix`, `app_id` — names no other test uses.

Helpers (`wait_for`, `read_topic`, `wait_for_messages`, `free_port`) live in
`tests/infra.py`.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest

from cxstream.kafka import LocalBroker

from infra import RedisServer, safe_name

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def local_broker() -> Iterator[LocalBroker]:
    """A Tansu broker on a free port for the whole session."""
    broker = LocalBroker().start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="session")
def broker(local_broker: LocalBroker) -> str:
    """Bootstrap servers of the session's broker: `127.0.0.1:PORT`."""
    return local_broker.bootstrap


@pytest.fixture(scope="session")
def redis_proc() -> Iterator[RedisServer]:
    """The session's private redis-server (no persistence)."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_server(redis_proc: RedisServer) -> str:
    """URL of the session's Redis: `redis://127.0.0.1:PORT/0`."""
    return redis_proc.url


@pytest.fixture
def redis_url(redis_proc: RedisServer) -> str:
    """The session's Redis, emptied (and started, if a test killed it) for this test."""
    if not redis_proc.running:
        redis_proc.start()
    redis_proc.flush()
    return redis_proc.url


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A topic prefix no other test uses, e.g. `t7-test_dead_letter-1a2b3c`."""
    return f"t{next(_counter)}-{safe_name(request.node.name, 40)}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def app_id(topic_prefix: str) -> str:
    """A Faust app id (consumer group, changelog prefix) no other test uses."""
    return f"app-{topic_prefix}"
