"""The laws that make merging buckets correct, and the engine law built on them.

Bucket.merge is a commutative, associative sum with an inverse (sign -1), so a
window can be any grouping of buckets and a changed bucket can be replaced by
subtracting its old value. On top of that: stage-1 partials of partitions split
by user, summed in stage 2 by MergedStore, evaluate to the same fields as one
PartitionState over every event; and the order of the events does not matter.
"""

from __future__ import annotations

import itertools
import json
import pickle
from functools import reduce
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxstream.engine import (
    COUNTER_NAMES,
    Bucket,
    BucketStore,
    DimensionCap,
    MergedStore,
    PartitionState,
    ScopeResult,
    evaluate_scope,
    live_scopes,
)
from cxstream.events import Event, validate_event
from cxstream.replay import replay_lines

NOW = 1_795_768_215_500  # 2026-11-27T08:30:15.500Z
SEC = 1_000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR

# -- Bucket.merge ----------------------------------------------------------------------

_counts = st.dictionaries(
    st.sampled_from(["/a", "/b", "/c", "f1", "f2"]),
    st.integers(-5, 5).filter(bool),  # a Bucket never stores a zero count
    max_size=4,
)
buckets = st.builds(
    Bucket,
    st.lists(st.integers(-50, 50), min_size=len(COUNTER_NAMES), max_size=len(COUNTER_NAMES)),
    _counts,
    _counts,
    _counts,
)


def plus(a: Bucket, b: Bucket) -> Bucket:
    """a + b as a new Bucket (merge works in place)."""
    out = a.copy()
    out.merge(b)
    return out


def fold(items: list[Bucket]) -> Bucket:
    return reduce(plus, items, Bucket())


@given(a=buckets, b=buckets)
def test_merge_is_commutative(a: Bucket, b: Bucket) -> None:
    assert plus(a, b) == plus(b, a)


@given(a=buckets, b=buckets, c=buckets)
def test_merge_is_associative(a: Bucket, b: Bucket, c: Bucket) -> None:
    assert plus(plus(a, b), c) == plus(a, plus(b, c))


@given(a=buckets)
def test_empty_bucket_is_the_identity(a: Bucket) -> None:
    assert plus(a, Bucket()) == a
    assert plus(Bucket(), a) == a


@given(items=st.lists(buckets, max_size=8), data=st.data())
def test_any_order_and_grouping_gives_the_same_sum(
    items: list[Bucket], data: st.DataObject
) -> None:
    expected = fold(items)
    shuffled = data.draw(st.permutations(items))
    assert fold(shuffled) == expected
    # split the shuffled list in groups, sum each group, then sum the group sums
    cuts = sorted(data.draw(st.lists(st.integers(0, len(items)), max_size=3)))
    bounds = [0, *cuts, len(items)]
    groups = [shuffled[lo:hi] for lo, hi in itertools.pairwise(bounds)]
    assert fold([fold(g) for g in groups]) == expected
    # the inputs are left alone by plus/fold
    assert fold(items) == expected


@given(a=buckets, b=buckets)
def test_merge_then_unmerge_restores(a: Bucket, b: Bucket) -> None:
    original = a.copy()
    a.merge(b)
    a.merge(b, -1)
    assert a == original
    # x - x is empty
    zero = b.copy()
    zero.merge(b, -1)
    assert zero.is_empty()
    assert zero == Bucket()


@given(total=buckets, old=buckets, new=buckets, overlap=buckets)
def test_replace_is_unmerge_then_merge(
    total: Bucket, old: Bucket, new: Bucket, overlap: Bucket
) -> None:
    # Next versions of a partial share counters and keys with the old one.
    old.merge(overlap)
    new.merge(overlap)
    expected = total.copy()
    expected.merge(old, -1)
    expected.merge(new)
    total.replace(old, new)
    assert total == expected


@given(a=buckets)
def test_wire_round_trip(a: Bucket) -> None:
    assert Bucket.from_wire(json.loads(json.dumps(a.to_wire()))) == a


@given(a=buckets)
def test_pack_round_trip(a: Bucket) -> None:
    assert Bucket.unpack(a.pack()) == a


# -- events ----------------------------------------------------------------------------

USERS = [f"u{i}" for i in range(6)]


