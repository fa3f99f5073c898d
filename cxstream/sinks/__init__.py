"""Where published metrics go: Redis and Prometheus.

A sink takes whole values (never increments), so that a fresh, empty sink is fully
repopulated by the next publish and a failed write is repaired by the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cxstream.engine import Bucket

__all__ = ["Published", "Sink", "format_value"]


@dataclass(frozen=True, slots=True)
class Published:
    """One window of one scope, as computed at `window_end_ms`."""

    window: str
    scope: str
    fields: dict[str, int | float]
    features: dict[str, float]
    pages: list[tuple[str, int]]
    exit_pages: list[tuple[str, int]]
    top_features: list[tuple[str, int]]
    window_end_ms: int
    total: Bucket  # the window's summed bucket (alerts test significance on it)
    active_subscribers: int = 0


class Sink(Protocol):
    """Anything that can take a round of published windows."""

    async def publish(self, items: list[Published], now_ms: int) -> None: ...

    async def forget(self, scopes: set[str]) -> None: ...


def format_value(value: int | float) -> str:
    """Integers as `"12"`, other numbers as the shortest round-tripping decimal."""
    if isinstance(value, int):
        return str(value)
    return repr(float(value))
