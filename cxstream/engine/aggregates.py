"""Mergeable per-bucket aggregates: one `Bucket` per (scope, bucket width, bucket start).

Everything a metric needs is kept as a sum, so that a rolling window is the sum of
the buckets it covers, the partials of several source partitions are summed into
one, and a change (a session that gains a page view) is a subtraction followed by
an addition. Means keep count, sum and sum of squares, which is what Welch's
t-test needs. Distinct users are sums too: stage 1 counts each (user, scope) once,
in the bucket of that user's latest activity, and moves the count when the latest
activity moves (see engine/partition.py) - a user is active in a window iff their
latest activity is inside it.
"""

from __future__ import annotations

import marshal
from dataclasses import dataclass, field
from itertools import compress
from operator import ne
from typing import Any, Final

__all__ = ["COUNTER_NAMES", "NUM_COUNTERS", "Bucket", "C"]

COUNTER_NAMES: Final = (
    "events",
    "active",  # (user, scope) pairs whose latest activity is in this bucket
    "nps_n", "nps_promoters", "nps_passives", "nps_detractors",
    "csat_n", "csat_satisfied",
    "ces_n", "ces_sum2", "ces_sumsq4", "ces_easy",  # mapped CES in half units (exact ints)
    "pageviews",
    "sessions", "session_pageviews", "bounces",
    "leave_n", "leave_sum_ms", "leave_sumsq_ms",
    "scroll_n", "scroll_sum", "scroll_sumsq",
    "impressions", "clicks",
    "signups", "activated", "ttv_sum_ms",
    "subs_started", "subs_cancelled",
    "tickets_opened", "tickets_resolved",
    "frt_n", "frt_sum_ms", "frt_sumsq_ms",
    "res_n", "res_sum_ms", "res_sumsq_ms",
    "contacts_n", "contacts_sum", "contacts_sumsq", "contacts_one",
    "tasks_completed", "tasks_failed",
    "steps_n", "steps_sum", "steps_sumsq",
)  # fmt: skip
NUM_COUNTERS: Final = len(COUNTER_NAMES)
_INDEXES: Final = range(NUM_COUNTERS)


class C:
    """Indexes into `Bucket.values`, one per name of COUNTER_NAMES."""

    EVENTS = 0
    ACTIVE = 1
    NPS_N, NPS_PROMOTERS, NPS_PASSIVES, NPS_DETRACTORS = 2, 3, 4, 5
    CSAT_N, CSAT_SATISFIED = 6, 7
    CES_N, CES_SUM2, CES_SUMSQ4, CES_EASY = 8, 9, 10, 11
    PAGEVIEWS = 12
    SESSIONS, SESSION_PAGEVIEWS, BOUNCES = 13, 14, 15
    LEAVE_N, LEAVE_SUM_MS, LEAVE_SUMSQ_MS = 16, 17, 18
    SCROLL_N, SCROLL_SUM, SCROLL_SUMSQ = 19, 20, 21
    IMPRESSIONS, CLICKS = 22, 23
    SIGNUPS, ACTIVATED, TTV_SUM_MS = 24, 25, 26
    SUBS_STARTED, SUBS_CANCELLED = 27, 28
    TICKETS_OPENED, TICKETS_RESOLVED = 29, 30
    FRT_N, FRT_SUM_MS, FRT_SUMSQ_MS = 31, 32, 33
    RES_N, RES_SUM_MS, RES_SUMSQ_MS = 34, 35, 36
    CONTACTS_N, CONTACTS_SUM, CONTACTS_SUMSQ, CONTACTS_ONE = 37, 38, 39, 40
    TASKS_COMPLETED, TASKS_FAILED = 41, 42
    STEPS_N, STEPS_SUM, STEPS_SUMSQ = 43, 44, 45


assert all(getattr(C, name.upper()) == i for i, name in enumerate(COUNTER_NAMES))


def _merge_counts(into: dict[str, int], other: dict[str, int], sign: int) -> None:
    for key, count in other.items():
        total = into.get(key, 0) + sign * count
        if total:
            into[key] = total
        else:
            into.pop(key, None)


def _replace_counts(into: dict[str, int], old: dict[str, int], new: dict[str, int]) -> None:
    for key, count in old.items():
        diff = new.get(key, 0) - count
        if diff:
            total = into.get(key, 0) + diff
            if total:
                into[key] = total
            else:
                into.pop(key, None)
    for key, count in new.items():
        if key not in old:
            total = into.get(key, 0) + count
            if total:
                into[key] = total
            else:
                into.pop(key, None)


@dataclass(slots=True)
class Bucket:
    """Sums over the events of one scope in one time bucket.

    `pages` counts page views per page, `exits` sessions per exit page, `features`
    (user, feature) pairs per feature whose latest use is in this bucket.
    """

    values: list[Any] = field(default_factory=lambda: [0] * NUM_COUNTERS)
    pages: dict[str, int] = field(default_factory=dict)
    exits: dict[str, int] = field(default_factory=dict)
    features: dict[str, int] = field(default_factory=dict)

    def merge(self, other: Bucket, sign: int = 1) -> None:
        """Add `other` into this bucket (`sign=-1` subtracts it)."""
        values, theirs = self.values, other.values
        for i in compress(_INDEXES, theirs):  # the non-zero ones, found in C
            values[i] += sign * theirs[i]
        if other.pages:
            _merge_counts(self.pages, other.pages, sign)
        if other.exits:
            _merge_counts(self.exits, other.exits, sign)
        if other.features:
            _merge_counts(self.features, other.features, sign)

    def replace(self, old: Bucket, new: Bucket) -> None:
        """`merge(old, -1)` then `merge(new)` in one pass: stage 2 replacing a partial
        with its next version, which mostly differs in a few counters."""
        values = self.values
        before, after = old.values, new.values
        # The counters that differ are found in C; only those are touched, so a float
        # sum is not rounded by adding and taking back a value that did not change.
        for i in compress(_INDEXES, map(ne, before, after)):
            values[i] += after[i] - before[i]
        if old.pages or new.pages:
            _replace_counts(self.pages, old.pages, new.pages)
        if old.exits or new.exits:
            _replace_counts(self.exits, old.exits, new.exits)
        if old.features or new.features:
            _replace_counts(self.features, old.features, new.features)

    def copy(self) -> Bucket:
        return Bucket(list(self.values), dict(self.pages), dict(self.exits), dict(self.features))

    def is_empty(self) -> bool:
        return not (any(self.values) or self.pages or self.exits or self.features)

    def to_wire(self) -> list[Any]:
        """A JSON-ready value; `from_wire` inverts it."""
        return [self.values, self.pages, self.exits, self.features]

    @classmethod
    def from_wire(cls, data: list[Any]) -> Bucket:
        """The bucket of a `to_wire` value, just decoded: it takes the lists and dicts
        over (copying them was a few per cent of stage 2)."""
        values, pages, exits, features = data
        return cls(values, pages, exits, features)

    def pack(self) -> bytes:
        """A compact copy for buckets that are kept but seldom read; `unpack` inverts it.

        A bucket object with its list and dicts takes about 1.1 KB; most of its
        counters are zero, so only the others are written (about a quarter of that).
        """
        values = self.values
        sparse = dict(compress(enumerate(values), values))
        return marshal.dumps((sparse, self.pages, self.exits, self.features))

    @classmethod
    def unpack(cls, data: bytes) -> Bucket:
        sparse, pages, exits, features = marshal.loads(data)
        values: list[Any] = [0] * NUM_COUNTERS
        for i, value in sparse.items():
            values[i] = value
        return cls(values, pages, exits, features)
