"""A minimal two-agent Faust app with a RocksDB table, run as a worker by test_infra.

Not part of the package: it probes how Faust behaves on the test broker (group
join time, table recovery after kill -9). Run as

    python faust_probe_app.py worker --without-web --loglevel=info

configured by environment variables:

    PROBE_BROKER     kafka://127.0.0.1:PORT
    PROBE_APP_ID     consumer group and changelog prefix
    PROBE_PREFIX     topic prefix: {prefix}.in (events) and {prefix}.mid (repartitioned)
    PROBE_DATADIR    the worker's datadir (RocksDB lives here)
    CXSTREAM_BROKER_COMPAT=tansu   apply cxstream.kafka.apply_broker_compat()

Events on `{prefix}.in` are JSON `{"user": str, "n": int}`. Agent `route`
forwards them to `{prefix}.mid` keyed by user; agent `count` adds `n` to the
table `counts[user]`, once per key per `take()` batch. A timer prints the local
table as `STATE {json}` on stdout whenever it changed, which is what the test reads.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from typing import Any

import faust

from cxstream.kafka import apply_broker_compat_from_env

COMPAT = apply_broker_compat_from_env()

APP_ID = os.environ["PROBE_APP_ID"]
PREFIX = os.environ["PROBE_PREFIX"]
PARTITIONS = 8

app = faust.App(
    APP_ID,
    broker=os.environ["PROBE_BROKER"],
    store="rocksdb://",
    datadir=os.environ["PROBE_DATADIR"],
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    table_standby_replicas=0,
    broker_session_timeout=6,
    broker_heartbeat_interval=1,
    broker_commit_interval=0.5,
    web_enabled=False,
    key_serializer="raw",
    value_serializer="json",
)

events = app.topic(f"{PREFIX}.in", partitions=PARTITIONS)
routed = app.topic(f"{PREFIX}.mid", partitions=PARTITIONS)
counts = app.Table(
    "counts",
    default=int,
    key_type=str,
    value_type=int,
    partitions=PARTITIONS,
)


@app.agent(events)
async def route(stream: Any) -> None:
    async for batch in stream.take(100, within=0.2):
        for value in batch:
            await routed.send(key=value["user"].encode(), value=value)


@app.agent(routed)
async def count(stream: Any) -> None:
    # take() leaves no current event, and the RocksDB store needs one to pick
    # the partition a key is written to (it asserts, even with
    # use_partitioner=True). So: take_events(), and write each source
    # partition's keys with one of that partition's events made current;
    # the changelog partition is then the source partition too.
    async for batch in stream.take_events(100, within=0.2):
        per_partition: dict[int, tuple[Any, Counter[str]]] = {}
        for event in batch:
            _, sums = per_partition.setdefault(event.message.partition, (event, Counter()))
            sums[event.value["user"]] += int(event.value["n"])
        for event, sums in per_partition.values():
            stream._set_current_event(event)
            for user, n in sums.items():
                counts[user] += n
        stream._set_current_event(None)


_last: dict[str, int] = {}


@app.timer(0.2)
async def report() -> None:
    global _last
    state = {str(k): int(v) for k, v in counts.items()}
    if state != _last:
        _last = state
        print("STATE " + json.dumps(state, sort_keys=True), flush=True)


@app.task
async def hello() -> None:
    print(f"STARTED compat={COMPAT}", flush=True)


if __name__ == "__main__":
    sys.argv[0] = "faust"
    app.main()
