"""The per-dimension cap on distinct values (SPEC section 1).

At most `max_values` distinct values per dimension are tracked, first come first
served; later new values are counted as `other`. This bounds Redis keys and
Prometheus series whatever producers send. `unknown` and `other` are not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cxstream.events import Event

__all__ = ["OTHER", "DimensionCap", "capped_values"]

OTHER = "other"
_FREE = frozenset({"unknown", OTHER})


@dataclass(slots=True)
class DimensionCap:
    """Admitted values per dimension (`product`, `channel`, `touchpoint`, `page`, `feature`).

    `on_admit` is called for each newly admitted value, so that a driver can persist
    the admission order (the worker stores it so that a restart keeps the same slots).
    """

    max_values: int = 50
    admitted: dict[str, dict[str, None]] = field(default_factory=dict)
    on_admit: Callable[[str, str], None] | None = None

    def __post_init__(self) -> None:
        if self.max_values < 0:
            raise ValueError("max_values must be >= 0")

    def admit(self, dimension: str, value: str) -> str:
        """`value` if it is (or can still become) a tracked value, else `other`."""
        values = self.admitted.get(dimension)
        if values is None:
            values = self.admitted[dimension] = {}
        if value in values or value in _FREE:
            return value
        if len(values) >= self.max_values:
            return OTHER
        values[value] = None
        if self.on_admit is not None:
            self.on_admit(dimension, value)
        return value

    def unknown(self, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """The (dimension, value) pairs that would claim a free slot if admitted now."""
        out = []
        for dimension, value in pairs:
            values = self.admitted.get(dimension, {})
            if value not in values and value not in _FREE and len(values) < self.max_values:
                out.append((dimension, value))
        return out

    def restore(self, dimension: str, values: Iterable[str]) -> None:
        """Re-admit values in their original order (after a restart)."""
        slot = self.admitted.setdefault(dimension, {})
        for value in values:
            if len(slot) < self.max_values:
                slot[value] = None


def capped_values(event: Event) -> list[tuple[str, str]]:
    """The (dimension, value) pairs of an event that the cap governs."""
    pairs = [
        ("product", event.product),
        ("channel", event.channel),
        ("touchpoint", event.touchpoint),
    ]
    if event.type == "page_view":
        pairs.append(("page", event.props["page"]))
    elif event.type == "feature_used":
        pairs.append(("feature", event.props["feature"]))
    return pairs
