"""Hand each fetch from Kafka to the stages whole, around Faust's per-message stream.

Faust delivers to an agent one message at a time: for every message its fetch loop,
conductor, channel queue and stream each take a few awaits and allocations, about
100 µs per message on a small machine whatever the agent then does. Stage 1 and
stage 2 work per batch, and third-party producers send one event per message, so
that per-message path set the worker's pace. The worker keeps Faust's consumer for
everything around the records (group membership, assignment, pauses, seeks, the
commit timer) and replaces only the loop that drains fetched records into streams
(`Consumer._drain_messages`) with one that gives each fetch to the stages at once.

What the replaced loop did for Faust, the new one does too, or has no use for:
- it drops records fetched under an older consumer generation, or while the flow is
  stopped for a rebalance; they are read again from the committed offsets;
- it skips records below the partition's read offset (a seek backwards moves it);
- a batch runs under `Worker.busy`, which the revocation handler takes before it
  checkpoints and drops partitions, as Faust waits for its streams to go empty;
- acknowledgement is one offset per partition per batch: the last one processed.
  Faust's commit timer turns it into the offset to commit (`new_offset`), which the
  worker's commit hook then clamps to its checkpoint;
- it tells Faust's monitor when each partition last delivered, which Faust's
  slow-processing check reads.
Gap tracking (for compacted or transactional inputs, which cxstream's are not) and
Faust's per-message sensors are not kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Record", "install"]

log = logging.getLogger("cxstream.worker")

Record = tuple[str, int, int, bytes]  # (topic, partition, offset, value)

FETCH_TIMEOUT_S = 1.0


def install(
    consumer: Any,
    *,
    busy: asyncio.Lock,
    inputs: set[str],
    partials: str,
    ingest: Callable[[list[Record]], Awaitable[None]],
    merge: Callable[[list[Record]], Awaitable[None]],
) -> None:
    """Make `consumer` hand whole fetches of `inputs` to `ingest` and of `partials` to `merge`."""
    app = consumer.app
    read_offset = consumer._read_offset
    acked = consumer._acked
    ignored: set[str] = set()

    def new_offset(tp: Any) -> int | None:
        done = acked[tp]
        if not done:
            return None
        top = max(done)
        done.clear()
        return int(top) + 1

    async def drain(fetcher: Any) -> None:
        consumer_stopped = consumer._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        while not (consumer_stopped() or fetcher_stopped()):
            await asyncio.sleep(0)
            if consumer.should_stop:
                break
            records, active = await consumer._wait_next_records(FETCH_TIMEOUT_S)
            if not records or consumer.should_stop:
                continue
            if not consumer.flow_active:
                # As Faust's loop does: what was fetched during a pause is read again.
                try:
                    await consumer.perform_seek()
                except Exception as exc:
                    log.warning("seek back to committed offsets failed: %s", exc)
                continue
            generation = app.consumer_generation_id
            buffered = consumer._buffered_partitions
            to_ingest: list[Record] = []
            to_merge: list[Record] = []
            last: dict[Any, int] = {}
            for tp, batch in records.items():
                if active is not None and tp not in active and tp not in buffered:
                    continue
                if tp.topic == partials:
                    out = to_merge
                elif tp.topic in inputs:
                    out = to_ingest
                else:
                    # Faust's own subscriptions (its leader-election topic) carry no data.
                    if tp.topic not in ignored:
                        ignored.add(tp.topic)
                        log.warning("ignoring records of %s: not a cxstream topic", tp.topic)
                    continue
                start = read_offset[tp]
                for r in batch:
                    if start is None or r.offset >= start:
                        out.append((r.topic, r.partition, r.offset, r.value))
                        last[tp] = r.offset
            if not last:
                continue
            async with busy:
                if app.consumer_generation_id != generation or not consumer.flow_active:
                    continue  # a rebalance began since the fetch: read again after it
                if to_ingest:
                    await ingest(to_ingest)
                if to_merge:
                    await merge(to_merge)
                now = time.monotonic()
                inbound = app.monitor.stream_inbound_time
                for tp, offset in last.items():
                    read_offset[tp] = offset
                    acked[tp].append(offset)
                    inbound[tp] = now

    consumer._new_offset = new_offset
    consumer._drain_messages = drain
