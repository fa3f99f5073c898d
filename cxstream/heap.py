"""Keep the garbage collector off the long-lived metric state.

The engine's state (users, sessions, buckets, stage-2 partials: millions of small
containers) lives for hours and holds no reference cycles, yet CPython's cyclic
collector walks all of it in every full collection, and a stream of new state
triggers one whenever the survivors grow by a quarter. On the worker benchmark's
stages that was 40 % of their time, in pauses of a tenth of a second and more.

`LongLivedHeap.settle` is called between units of work (a publisher tick, a
stretch of replayed lines): it moves everything alive into CPython's permanent
generation (`gc.freeze`, constant time), so later collections only look at what
was made since. Freezing stops nothing being freed by reference counting, which
is how the state's garbage goes; only cyclic garbage made from frozen objects
(asyncio's and the clients' objects can form cycles) waits, for the full
collection that `settle` runs every `full_every_s`, and for `release`.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Final

__all__ = ["FULL_COLLECTION_EVERY_S", "LongLivedHeap"]

FULL_COLLECTION_EVERY_S: Final = 600.0


class LongLivedHeap:
    """Freezes the survivors between units of work; see the module docstring."""

    def __init__(
        self,
        full_every_s: float = FULL_COLLECTION_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.full_every_s = full_every_s
        self.clock = clock
        self.last_full = clock()
        self.full_collections = 0

    def settle(self) -> None:
        """Freeze what is alive now; first a full collection if one is due."""
        now = self.clock()
        if now - self.last_full >= self.full_every_s:
            self.last_full = now
            gc.unfreeze()
            gc.collect()
            self.full_collections += 1
        gc.freeze()

    def release(self) -> None:
        """Hand everything back to the collector (the unit of work is over)."""
        gc.unfreeze()
