"""The two streaming stages, free of Faust: what happens to a batch of messages.

Stage 1 (`UserStage`) owns the source partitions (keyed by user). For each message
it decodes, validates, deduplicates and applies events to that partition's
`PartitionState`, and it reports the partial buckets that changed. Stage 2
(`ScopeStage`) owns partitions of the partials topic (keyed by scope) and keeps,
per source partition, the latest absolute partial of each bucket.

Exactness without Kafka transactions rests on two stamps:
- every stage-1 partition state records the offset of the last message it applied
  on each input topic, inside the same checkpoint as the state itself, so a
  message is applied at most once however often Kafka redelivers it;
- partials carry the epoch of the stage-1 incarnation that computed them. A
  partition that (re)starts from a checkpoint takes a new epoch and first sends a
  reset with all its buckets, so stage 2 drops whatever the previous incarnation
  sent after that checkpoint, and re-processing rebuilds it exactly.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from cxstream.engine import (
    Bucket,
    BucketKey,
    DimensionCap,
    MergedStore,
    Outcome,
    PartitionState,
    capped_values,
)
from cxstream.events import Event, Rejection, decode_message

__all__ = [
    "Batch",
    "PartialsMessage",
    "ScopeStage",
    "UserPartition",
    "UserStage",
    "scope_partition",
]


# (topic, partition, offset, what the message decoded to)
Decoded = tuple[str, int, int, list[Event | Rejection]]


def scope_partition(scope: str, partitions: int) -> int:
    """The partials-topic partition that owns `scope` (stable across processes)."""
    return zlib.crc32(scope.encode()) % partitions


@dataclass(slots=True)
class UserPartition:
    """One source partition's stage-1 state and its offset stamps."""

    partition: int
    state: PartitionState
    applied: dict[str, int] = field(default_factory=dict)  # topic -> last applied offset
    epoch: int = 0
    needs_reset: bool = True


@dataclass(slots=True)
class Batch:
    """What a batch of stage-1 messages produced."""

    accepted: list[Event] = field(default_factory=list)
    duplicates: int = 0
    rejected: list[tuple[Rejection, str, int, int]] = field(default_factory=list)
    skipped: int = 0  # messages at or below the partition's offset stamp


@dataclass(slots=True)
class PartialsMessage:
    """One message to a partials-topic partition."""

    partition: int
    value: bytes


