"""LongLivedHeap: frozen survivors, cyclic garbage still collected on schedule."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import orjson
import pytest

from cxstream.engine import DimensionCap, MergedStore
from cxstream.generate import generate_events
from cxstream.heap import LongLivedHeap
from cxstream.replay import SETTLE_EVERY_LINES, replay_lines
from cxstream.stages import Batch, ScopePartition, ScopeStage, UserStage


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def _cycle() -> weakref.ref[_Node]:
    """A two-object cycle that only the cyclic collector can free, by weak reference."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_settle_freezes_what_is_alive_and_full_collection_frees_frozen_cycles() -> None:
    clock = _Clock()
    heap = LongLivedHeap(full_every_s=600, clock=clock)
    ref = _cycle()
    heap.settle()
    assert gc.get_freeze_count() > 0
    gc.collect()
    assert ref() is not None  # frozen: ordinary collections leave it alone
    clock.now = 599.0
    heap.settle()
    gc.collect()
    assert ref() is not None and heap.full_collections == 0
    clock.now = 600.0
    heap.settle()
    assert ref() is None
    assert heap.full_collections == 1
    assert gc.get_freeze_count() > 0  # frozen again after the full collection


def test_release_hands_the_frozen_objects_back() -> None:
    heap = LongLivedHeap(clock=_Clock())
    ref = _cycle()
    heap.settle()
    heap.release()
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert ref() is None


def test_replay_settles_while_it_runs_and_releases_at_the_end() -> None:
    frozen: list[int] = []

    def lines() -> Iterator[bytes]:
        for i in range(SETTLE_EVERY_LINES + 2):
            if i == SETTLE_EVERY_LINES + 1:
                frozen.append(gc.get_freeze_count())
            yield b'{"event_id":"e%d","type":"signup","ts":1790000000000,"user_id":"u%d"}' % (
                i,
                i,
            )

    result = replay_lines(lines())
    assert frozen and frozen[0] > 0
    assert gc.get_freeze_count() == 0
    assert result.report["accepted"] == SETTLE_EVERY_LINES + 2
    assert result.report["windows"]["30d"]["all"]["events"] == SETTLE_EVERY_LINES + 2


def test_a_dropped_partition_state_is_freed_by_reference_counting_alone() -> None:
    """Frozen state that forms a cycle would stay until the next full collection
    (up to 10 minutes): a partition moved to another worker must go at once."""
    now = 1_790_000_000_000
    events = list(
        generate_events(seed=3, start_ms=now - 600_000, duration_s=600, rate=20, users=50)
    )
    assert len({e["type"] for e in events}) >= 8
    lines = [orjson.dumps(e) for e in events]
    stage1 = UserStage(
        cap=DimensionCap(), csat_thresholds={5: 4, 7: 6, 10: 8}, dedupe_horizon_ms=3_600_000,
        partials_partitions=2,
    )  # fmt: skip
    stage1.adopt(stage1.new_partition(0, 1), 1)
    stage2 = ScopeStage()
    stage2.partitions[0] = ScopePartition(0)
    stage2.partitions[1] = ScopePartition(1)
    batch = Batch()
    stage1.process([("in", 0, i, line) for i, line in enumerate(lines)], now, batch)
    assert len(batch.accepted) > 1000
    for offset, message in enumerate(stage1.partials()):
        stage2.apply(message.partition, offset, message.value)
    user_part, scope_part = stage1.partitions.pop(0), stage2.partitions.pop(0)
    ref = weakref.ref(user_part.state)
    gc.disable()
    try:
        merged_before = _count(MergedStore)
        del user_part, scope_part
        assert ref() is None
        assert _count(MergedStore) == merged_before - 1
    finally:
        gc.enable()


def _count(cls: type) -> int:
    """Live instances of `cls` that the collector tracks."""
    return sum(1 for obj in gc.get_objects() if type(obj) is cls)
