"""A profiling aid, not one of the benchmarks: the worker's two stages in-process.

    .venv/bin/python -m bench.stages [--events 50000] [--fetch 16] [--settle 5] [--partitions 8]

The worker benchmark's data (synthetic traffic of the last hours, valid events),
in 500-event messages per partition as the SDK sends them, handed to stage 1
(`UserStage`) a fetch of `--fetch` messages at a time, and every partials message
it makes applied by stage 2 (`ScopeStage`) at once: the CPU work of a worker on a
backlog, without Kafka, Faust, Redis or the publisher. It prints the seconds the
stages took. The long-lived state is frozen every `--settle` fetches (about once a
second of a worker on a backlog), as the worker's publisher tick does. Being one
process that only computes, it suits a profiler
(`py-spy record -- python -m bench.stages`) and instruction counts, which, unlike
seconds, repeat on a busy machine:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m bench.stages --events 20000

The messages are made once and kept in bench/results/data.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from collections import defaultdict

import orjson

from bench.common import DATA, log
from bench.worker import backlog
from cxstream.emit import partition_for
from cxstream.engine import DEFAULT_CSAT_THRESHOLDS, DimensionCap
from cxstream.heap import LongLivedHeap
from cxstream.stages import Batch, ScopePartition, ScopeStage, UserStage

PARTITIONS = 8
MESSAGE_EVENTS = 500
DEDUPE_HORIZON_MS = 7 * 86_400_000

Messages = list[tuple[int, bytes]]


def messages(n: int, seed: int, partitions: int = PARTITIONS) -> tuple[Messages, int]:
    """(partition, message) in about the order they were sent, and stream time after them."""
    suffix = "" if partitions == PARTITIONS else f"-p{partitions}"
    path = DATA / f"stages-{n}-{seed}{suffix}.pickle"
    if path.exists():
        with open(path, "rb") as handle:
            kept: tuple[Messages, int] = pickle.load(handle)
        return kept
    log(f"generating {n:,} events -> {path}")
    events = backlog(n, seed)
    by_partition: dict[int, list[dict[str, object]]] = defaultdict(list)
    for event in events:
        by_partition[partition_for(str(event["user_id"]), partitions)].append(event)
    # The partitions' messages interleaved, each partition's in time order.
    chunks = sorted(
        (i, partition, evs[i : i + MESSAGE_EVENTS])
        for partition, evs in by_partition.items()
        for i in range(0, len(evs), MESSAGE_EVENTS)
    )
    out = [(partition, orjson.dumps(evs)) for _, partition, evs in chunks]
    now = time.time_ns() // 1_000_000
    DATA.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump((out, now), handle)
    return out, now


def run(
    msgs: Messages, now_ms: int, fetch: int, settle: int = 5, partitions: int = PARTITIONS
) -> tuple[float, int]:
    """Seconds for both stages over every message, and the events accepted."""
    heap = LongLivedHeap()
    stage1 = UserStage(
        cap=DimensionCap(50),
        csat_thresholds=DEFAULT_CSAT_THRESHOLDS,
        dedupe_horizon_ms=DEDUPE_HORIZON_MS,
        partials_partitions=partitions,
    )
    stage2 = ScopeStage()
    for p in range(partitions):
        stage1.adopt(stage1.new_partition(p, 1), 1)
        stage2.partitions[p] = ScopePartition(p)
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    accepted = 0
    started = time.perf_counter()
    for n, i in enumerate(range(0, len(msgs), fetch), start=1):
        if n % settle == 0:
            heap.settle()
        records = []
        for partition, value in msgs[i : i + fetch]:
            offsets[("in", partition)] += 1
            records.append(("cx.interactions", partition, offsets[("in", partition)], value))
        batch = Batch()
        decoded = stage1.decode(records, now_ms, batch)
        stage1.new_dimension_values(decoded)  # the worker's claims (not sent here)
        stage1.apply(decoded, now_ms, batch)
        accepted += len(batch.accepted)
        for message in stage1.partials():
            offsets[("partials", message.partition)] += 1
            offset = offsets[("partials", message.partition)]
            stage2.apply(message.partition, offset, message.value)
    seconds = time.perf_counter() - started
    heap.release()
    return seconds, accepted


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fetch", type=int, default=16, help="messages per stage-1 call")
    parser.add_argument("--settle", type=int, default=5, help="fetches between heap freezes")
    parser.add_argument(
        "--partitions", type=int, default=PARTITIONS, help="partitions of every topic"
    )
    args = parser.parse_args(argv)
    if args.partitions < 1:
        parser.error("--partitions must be at least 1")
    msgs, now_ms = messages(args.events, args.seed, args.partitions)
    seconds, accepted = run(msgs, now_ms, args.fetch, args.settle, args.partitions)
    print(
        f"stages 1 + 2: {accepted:,} events accepted in {seconds:.2f} s "
        f"({accepted / seconds:,.0f} events/s, {len(msgs):,} messages)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
