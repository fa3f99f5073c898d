"""Bucket stores and window evaluation.

`BucketStore` holds the buckets of one stage-1 partition (or, in `replay`, of the
whole file); `MergedStore` is stage 2's view: the latest absolute partial of each
source partition, summed per bucket. Both are evaluated by `evaluate_scope`, so a
window is computed one way whatever drove the engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final

from cxstream.engine.aggregates import NUM_COUNTERS, Bucket, C
from cxstream.engine.metrics import compute_fields, feature_usage
from cxstream.engine.windows import (
    DAY_MS,
    HOUR_MS,
    LEVELS,
    MINUTE_MS,
    WINDOWS,
    bucket_start,
    cover,
)

__all__ = [
    "ALL_TIME",
    "BucketKey",
    "BucketStore",
    "MergedStore",
    "ScopeResult",
    "evaluate_scope",
    "live_cut",
    "live_scopes",
    "top_list",
]

# (scope, width_ms, start_ms); width 0 is the scope's all-time bucket (subscriptions).
BucketKey = tuple[str, int, int]
ALL_TIME = 0
# Buckets of each width kept unpacked while they start less than this before the
# latest time: the ones events still change. Hour buckets of the last day are few,
# large and often changed.
PACK_AFTER_MS: Final = {MINUTE_MS: 2 * HOUR_MS, HOUR_MS: DAY_MS + 2 * HOUR_MS}
# Packing also runs when unpacked buckets have doubled since the last time (at least
# this many): a backlog of old events moves stream time too little.
PACK_MIN_BUCKETS: Final = 1024


def pack_cutoffs(latest_ms: int | Mapping[int, int]) -> dict[int, int]:
    """Per level width, the start before which buckets are old enough to pack.

    `latest_ms` is stream time (one for all widths) or the latest bucket start
    seen per width; all-time buckets are never packed.
    """
    if isinstance(latest_ms, int):
        return {width: latest_ms - after for width, after in PACK_AFTER_MS.items()}
    return {w: t - PACK_AFTER_MS[w] for w, t in latest_ms.items() if w != ALL_TIME}


def next_pack_at(unpacked: int) -> int:
    """Pack again when the unpacked buckets have doubled (at least PACK_MIN_BUCKETS)."""
    return max(PACK_MIN_BUCKETS, 2 * unpacked)


def live_cut(level_width: int, retention_ms: int, now_ms: int) -> int:
    """Buckets of this level starting before the returned ms are expired."""
    return bucket_start(now_ms - retention_ms, level_width)


@dataclass(slots=True)
class BucketStore:
    """Buckets keyed by (scope, width, start), with the keys changed since last asked.

    Buckets that events have left behind are kept packed in `cold` (see `pack_old`):
    a partition holds some 30 days of them per scope and touches few. Reading
    one (`lookup`) unpacks a copy; changing one (`get`) unpacks it for good.
    """

    buckets: dict[BucketKey, Bucket] = field(default_factory=dict)
    dirty: set[BucketKey] = field(default_factory=set)
    # Bumped whenever buckets are dropped or packed, so that callers holding buckets know.
    version: int = field(default=0, compare=False)
    cold: dict[BucketKey, bytes] = field(default_factory=dict)
    touched: set[BucketKey] = field(default_factory=set)  # changed since the last packing
    # Bumped whenever keys leave `dirty` or `touched`: a caller that marked keys since
    # the last bump knows they are still recorded (see `PartitionState._targets`).
    cleared: int = field(default=0, compare=False)
    # (width, start) -> the keys with that start in `buckets` or `cold` (and perhaps
    # some deleted since), so that `expire` looks at starts instead of every key.
    # Derived: rebuilt on construction and unpickling, not pickled.
    starts: dict[tuple[int, int], list[BucketKey]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        self._index()

    def _index(self) -> None:
        starts: dict[tuple[int, int], list[BucketKey]] = {}
        for key in self.all_keys():
            starts.setdefault((key[1], key[2]), []).append(key)
        self.starts = starts

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # Every field but the derived ones (not in __init__), as the default pickling
        # of a slotted object would give them.
        return None, {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        slots = state[1]
        self.buckets, self.dirty = slots["buckets"], slots["dirty"]
        # Checkpoints written before these fields existed.
        self.version = slots.get("version", 0)
        self.cold = slots.get("cold", {})
        self.touched = slots.get("touched", set())
        self.cleared = slots.get("cleared", 0)
        self._index()

    def get(self, key: BucketKey) -> Bucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self._bring(key)
        self.dirty.add(key)
        self.touched.add(key)
        return bucket

    def _bring(self, key: BucketKey) -> Bucket:
        """A new bucket at `key`, or the packed one unpacked for good."""
        packed = self.cold.pop(key, None)
        if packed is None:
            # Positional: the dataclass's default factories cost a third of a new bucket.
            bucket = self.buckets[key] = Bucket([0] * NUM_COUNTERS, {}, {}, {})
            start = (key[1], key[2])
            keys = self.starts.get(start)
            if keys is None:
                self.starts[start] = [key]
            else:
                keys.append(key)
        else:
            bucket = self.buckets[key] = Bucket.unpack(packed)  # indexed when packed
        return bucket

    def mark(self, keys: Iterable[BucketKey]) -> None:
        """Record a change to buckets obtained earlier with `get` (and still held)."""
        self.dirty.update(keys)
        self.touched.update(keys)

    def lookup(self, key: BucketKey) -> Bucket | None:
        """The bucket at `key` to read (a copy if packed), None if there is none."""
        bucket = self.buckets.get(key)
        if bucket is None:
            packed = self.cold.get(key)
            if packed is not None:
                return Bucket.unpack(packed)
        return bucket

    def all_keys(self) -> Iterator[BucketKey]:
        """Every key, packed or not."""
        yield from self.buckets
        yield from self.cold

    def all_items(self) -> Iterator[tuple[BucketKey, Bucket]]:
        """Every bucket (packed ones as copies)."""
        yield from self.buckets.items()
        for key, packed in self.cold.items():
            yield key, Bucket.unpack(packed)

    def take_dirty(self) -> dict[BucketKey, Bucket | None]:
        """The changed buckets since the last call (None: the bucket is gone)."""
        out = {key: self.lookup(key) for key in self.dirty}
        self.clear_dirty()
        return out

    def clear_dirty(self) -> None:
        """Forget the changed keys (a caller sends every bucket instead)."""
        self.dirty.clear()
        self.cleared += 1

    def pack_old(self, before_ms: Mapping[int, int]) -> None:
        """Pack the buckets that start before `before_ms[width]` and were not changed
        since the last call (not the all-time ones).

        A bucket still being changed (a backlog's current minute, the buckets of
        users who come back) would be unpacked again right away.
        """
        touched = self.touched
        old = [
            k
            for k in self.buckets
            if k[1] != ALL_TIME and k[2] < before_ms[k[1]] and k not in touched
        ]
        touched.clear()
        self.cleared += 1
        if old:
            self.version += 1
        for key in old:
            self.cold[key] = self.buckets.pop(key).pack()

    def expire(self, now_ms: int) -> None:
        """Drop buckets no window can cover any more (not reported as dirty)."""
        cuts = {width: live_cut(width, keep, now_ms) for width, keep in LEVELS}
        starts = self.starts
        dead = [s for s in starts if s[0] != ALL_TIME and s[1] < cuts[s[0]]]
        if not dead:
            return
        buckets, cold, dirty, touched = self.buckets, self.cold, self.dirty, self.touched
        dropped = False
        for start in dead:
            for key in starts.pop(start):
                if buckets.pop(key, None) is not None or cold.pop(key, None) is not None:
                    dropped = True
                    dirty.discard(key)
                    touched.discard(key)
        if dropped:
            self.version += 1
            self.cleared += 1

    def scopes(self) -> set[str]:
        return {key[0] for key in self.all_keys()}


class UntrackedBucketStore(BucketStore):
    """A store whose changes nobody asks for: replay, which neither sends partials
    nor packs. Recording them in `dirty` and `touched`, sets no one reads there,
    took about a tenth of replay's time."""

    __slots__ = ()

    def get(self, key: BucketKey) -> Bucket:
        bucket = self.buckets.get(key)
        return self._bring(key) if bucket is None else bucket

    def mark(self, keys: Iterable[BucketKey]) -> None:
        pass


