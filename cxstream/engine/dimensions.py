"""The per-dimension cap on distinct values (SPEC section 1).

At most `max_values` distinct values per dimension are tracked, first come first
served; later new values are counted as `other`. This bounds Redis keys and
Prometheus series whatever producers send. `unknown` and `other` are not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["OTHER", "DimensionCap"]

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

    def restore(self, dimension: str, values: Iterable[str]) -> None:
        """Re-admit values in their original order (after a restart)."""
        slot = self.admitted.setdefault(dimension, {})
        for value in values:
            if len(slot) < self.max_values:
                slot[value] = None
