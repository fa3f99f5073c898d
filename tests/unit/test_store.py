"""Bucket stores: packing and expiry keep no trace of buckets that are gone."""

from __future__ import annotations

import pickle
import random

import pytest

from cxstream.engine import Bucket, BucketStore, DimensionCap, MergedStore, PartitionState
from cxstream.engine.store import UntrackedBucketStore, live_cut
from cxstream.engine.windows import DAY_MS, HOUR_MS, LEVELS, MINUTE_MS
from cxstream.events import Event

NOW = 1_795_768_200_000  # 2026-11-27T08:30:00Z, minute-aligned


def test_expiry_forgets_packed_and_unpacked_buckets_and_their_marks() -> None:
    store = BucketStore()
    old = NOW - 40 * DAY_MS
    for start in (old, NOW - 3 * HOUR_MS, NOW):
        store.get(("all", MINUTE_MS, start)).values[0] += 1
        store.get(("all", HOUR_MS, start - start % HOUR_MS)).values[0] += 1
    store.pack_old({MINUTE_MS: NOW - 2 * HOUR_MS, HOUR_MS: NOW - 2 * HOUR_MS})
    assert store.touched == set()  # packing starts a new round of changes
    assert len(store.cold) == 0  # all were changed since the last packing
    store.pack_old({MINUTE_MS: NOW - 2 * HOUR_MS, HOUR_MS: NOW - 2 * HOUR_MS})
    assert len(store.cold) == 4 and len(store.buckets) == 2
    store.get(("all", MINUTE_MS, old)).values[0] += 1  # unpacked again by a change
    store.expire(NOW)
    keys = set(store.all_keys())
    assert all(start >= NOW - DAY_MS - 2 * HOUR_MS for _, _, start in keys)
    assert store.touched <= keys and store.dirty <= keys
    assert store.lookup(("all", MINUTE_MS, NOW - 3 * HOUR_MS)) is not None  # packed, read


def test_stage_2_packs_old_partials_once_the_unpacked_ones_double() -> None:
    # A backlog: partials of 5,000 minutes (about 3.5 days) arrive in time order.
    merged = MergedStore()
    first = NOW - 5_000 * MINUTE_MS
    for i in range(5_000):
        bucket = Bucket()
        bucket.values[0] = i + 1
        merged.update(0, ("all", MINUTE_MS, first + i * MINUTE_MS), bucket)
    packed = [p for p in merged.partials.values() if isinstance(p, bytes)]
    assert len(packed) > 3_000  # the minutes more than 2 h before the latest one
    assert merged.unpacked == len(merged.partials) - len(packed)
    # Replacing a packed partial subtracts what it held.
    merged.update(0, ("all", MINUTE_MS, first), None)
    total = sum(b.values[0] for b in merged.merged.buckets.values())
    assert total == sum(range(2, 5_001))


def test_untracked_store_keeps_buckets_but_records_no_changes() -> None:
    store = UntrackedBucketStore()
    key = ("all", MINUTE_MS, NOW - 3 * HOUR_MS)
    store.get(key).values[0] += 2
    assert store.get(key).values[0] == 2  # the same bucket, kept
    store.cold[key] = store.buckets.pop(key).pack()
    store.get(key).values[0] += 1  # unpacked for good by a change
    assert key not in store.cold and store.buckets[key].values[0] == 3
    store.mark([key])
    assert store.dirty == set() and store.touched == set()


def test_stream_time_moves_the_expiry_cuts_exactly_as_computed_afresh() -> None:
    # PartitionState recomputes its cuts only as a minute begins; checkpoints and
    # steps of every size must still see the cuts of their own moment.
    state = PartitionState(cap=DimensionCap(50))
    now = NOW - 3 * HOUR_MS + 17
    for step in [1, 59_982, 1, 60_000, 59_999, 2, 3_600_000, 123_457, 1] * 40:
        now += step
        state.advance(now)
        if step == 2:
            state = pickle.loads(pickle.dumps(state))
        expected = tuple(live_cut(width, keep, now) for width, keep in LEVELS)
        assert state._cuts == expected, now


def test_buckets_changed_through_the_targets_cache_are_reported_after_every_take() -> None:
    # The cache marks its keys only when the store has cleared some since the last
    # use: every batch's partials must still carry every bucket the batch changed.
    state = PartitionState(cap=DimensionCap(50))
    state.advance(NOW + 50_000)

    def click(n: int) -> None:
        state.offer(Event(f"e{n}", "click", NOW + n, "u1", None, "web", "web", "home", {}))

    click(1)
    first = state.store.take_dirty()
    assert len(first) == 8  # 4 scopes x (minute, hour)
    for n in (2, 3):  # the same minute and scopes: a cache hit each time
        click(n)
        changed = state.store.take_dirty()
        assert changed.keys() == first.keys()
        assert all(b is not None and b.values[0] == n for b in changed.values())
    click(4)
    state.store.pack_old({MINUTE_MS: NOW - DAY_MS, HOUR_MS: NOW - DAY_MS})  # clears `touched`
    click(5)
    assert state.store.touched == set(first)


def _live(key: tuple[str, int, int], now_ms: int) -> bool:
    cuts = {width: live_cut(width, keep, now_ms) for width, keep in LEVELS}
    return key[1] == 0 or key[2] >= cuts[key[1]]


@pytest.mark.parametrize("seed", range(20))
def test_expiry_drops_exactly_the_buckets_before_the_cuts_however_they_got_there(
    seed: int,
) -> None:
    """Buckets made by `get`, packed, unpacked, deleted and made again, passed to the
    constructor or through pickle: `expire` keeps exactly those no cut has passed."""
    rng = random.Random(seed)
    starts = [NOW - rng.randrange(0, 40 * DAY_MS) for _ in range(60)]
    keys = [
        (scope, width, start - start % width)
        for start in starts
        for scope in ("all", "product=a")
        for width in (MINUTE_MS, HOUR_MS)
    ] + [("all", 0, 0)]
    store = BucketStore(buckets={keys[0]: Bucket()})
    expected = {keys[0]}
    now = NOW - 30 * DAY_MS
    for _ in range(400):
        op = rng.random()
        key = rng.choice(keys)
        if op < 0.6:
            store.get(key).values[0] += 1
            expected.add(key)
        elif op < 0.7:
            store.pack_old({MINUTE_MS: now - 2 * HOUR_MS, HOUR_MS: now - DAY_MS})
        elif op < 0.8 and key in store.buckets:
            # As MergedStore does with a merged bucket that sums to zero (untracked).
            del store.buckets[key]
            store.dirty.discard(key)
            store.touched.discard(key)
            expected.discard(key)
        elif op < 0.85:
            store = pickle.loads(pickle.dumps(store))
        else:
            now += rng.randrange(0, 2 * DAY_MS)
            store.expire(now)
            expected = {k for k in expected if _live(k, now)}
        assert set(store.all_keys()) == expected
        assert store.dirty <= expected and store.touched <= expected
    store.expire(now + 40 * DAY_MS)
    assert set(store.all_keys()) == {k for k in expected if k[1] == 0}