@dataclass(slots=True)
class MergedStore:
    """Stage 2: the sum over source partitions of their latest partial per bucket.

    Partials are read only when replaced or dropped, and there are as many as the
    source partitions' buckets together: those of old buckets are kept packed
    (`Bucket.pack`). Recent ones, replaced after every batch, stay unpacked until
    they are old (checked when the unpacked ones have doubled, and on `expire`).
    """

    # Nobody asks the merged buckets what changed (ScopeStage keeps changed scopes).
    merged: BucketStore = field(default_factory=UntrackedBucketStore)
    partials: dict[tuple[int, BucketKey], Bucket | bytes] = field(default_factory=dict)
    latest: dict[int, int] = field(default_factory=dict)  # width -> latest bucket start
    unpacked: int = 0
    pack_at: int = PACK_MIN_BUCKETS

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        slots = state[1]
        self.merged, self.partials = slots["merged"], slots["partials"]
        # Checkpoints written before these fields existed.
        self.latest = slots.get("latest", {})
        self.unpacked = sum(isinstance(p, Bucket) for p in self.partials.values())
        self.pack_at = next_pack_at(self.unpacked)

    def update(self, source: int, key: BucketKey, partial: Bucket | None) -> None:
        """Replace the partial of `source` for `key` (idempotent: same value, same sum)."""
        stored = self.partials.pop((source, key), None)
        target = self.merged.get(key)
        old: Bucket | None = None
        if isinstance(stored, Bucket):
            self.unpacked -= 1
            old = stored
        elif stored is not None:
            old = Bucket.unpack(stored)
        if partial is not None and partial.is_empty():
            partial = None
        if old is not None:
            if partial is not None:
                target.replace(old, partial)
            else:
                target.merge(old, -1)
        if partial is not None:
            _, width, start = key
            latest = self.latest.setdefault(width, start)
            if start > latest:
                self.latest[width] = latest = start
            if width == ALL_TIME or start >= latest - PACK_AFTER_MS[width]:
                self.partials[(source, key)] = partial
                self.unpacked += 1
                if self.unpacked > self.pack_at:
                    self.pack_old(pack_cutoffs(self.latest))
            else:
                self.partials[(source, key)] = partial.pack()
            if old is None:
                target.merge(partial)
        if target.is_empty():
            del self.merged.buckets[key]
            self.merged.version += 1

    def pack_old(self, before_ms: Mapping[int, int]) -> None:
        """Pack the partials of buckets starting before `before_ms[width]`."""
        partials = self.partials
        for skey, partial in partials.items():
            _, width, start = skey[1]
            if isinstance(partial, Bucket) and start < before_ms.get(width, start):
                partials[skey] = partial.pack()
                self.unpacked -= 1
        self.pack_at = next_pack_at(self.unpacked)

    def drop_source(self, source: int) -> None:
        """Forget a partition's partials (it moved to another worker)."""
        for skey in [k for k in self.partials if k[0] == source]:
            self.update(source, skey[1], None)

    def expire(self, now_ms: int) -> None:
        """Drop partials no window can cover any more; pack those that became old."""
        self.merged.expire(now_ms)
        cuts = {width: live_cut(width, keep, now_ms) for width, keep in LEVELS}
        dead = [k for k in self.partials if k[1][1] != ALL_TIME and k[1][2] < cuts[k[1][1]]]
        for key in dead:
            if isinstance(self.partials.pop(key), Bucket):
                self.unpacked -= 1
        self.pack_old(pack_cutoffs(now_ms))


