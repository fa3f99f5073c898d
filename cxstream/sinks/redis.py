"""The Redis sink: metric hashes, feature hashes, top lists and `cx:updates`."""

from __future__ import annotations

from typing import Any

import orjson

from cxstream.engine import WINDOWS
from cxstream.sinks import Published, format_value

__all__ = ["UPDATES_CHANNEL", "RedisSink", "metrics_key"]

UPDATES_CHANNEL = "cx:updates"
ALERTS_KEY = "cx:alerts:active"


def metrics_key(window: str, scope: str) -> str:
    return f"cx:metrics:{window}:{scope}"


def _keys(window: str, scope: str) -> tuple[str, str, str, str, str]:
    return (
        metrics_key(window, scope),
        f"cx:features:{window}:{scope}",
        f"cx:top:{window}:{scope}:pages",
        f"cx:top:{window}:{scope}:exit_pages",
        f"cx:top:{window}:{scope}:features",
    )


class RedisSink:
    """Replaces each key whole, in one MULTI/EXEC pipeline per publish round.

    `client` is a `redis.asyncio.Redis`; errors propagate to the caller, who counts
    them and retries on the next tick (the values are absolute, so a retry repairs).
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    async def publish(self, items: list[Published], now_ms: int) -> None:
        if not items:
            return
        pipe = self.client.pipeline(transaction=True)
        for item in items:
            key, features_key, pages_key, exits_key, top_features_key = _keys(
                item.window, item.scope
            )
            mapping = {name: format_value(v) for name, v in item.fields.items()}
            mapping["updated_at"] = str(now_ms)
            mapping["window_end"] = str(item.window_end_ms)
            pipe.delete(key, features_key, pages_key, exits_key, top_features_key)
            pipe.hset(key, mapping=mapping)
            if item.features:
                pipe.hset(
                    features_key,
                    mapping={k: format_value(v) for k, v in item.features.items()},
                )
            for zkey, entries in (
                (pages_key, item.pages),
                (exits_key, item.exit_pages),
                (top_features_key, item.top_features),
            ):
                if entries:
                    pipe.zadd(zkey, dict(entries))
            message = {
                "window": item.window,
                "scope": item.scope,
                "metrics": item.fields,
                "updated_at": now_ms,
            }
            pipe.publish(UPDATES_CHANNEL, orjson.dumps(message))
        await pipe.execute()

    async def forget(self, scopes: set[str]) -> None:
        """Delete the keys of scopes that no longer exist (nothing in 30 days)."""
        if not scopes:
            return
        keys = [k for s in scopes for w in WINDOWS for k in _keys(w.name, s)]
        await self.client.delete(*keys)

    async def set_alerts(self, active: dict[str, bytes]) -> None:
        """Mirror the firing alerts into `cx:alerts:active` (replaced whole)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(ALERTS_KEY)
        if active:
            pipe.hset(ALERTS_KEY, mapping=active)
        await pipe.execute()
