"""Benchmarks 2 and 3: the worker on a backlog ÷ a bare aiokafka consumer on the same topics.

    .venv/bin/python -m bench.worker [--events 200000] [--mode both|batched|single]
                                     [--scale] [--data FILE [--rebase]]

For each mode a backlog of synthetic traffic (the last few hours, valid events, so
every event must show in the `30d:all` hash) is sent with the SDK before the worker
starts: `batched` as the SDK sends by default (one JSON array per partition, up to
500 events), `single` as one keyed event per message. Then, on the same topics:
- a bare aiokafka consumer reads and parses every message with orjson (best of two);
- for `single`, a naive Faust agent (one event per iteration, a dict update);
- `cxstream worker`: events/s from the moment it starts consuming (its log line
  `cxstream worker consuming`, after the group join) to the publish of
  `cx:metrics:30d:all` that shows every event (Redis polled every 20 ms). First to
  last publish is recorded too, but the first publish can already hold most of the
  backlog, which makes that window meaningless.
`--scale` adds 1 vs 2 workers on the batched data: workers started and settled
first, then the events are sent with the SDK while they run; the clock runs from
the start of sending to the publish that shows every event.

`--data FILE` sends the events of a JSON-lines file of your own instead (an event
or an array of events per line; what the SDK refuses is counted and left out). The
worker is done when `30d:all` shows as many events as `cxstream replay` of the
same events counts in its 30-day window now (duplicates and rejects are not in
it); `--rebase` first moves the file's timestamps, gaps kept, so that its latest
event is a minute ago.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import (
    PYTHON,
    ROOT,
    Event,
    load_events,
    log,
    realistic_events,
    rebase,
    stop_on_sigterm,
    table,
    write_result,
)
from bench.stack import (
    PARTITIONS,
    Stack,
    bare_consume,
    send_with_emitter,
    wait_healthy,
    watch_redis,
)

TARGETS = {"batched": 0.15, "single": 0.04, "single_vs_naive": 1.6}
SPAN_S = 6 * 3600


def backlog(n: int, seed: int) -> list[dict[str, Any]]:
    now = time.time_ns() // 1_000_000
    # Ends about SPAN_S before now: every event is in the past, inside every 30 d window.
    return realistic_events(
        n,
        seed=seed,
        start_ms=now - 2 * SPAN_S * 1000,
        span_s=SPAN_S,
        users=max(100, n // 20),
        messy=False,
    )


def own_backlog(path: Path, *, rebase_to_now: bool) -> tuple[list[Event], int]:
    """The events of `path` and how many of them the worker will show in `30d:all`."""
    from cxstream.replay import replay_lines

    events, other = load_events(path)
    now = time.time_ns() // 1_000_000
    if rebase_to_now:
        events = rebase(events, now - 60_000)
    report = replay_lines((orjson.dumps(e) for e in events), now_ms=now).report
    shown = int(report["windows"]["30d"]["all"]["events"])
    log(
        f"{path}: {len(events):,} events ({other:,} lines or items that are not), "
        f"{shown:,} of them accepted, distinct and in the last 30 days"
    )
    if not shown:
        raise SystemExit(
            f"error: no event of {path} would show in the 30-day window now\n"
            "hint: pass --rebase to move the events to the last hours"
        )
    return events, shown


def run_bare(stack: Stack, topics: dict[str, str], n: int, runs: int = 2) -> dict[str, Any]:
    best: dict[str, Any] | None = None
    for _ in range(runs):
        got = asyncio.run(
            bare_consume(stack.broker.bootstrap, [topics["interactions"], topics["feedback"]], n)
        )
        log(f"bare consumer: {got['events']:,} events in {got['seconds']:.2f} s")
        if best is None or got["seconds"] < best["seconds"]:
            best = got
    assert best is not None
    return best


def run_naive(stack: Stack, topics: dict[str, str], n: int) -> dict[str, Any]:
    out = stack.root / f"naive-{topics['app_id']}.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BENCH_BROKER": stack.broker.url,
        "BENCH_TOPICS": f"{topics['interactions']},{topics['feedback']}",
        "BENCH_EXPECTED": str(n),
        "BENCH_OUT": str(out),
        "BENCH_APP_ID": f"{topics['app_id']}-naive",
    }
    log_path = stack.root / "naive-faust.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            [PYTHON, "-m", "bench.naive_faust"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 600
        while not out.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("naive Faust agent failed:\n" + log_path.read_text()[-3000:])
            time.sleep(0.1)
        time.sleep(0.1)
        got = orjson.loads(out.read_bytes())
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    seconds = got["last"] - got["first"]
    log(f"naive Faust agent: {got['events']:,} events in {seconds:.2f} s")
    return {"seconds": seconds, "events": got["events"], "events_per_s": got["events"] / seconds}


def run_worker(
    stack: Stack,
    topics: dict[str, str],
    config: Any,
    n: int,
    shown: int,
    workers: int = 1,
) -> dict[str, Any]:
    """`n` events sent; done when `30d:all` shows `shown` (all of them, for generated data)."""
    started = time.monotonic()
    procs = [stack.start_worker(topics, config) for _ in range(workers)]
    got = watch_redis(stack.redis, shown, procs)
    got["events"], got["events_per_s"] = n, n / got["seconds"]
    got["start_to_last_publish_s"] = time.monotonic() - started
    got["cpu_s"] = sum(p.cpu_seconds() for p in procs)
    got["peak_rss_mib"] = max(p.peak_rss_mib() for p in procs)
    got["events_total_metric"] = sum(p.events_total() for p in procs)
    log(
        f"worker x{workers}: {n:,} events, consuming to last publish {got['seconds']:.2f} s "
        f"({got['events_per_s']:,.0f}/s), cpu {got['cpu_s']:.1f} s"
    )
    stack.stop_workers()
    return got


def run_scale(stack: Stack, events: list[Event], shown: int, workers: int) -> dict[str, Any]:
    """Workers first (group settled), then the whole backlog at once."""
    topics, config = stack.topics(f"scale{workers}")
    procs = [stack.start_worker(topics, config) for _ in range(workers)]
    wait_healthy(procs)
    time.sleep(8)  # let the group settle (a join takes half the session timeout)
    send_started = time.time()
    sent = asyncio.run(send_with_emitter(stack.broker.bootstrap, events, topics, batch=True))
    got = watch_redis(stack.redis, shown, procs)
    # Here the clock runs from the start of sending to the last publish.
    got["seconds"] = got["last_publish_at"] - send_started
    got["events"] = sent["events"]
    got["events_per_s"] = sent["events"] / got["seconds"]
    got["send_s"] = sent["seconds"]
    got["cpu_s"] = sum(p.cpu_seconds() for p in procs)
    log(f"{workers} worker(s): {got['events_per_s']:,.0f} events/s")
    stack.stop_workers()
    return got


def run_mode(
    stack: Stack,
    events: list[Event],
    shown: int,
    mode: str,
    partitions: int,
    no_naive: bool,
    rows: list[tuple[Any, ...]],
    label: str,
) -> dict[str, Any]:
    """One mode on topics of `partitions` partitions: the backlog sent, the bare
    consumer, the naive agent (single mode), the worker; rows added to the table."""
    topics, config = stack.topics(mode, partitions=partitions)
    sent = asyncio.run(
        send_with_emitter(stack.broker.bootstrap, events, topics, batch=mode == "batched")
    )
    log(
        f"{label}: sent {sent['events']:,} events in {sent['messages']:,} messages "
        f"({sent['seconds']:.1f} s); the SDK refused {sent['refused']:,}"
    )
    n = sent["events"]
    bare = run_bare(stack, topics, n)
    entry: dict[str, Any] = {"mode": mode, "partitions": partitions, "sent": sent, "bare": bare}
    if mode == "single" and not no_naive:
        entry["naive_faust"] = run_naive(stack, topics, n)
    entry["worker"] = worker = run_worker(stack, topics, config, n, shown)
    entry["ratio"] = worker["events_per_s"] / bare["events_per_s"]
    runs = [("bare aiokafka consumer", bare), ("naive Faust agent", entry.get("naive_faust"))]
    runs.append(("cxstream worker", worker))
    for name, run in runs:
        if run is not None:
            ratio = run["events_per_s"] / bare["events_per_s"]
            cpu = run.get("cpu_s")  # the worker's whole process, start-up included
            row = (sent["messages"], run["seconds"], cpu, run["events_per_s"], ratio)
            rows.append((f"{label}: {name}", *row))
    if "naive_faust" in entry:
        entry["vs_naive"] = worker["events_per_s"] / entry["naive_faust"]["events_per_s"]
    return entry


def partition_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers such as 1,2,4,8, got {text!r}"
        ) from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("partitions must be at least 1")
    return counts


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--mode", choices=("both", "batched", "single"), default="both")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive Faust agent")
    parser.add_argument("--scale", action="store_true", help="also measure 1 vs 2 workers")
    parser.add_argument(
        "--data", type=Path, help="a JSON-lines file of events to send instead of generated ones"
    )
    parser.add_argument(
        "--rebase", action="store_true", help="with --data: move its events to the last hours"
    )
    parser.add_argument(
        "--partitions",
        type=partition_counts,
        default=[PARTITIONS],
        help=f"partitions per topic, or a list such as 1,2,4,8 to run each (default {PARTITIONS})",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.data is not None and not args.data.is_file():
        parser.error(f"--data {args.data}: no such file")
    if args.rebase and args.data is None:
        parser.error("--rebase moves the events of --data FILE; generated ones are recent")
    stop_on_sigterm()

    modes = ("batched", "single") if args.mode == "both" else (args.mode,)
    if args.data is not None:
        events, shown = own_backlog(args.data, rebase_to_now=args.rebase)
    else:
        log(f"generating {args.events:,} events")
        events = backlog(args.events, args.seed)
        shown = len(events)
    result: dict[str, Any] = {
        "events": len(events),
        "data": str(args.data) if args.data is not None else "generated",
        "shown_in_30d_all": shown,
        "modes": {},
    }
    rows = []
    several = len(args.partitions) > 1
    with Stack() as stack:
        for partitions in args.partitions:
            for mode in modes:
                label = f"{mode}, {partitions} partitions" if several else mode
                entry = run_mode(stack, events, shown, mode, partitions, args.no_naive, rows, label)
                result["modes"][label] = entry
        if args.scale:
            scale = {w: run_scale(stack, events, shown, w) for w in (1, 2)}
            result["scale"] = scale
            for w, got in scale.items():
                rows.append(
                    (
                        f"batched: {w} worker(s), settled group",
                        0,
                        got["seconds"],
                        got["cpu_s"],
                        got["events_per_s"],
                        None,
                    )
                )
    print(table(("run", "messages", "seconds", "cpu s", "events/s", "÷ bare"), rows))
    print()
    for label, entry in result["modes"].items():
        target = TARGETS[entry["mode"]]
        met = entry["ratio"] >= target
        entry["target"], entry["met"] = target, met
        line = f"{label}: worker ÷ bare = {entry['ratio']:.3f} (target ≥ {target}: "
        line += "met)" if met else "NOT met)"
        if "vs_naive" in entry:
            ok = entry["vs_naive"] >= TARGETS["single_vs_naive"]
            entry["vs_naive_met"] = ok
            line += f"; worker ÷ naive Faust = {entry['vs_naive']:.2f} (target ≥ 1.6: "
            line += "met)" if ok else "NOT met)"
        print(line)
    if args.scale:
        s1, s2 = result["scale"][1], result["scale"][2]
        result["scale_ratio"] = s2["events_per_s"] / s1["events_per_s"]
        print(f"2 workers ÷ 1 worker = {result['scale_ratio']:.2f}")
    if not args.no_write:
        log(f"wrote {write_result('worker', result)}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
