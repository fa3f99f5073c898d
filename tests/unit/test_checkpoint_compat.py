"""Checkpoints written before a change of the state's layout still load, and count on.

Each test builds today's state, rewrites its pickled form into the older layout,
restores that, and checks that what follows gives the same results as a state
that was never checkpointed.
"""

from __future__ import annotations

import marshal
import pickle
from typing import Any

from cxstream.engine import Bucket, BucketStore, DimensionCap, MergedStore, PartitionState
from cxstream.engine.partition import _Packed, user_key
from cxstream.engine.store import evaluate_scope
from cxstream.events import Event, validate_event

NOW = 1_795_768_215_500  # 2026-11-27T08:30:15.500Z
MIN = 60_000


def view(i: int, user: str, session: str, ago_ms: int) -> Event:
    return validate_event(
        {
            "event_id": f"e{i}",
            "type": "page_view",
            "ts": NOW - ago_ms,
            "user_id": user,
            "session_id": session,
            "properties": {"page": f"/p{i % 3}"},
        },
        NOW,
    )


FIRST = [view(1, "u1", "s1", 30 * MIN), view(2, "u2", "s1", 20 * MIN), view(3, "u1", "s2", 9 * MIN)]
LATER = [view(4, "u1", "s1", 25 * MIN), view(5, "u2", "s1", 2 * MIN)]  # join stored sessions


def fields(store: BucketStore) -> dict[str, Any]:
    return {w: r.fields for w, r in evaluate_scope(store, "all", NOW, 5).items()}


def fresh() -> PartitionState:
    state = PartitionState(cap=DimensionCap())
    state.advance(NOW)
    return state


def test_sessions_keyed_by_tuples_load_and_join() -> None:
    expected = fresh()
    for event in FIRST + LATER:
        expected.offer(event)
    state = fresh()
    for event in FIRST:
        state.offer(event)
    saved = state.__getstate__()
    pairs = {user_key(e.user_id, e.session_id or ""): (e.user_id, e.session_id) for e in FIRST}
    entries = marshal.loads(saved["sessions"].data)
    saved["sessions"] = _Packed(marshal.dumps([(pairs[key], ss) for key, ss in entries]))
    restored = PartitionState.__new__(PartitionState)
    restored.__setstate__(pickle.loads(pickle.dumps(saved)))
    for event in LATER:
        restored.offer(event)
    assert len(restored.sessions) == 3
    assert fields(restored.store) == fields(expected.store)
    assert fields(restored.store)["1h"]["sessions"] == 3


def test_bucket_store_without_packed_buckets_loads() -> None:
    state = fresh()
    for event in FIRST:
        state.offer(event)
    store = state.store
    old = BucketStore.__new__(BucketStore)
    old.__setstate__((None, {"buckets": dict(store.buckets), "dirty": set(store.dirty)}))
    assert old.cold == {} and old.version == 0
    assert fields(old) == fields(store)


def test_merged_store_without_packing_fields_loads() -> None:
    state = fresh()
    for event in FIRST:
        state.offer(event)
    merged = MergedStore()
    for key, bucket in state.store.take_dirty().items():
        merged.update(0, key, bucket)
    partials = dict(merged.partials)
    assert partials and all(isinstance(p, Bucket) for p in partials.values())  # recent
    old = MergedStore.__new__(MergedStore)
    old.__setstate__((None, {"merged": merged.merged, "partials": partials}))
    assert old.unpacked == len(partials) and old.latest == {}
    old.pack_old({key[1]: NOW + 1 for _, key in partials})
    assert old.unpacked == 0 and all(isinstance(p, bytes) for p in old.partials.values())
    for key in list(partials):
        old.update(0, key[1], None)  # subtracting what it held leaves nothing
    assert old.merged.buckets == {} and old.unpacked == 0