class _Source:
    """Read access to summed buckets (a BucketStore or a MergedStore's merged one)."""

    def __init__(self, store: BucketStore) -> None:
        self.store = store

    def window_sum(self, scope: str, keys: Iterable[tuple[int, int]]) -> Bucket:
        total = Bucket()
        for width, start in keys:
            bucket = self.store.lookup((scope, width, start))
            if bucket is not None:
                total.merge(bucket)
        return total


@dataclass(slots=True)
class ScopeResult:
    """One window of one scope: the SPEC fields, feature usage and the top lists."""

    fields: dict[str, int | float]
    features: dict[str, float]
    pages: list[tuple[str, int]]
    exit_pages: list[tuple[str, int]]
    top_features: list[tuple[str, int]]
    total: Bucket  # the window's summed bucket: what significance tests need
    active_subscribers: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "pages": [list(p) for p in self.pages],
            "exit_pages": [list(p) for p in self.exit_pages],
            "features": [list(p) for p in self.top_features],
        }


def top_list(counts: dict[str, int], n: int) -> list[tuple[str, int]]:
    """The n largest counts, ties broken by name."""
    return sorted(((k, c) for k, c in counts.items() if c > 0), key=lambda kc: (-kc[1], kc[0]))[:n]


def _window_range(width_ms: int, granularity_ms: int, now_ms: int) -> tuple[int, int]:
    start = bucket_start(now_ms, granularity_ms) - width_ms + granularity_ms
    # No applied event is later than now, so the range may run to the end of the
    # current hour: whole hour buckets then cover it with fewer merges.
    end = bucket_start(now_ms, HOUR_MS) + HOUR_MS
    return start, end


def evaluate_scope(
    store: BucketStore, scope: str, now_ms: int, top_n: int
) -> dict[str, ScopeResult]:
    """Every window of one scope at `now_ms`."""
    source = _Source(store)
    alltime = store.lookup((scope, ALL_TIME, 0))
    active_subscribers = 0
    if alltime is not None:
        v = alltime.values
        active_subscribers = v[C.SUBS_STARTED] - v[C.SUBS_CANCELLED]
    sums = {
        w.name: source.window_sum(
            scope, cover(*_window_range(w.width_ms, w.granularity_ms, now_ms))
        )
        for w in WINDOWS
    }
    active_30d = sums["30d"].values[C.ACTIVE]
    out: dict[str, ScopeResult] = {}
    for w in WINDOWS:
        total = sums[w.name]
        out[w.name] = ScopeResult(
            fields=compute_fields(
                total,
                active_subscribers=active_subscribers,
                active_users_30d=active_30d if w.name == "24h" else None,
            ),
            features=feature_usage(total),
            pages=top_list(total.pages, top_n),
            exit_pages=top_list(total.exits, top_n),
            top_features=top_list(total.features, top_n),
            total=total,
            active_subscribers=active_subscribers,
        )
    return out


def live_scopes(store: BucketStore, now_ms: int) -> Iterator[str]:
    """Scopes with an event in the last 30 days or a subscription event ever."""
    start, end = _window_range(WINDOWS[-1].width_ms, HOUR_MS, now_ms)
    seen: set[str] = set()
    for scope, width, bstart in store.all_keys():
        if scope in seen:
            continue
        if (
            width == ALL_TIME
            or (width == HOUR_MS and start <= bstart < end)
            or (width == MINUTE_MS and start <= bstart < end)
        ):
            seen.add(scope)
            yield scope