@st.composite
def _props(draw: st.DrawFn, type_: str) -> dict[str, Any]:
    def maybe(strategy: st.SearchStrategy[Any]) -> Any:
        return draw(st.none() | strategy)

    page = st.sampled_from(["/a", "/b", "/c"])
    props: dict[str, Any]
    if type_ == "page_view":
        props = {"page": draw(page)}
    elif type_ == "page_leave":
        props = {
            "page": draw(page),
            "duration_ms": draw(st.integers(0, 60_000)),
            "scroll_pct": maybe(st.integers(0, 100)),
        }
    elif type_ in ("impression", "click"):
        props = {"element": draw(st.sampled_from(["buy", "nav"]))}
    elif type_ == "feature_used":
        props = {"feature": draw(st.sampled_from(["export", "search", "share"]))}
    elif type_ == "subscription_started":
        props = {"mrr": maybe(st.integers(0, 100))}
    elif type_ in ("support_ticket_opened", "support_ticket_resolved"):
        props = {"ticket_id": draw(st.sampled_from(["T1", "T2"]))}
        if type_ == "support_ticket_resolved":
            props["first_response_ms"] = maybe(st.integers(0, HOUR))
            props["resolution_ms"] = maybe(st.integers(0, DAY))
            props["contacts"] = maybe(st.integers(1, 3))
    elif type_ == "task_completed":
        props = {"task": "t", "steps": maybe(st.integers(1, 6))}
    elif type_ == "task_failed":
        props = {"task": "t"}
    elif type_ == "nps":
        props = {"score": draw(st.integers(0, 10))}
    elif type_ in ("csat", "ces"):
        scale = draw(st.sampled_from([None, 5, 7, 10] if type_ == "csat" else [None, 5, 7]))
        top = scale or (5 if type_ == "csat" else 7)
        props = {"score": draw(st.integers(1, top)), "scale": scale}
    else:  # signup, subscription_cancelled
        props = {}
    return {k: v for k, v in props.items() if v is not None}


TYPES = [
    "page_view",
    "page_view",  # twice as likely: sessions are where the state is
    "page_leave",
    "impression",
    "click",
    "feature_used",
    "signup",
    "subscription_started",
    "subscription_cancelled",
    "support_ticket_opened",
    "support_ticket_resolved",
    "task_completed",
    "task_failed",
    "nps",
    "csat",
    "ces",
]


@st.composite
def event_lists(draw: st.DrawFn, max_size: int = 30) -> list[dict[str, Any]]:
    """Valid events over a few users, sessions and hours (some days, a few in the future).

    Timestamps are distinct so that "the page view with the largest ts" is one view.
    """
    offsets = draw(
        st.lists(
            st.integers(-5 * MIN, 6 * HOUR) | st.integers(0, 9 * DAY),
            max_size=max_size,
            unique=True,
        )
    )
    out = []
    for i, offset in enumerate(offsets):
        type_ = draw(st.sampled_from(TYPES))
        event: dict[str, Any] = {
            "event_id": f"e{i}",
            "type": type_,
            "ts": NOW - offset,
            "user_id": draw(st.sampled_from(USERS)),
            "product": draw(st.sampled_from(["p0", "p1", "p2"])),
            "channel": draw(st.sampled_from(["web", "ios"])),
            "properties": draw(_props(type_)),
        }
        if draw(st.booleans()):
            event["touchpoint"] = "checkout"
        if type_ in ("page_view", "page_leave"):
            event["session_id"] = draw(st.sampled_from(["s0", "s1", "s2"]))
        out.append(event)
    return out


def decode(events: list[dict[str, Any]]) -> list[Event]:
    return [validate_event(e, NOW) for e in events]


def results(store: BucketStore) -> dict[str, dict[str, ScopeResult]]:
    """Every window of every live scope of a store at NOW."""
    return {scope: evaluate_scope(store, scope, NOW, 20) for scope in live_scopes(store, NOW)}


def one_partition(events: list[Event]) -> PartitionState:
    state = PartitionState(cap=DimensionCap(), store=BucketStore())
    state.advance(NOW)
    for event in events:
        state.offer(event)
    return state


ENGINE_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


EVERY = {MIN: NOW + DAY, HOUR: NOW + DAY}  # pack_old: buckets of any age


def through_stage_2(
    events: list[Event], partitions: int, flush_after: set[int], pack_after: set[int]
) -> tuple[list[PartitionState], MergedStore]:
    """Stage 1: one PartitionState per partition (users split by partition), one
    value cap for the deployment. Stage 2: the changed buckets of each partition
    are sent as copies after the events of `flush_after` and at the end, and replace
    that partition's previous partial. After the events of `pack_after`, every
    bucket of both stages is packed (the most that `pack_old` can do).
    """
    cap = DimensionCap()
    states = [PartitionState(cap=cap, store=BucketStore()) for _ in range(partitions)]
    for state in states:
        state.advance(NOW)
    merged = MergedStore()

    def flush() -> None:
        for source, state in enumerate(states):
            for key, bucket in state.store.take_dirty().items():
                merged.update(source, key, bucket.copy() if bucket is not None else None)

    for i, event in enumerate(events):
        states[int(event.user_id[1:]) % partitions].offer(event)
        if i in pack_after:
            for state in states:
                state.store.pack_old(EVERY)
            merged.pack_old(EVERY)
        if i in flush_after:
            flush()
    flush()
    flush()  # nothing changed: a no-op
    return states, merged


def event_indexes(data: st.DataObject, events: list[Event], max_size: int) -> set[int]:
    return data.draw(st.sets(st.integers(0, max(0, len(events) - 1)), max_size=max_size))


@ENGINE_SETTINGS
@given(raw=event_lists(), partitions=st.integers(2, 3), data=st.data())
def test_partials_merged_in_stage_2_equal_one_partition(
    raw: list[dict[str, Any]], partitions: int, data: st.DataObject
) -> None:
    events = decode(raw)
    expected = results(one_partition(events).store)
    _, merged = through_stage_2(events, partitions, event_indexes(data, events, 4), set())
    assert results(merged.merged) == expected


@ENGINE_SETTINGS
@given(raw=event_lists(), partitions=st.integers(1, 3), data=st.data())
def test_packing_buckets_at_any_point_changes_no_result(
    raw: list[dict[str, Any]], partitions: int, data: st.DataObject
) -> None:
    # Packing between any two events, also between sending partials: later events
    # unpack what they change, partials and windows read packed buckets, and a
    # checkpoint keeps them packed.
    events = decode(raw)
    expected = results(one_partition(events).store)
    pack_after = event_indexes(data, events, 4)
    states, merged = through_stage_2(events, partitions, event_indexes(data, events, 3), pack_after)
    merged = pickle.loads(pickle.dumps(merged))
    assert results(merged.merged) == expected
    if partitions == 1:
        restored = pickle.loads(pickle.dumps(states[0]))
        restored.store.pack_old(EVERY)
        assert results(restored.store) == expected


@ENGINE_SETTINGS
@given(raw=event_lists())
def test_replay_equals_one_partition(raw: list[dict[str, Any]]) -> None:
    report = replay_lines([json.dumps(e).encode() for e in raw], now_ms=NOW).report
    expected = results(one_partition(decode(raw)).store)
    assert report["accepted"] == len(raw)
    for name, per_scope in report["windows"].items():
        assert per_scope == {scope: res[name].fields for scope, res in expected.items()}


@ENGINE_SETTINGS
@given(raw=event_lists(), data=st.data())
def test_order_does_not_matter(raw: list[dict[str, Any]], data: st.DataObject) -> None:
    # At most 3 products, 2 channels, 2 touchpoints, 3 pages and 3 features: all
    # under the cap of 50, so first come first served decides nothing here.
    shuffled = data.draw(st.permutations(raw))
    a = replay_lines([json.dumps(e).encode() for e in raw], now_ms=NOW).report
    b = replay_lines([json.dumps(e).encode() for e in shuffled], now_ms=NOW).report
    assert a == b


@ENGINE_SETTINGS
@given(raw=event_lists(max_size=20), data=st.data())
def test_batched_or_single_lines_give_the_same_report(
    raw: list[dict[str, Any]], data: st.DataObject
) -> None:
    singles = [json.dumps(e).encode() for e in raw]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=4)))
    bounds = [0, *cuts, len(raw)]
    batches = [json.dumps(raw[lo:hi]).encode() for lo, hi in itertools.pairwise(bounds)]
    assert replay_lines(batches, now_ms=NOW).report == replay_lines(singles, now_ms=NOW).report


@given(items=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3), buckets), max_size=12))
def test_merged_store_keeps_the_latest_partial_per_source(
    items: list[tuple[int, int, Bucket]],
) -> None:
    # Sending partials for (source, key) several times: the sum holds the last one only.
    merged = MergedStore()
    latest: dict[tuple[int, int], Bucket] = {}
    for source, k, bucket in items:
        key = ("all", MIN, k * MIN)
        merged.update(source, key, bucket.copy())
        merged.update(source, key, bucket.copy())  # idempotent
        latest[(source, k)] = bucket
    for k in range(4):
        expected = fold([b for (_, kk), b in latest.items() if kk == k])
        got = merged.merged.buckets.get(("all", MIN, k * MIN), Bucket())
        assert got == expected
    # a source that goes away takes its partials with it
    merged.drop_source(0)
    for k in range(4):
        expected = fold([b for (s, kk), b in latest.items() if kk == k and s != 0])
        got = merged.merged.buckets.get(("all", MIN, k * MIN), Bucket())
        assert got == expected