class UserStage:
    """Stage 1 over the source partitions this worker owns."""

    def __init__(
        self,
        *,
        cap: DimensionCap,
        csat_thresholds: Mapping[int, int],
        dedupe_horizon_ms: int,
        partials_partitions: int,
    ) -> None:
        self.cap = cap
        self.csat_thresholds = dict(csat_thresholds)
        self.dedupe_horizon_ms = dedupe_horizon_ms
        self.partials_partitions = partials_partitions
        self.partitions: dict[int, UserPartition] = {}
        self.held: set[int] = set()  # partitions whose partials are held back (rebuilding)

    def new_partition(self, partition: int, epoch: int) -> UserPartition:
        state = PartitionState(
            cap=self.cap,
            csat_thresholds=self.csat_thresholds,
            dedupe_horizon_ms=self.dedupe_horizon_ms,
        )
        return UserPartition(partition, state, epoch=epoch)

    def adopt(self, part: UserPartition, epoch: int) -> None:
        """Take over a partition (fresh or restored); it re-announces all its buckets."""
        part.state.cap = self.cap
        part.epoch = epoch
        part.needs_reset = True
        self.partitions[part.partition] = part

    def decode(
        self, messages: Iterable[tuple[str, int, int, bytes]], now_ms: int, batch: Batch
    ) -> list[Decoded]:
        """Decode (topic, partition, offset, value) messages not yet applied, in order."""
        out: list[Decoded] = []
        for topic, partition, offset, value in messages:
            if offset <= self.partitions[partition].applied.get(topic, -1):
                batch.skipped += 1
                continue
            out.append((topic, partition, offset, decode_message(value, now_ms)))
        return out

    def new_dimension_values(self, decoded: Iterable[Decoded]) -> list[tuple[str, str]]:
        """Capped values that decoded, not yet seen events would claim, in order."""
        claims: list[tuple[str, str]] = []
        unknown = self.cap.unknown
        for _, partition, _, items in decoded:
            state = self.partitions[partition].state
            for item in items:
                # Most values are known: the duplicate check only for those that are not.
                if isinstance(item, Event):
                    new = unknown(capped_values(item))
                    if new and not state.has_seen(item):
                        claims.extend(new)
        return list(dict.fromkeys(claims))

    def apply(self, decoded: Iterable[Decoded], now_ms: int, batch: Batch) -> None:
        """Deduplicate and apply decoded messages, stamping each partition's offsets."""
        for topic, partition, offset, items in decoded:
            part = self.partitions[partition]
            state = part.state
            state.advance(now_ms)
            for item in items:
                if isinstance(item, Rejection):
                    batch.rejected.append((item, topic, partition, offset))
                elif state.offer(item, now_ms) == Outcome.DUPLICATE:
                    batch.duplicates += 1
                else:
                    batch.accepted.append(item)
            part.applied[topic] = offset

    def process(
        self, messages: Iterable[tuple[str, int, int, bytes]], now_ms: int, batch: Batch
    ) -> None:
        """Decode and apply messages (dimension values admitted locally)."""
        self.apply(self.decode(messages, now_ms, batch), now_ms, batch)

    def tick(self, now_ms: int) -> None:
        """Move every partition's clock: due future events apply, old state expires."""
        for part in self.partitions.values():
            part.state.advance(now_ms)

    def partials(self) -> Iterator[PartialsMessage]:
        """Messages carrying every changed bucket (all buckets after an adopt)."""
        n = self.partials_partitions
        for part in self.partitions.values():
            if part.partition in self.held:
                continue
            store = part.state.store
            if part.needs_reset:
                part.needs_reset = False
                store.clear_dirty()
                changed: dict[BucketKey, Bucket | None] = dict(store.all_items())
                reset = True
            else:
                changed = store.take_dirty()
                reset = False
                if not changed:
                    continue
            by_target: dict[int, list[Any]] = defaultdict(list)
            for key, bucket in changed.items():
                wire = bucket.to_wire() if bucket is not None else None
                by_target[scope_partition(key[0], n)].append([*key, wire])
            targets = range(n) if reset else by_target.keys()
            for target in targets:
                payload = {
                    "src": part.partition,
                    "epoch": part.epoch,
                    "reset": reset,
                    "b": by_target.get(target, []),
                }
                yield PartialsMessage(target, orjson.dumps(payload))


@dataclass(slots=True)
class ScopePartition:
    """One partials-topic partition's stage-2 state."""

    partition: int
    store: MergedStore = field(default_factory=MergedStore)
    epochs: dict[int, int] = field(default_factory=dict)  # source partition -> epoch
    applied: int = -1  # last applied offset of the partials topic


class ScopeStage:
    """Stage 2 over the partials partitions this worker owns."""

    def __init__(self) -> None:
        self.partitions: dict[int, ScopePartition] = {}
        self.dirty: set[str] = set()

    def apply(self, partition: int, offset: int, value: bytes) -> bool:
        """Apply one partials message; False if it was stale or already applied."""
        part = self.partitions[partition]
        if offset <= part.applied:
            return False
        part.applied = offset
        msg = orjson.loads(value)
        source, epoch = msg["src"], msg["epoch"]
        known = part.epochs.get(source, -1)
        if epoch < known or (epoch > known and not msg["reset"]):
            return False  # a message of an older incarnation, or one after a lost reset
        store = part.store
        if msg["reset"]:
            part.epochs[source] = epoch
            for key in [k for s, k in store.partials if s == source]:
                self.dirty.add(key[0])
            store.drop_source(source)
        for scope, width, start, wire in msg["b"]:
            store.update(source, (scope, width, start), Bucket.from_wire(wire) if wire else None)
            self.dirty.add(scope)
        return True

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty
