"""Benchmark 5: peak RSS of replay and of the worker with 1M distinct users over 30 days.

    .venv/bin/python -m bench.memory [--users 1000000] [--skip-worker | --skip-replay]

Each user has one visit at a random time of the last 30 days: one to three page
views (70 % bounce), a page leave after most multi-page visits, and one in ten
answers a survey (NPS, CSAT or CES): about 1.8 events per user, in time order.
- replay: `cxstream replay FILE` as a subprocess; its peak RSS (VmHWM).
- worker: the same events sent with the SDK before one worker starts; its VmHWM
  once the `30d:all` hash counts every event. Then the cost of one checkpoint of
  that state (what the worker writes before each offset commit) is timed by
  loading the worker's checkpoint files and saving them again.
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import DATA, log, stop_on_sigterm, table, write_result
from bench.replay import run_cli
from bench.stack import Stack, watch_redis

TARGET_MIB = 1024
DAY_MS = 86_400_000
PAGES = ("/", "/pricing", "/features", "/docs", "/blog/", "/account", "/support", "/checkout")


def visits(users: int, seed: int, end_ms: int) -> list[dict[str, Any]]:
    """About 1.8 events per user, one visit each, spread over the 30 days before `end_ms`."""
    rng = random.Random(seed)
    start = end_ms - 30 * DAY_MS + 2 * 3_600_000
    span = 30 * DAY_MS - 3 * 3_600_000
    events: list[dict[str, Any]] = []
    n = 0
    for i in range(users):
        uid = f"user-{i:07d}"
        t = start + rng.randrange(span)
        product = rng.choice(("web_app", "mobile_app", "api"))
        channel = rng.choice(("web", "ios", "android"))
        session = f"s-{i:07d}"
        views = 1 if rng.random() < 0.7 else rng.randint(2, 3)
        for _ in range(views):
            n += 1
            events.append(
                {
                    "event_id": f"e{n}",
                    "type": "page_view",
                    "ts": t,
                    "user_id": uid,
                    "session_id": session,
                    "product": product,
                    "channel": channel,
                    "properties": {"page": rng.choice(PAGES)},
                }
            )
            t += rng.randint(5_000, 90_000)
        if views > 1 and rng.random() < 0.8:
            n += 1
            events.append(
                {
                    "event_id": f"e{n}",
                    "type": "page_leave",
                    "ts": t,
                    "user_id": uid,
                    "session_id": session,
                    "product": product,
                    "channel": channel,
                    "properties": {
                        "page": rng.choice(PAGES),
                        "duration_ms": rng.randint(1_000, 120_000),
                    },
                }
            )
        if rng.random() < 0.1:
            n += 1
            kind = rng.choice(("nps", "csat", "ces"))
            score = rng.randint(0, 10) if kind == "nps" else rng.randint(1, 5)
            events.append(
                {
                    "event_id": f"e{n}",
                    "type": kind,
                    "ts": t + 1000,
                    "user_id": uid,
                    "product": product,
                    "channel": channel,
                    "touchpoint": "support",
                    "properties": {"score": score},
                }
            )
    events.sort(key=lambda e: e["ts"])
    return events


def write_file(events: list[dict[str, Any]], users: int, seed: int) -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"memory-{users}-{seed}.jsonl"
    with open(path, "wb") as out:
        for event in events:
            out.write(orjson.dumps(event) + b"\n")
    return path


def checkpoint_cost(datadir: Path) -> dict[str, Any]:
    """Load the worker's stage checkpoints and time saving them again (pickle + fsync)."""
    from cxstream.checkpoint import CheckpointStore

    files = sorted(datadir.rglob("checkpoints/*.pickle"))
    if not files:
        return {"files": 0}
    loaded = []
    for path in files:
        with open(path, "rb") as handle:
            loaded.append((path.stem, pickle.load(handle)[1]))
    with tempfile.TemporaryDirectory() as tmp:
        store = CheckpointStore(Path(tmp), "bench")
        started = time.perf_counter()
        for name, value in loaded:
            store.save(name, value)
        seconds = time.perf_counter() - started
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*.pickle"))
    return {"files": len(files), "seconds": seconds, "bytes": size}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=5)
    skip = parser.add_mutually_exclusive_group()
    skip.add_argument("--skip-worker", action="store_true")
    skip.add_argument("--skip-replay", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    stop_on_sigterm()

    log(f"generating visits of {args.users:,} users over 30 days")
    events = visits(args.users, args.seed, time.time_ns() // 1_000_000)
    path = write_file(events, args.users, args.seed)
    n = len(events)
    del events  # replay and worker are measured without them held in this process
    log(f"{n:,} events -> {path}")
    result: dict[str, Any] = {"users": args.users, "events": n, "file_bytes": path.stat().st_size}
    rows = []
    if not args.skip_replay:
        replay = run_cli(path)
        result["replay"] = replay
        log(f"replay: peak RSS {replay['peak_rss_mib']:.0f} MiB in {replay['seconds']:.1f} s")
        rows.append(("cxstream replay", n, replay["seconds"], replay["peak_rss_mib"]))
    if not args.skip_worker:
        with Stack() as stack:
            topics, config = stack.topics("memory")
            from bench.stack import send_with_emitter

            with open(path, "rb") as handle:
                events = [orjson.loads(line) for line in handle]
            sent = asyncio.run(
                send_with_emitter(stack.broker.bootstrap, events, topics, batch=True)
            )
            log(f"sent {sent['events']:,} events in {sent['seconds']:.1f} s")
            del events
            started = time.monotonic()
            worker = stack.start_worker(topics, config)
            got = watch_redis(stack.redis, n, [worker], timeout=1800)
            seconds = time.monotonic() - started
            active = stack.redis.client.hget("cx:metrics:30d:all", "active_users")
            entry = {
                "seconds_start_to_all": seconds,
                "events_per_s": got["events_per_s"],
                "peak_rss_mib": worker.peak_rss_mib(),
                "rss_end_mib": worker.rss_mib(),
                "active_users_30d": int(active) if active else None,
            }
            datadir = worker.log_path.parent
            stack.stop_workers()
            entry["checkpoint"] = checkpoint_cost(datadir)
            result["worker"] = entry
            log(f"worker: peak RSS {entry['peak_rss_mib']:.0f} MiB, all events in {seconds:.0f} s")
            rows.append(("cxstream worker", n, seconds, entry["peak_rss_mib"]))
    print(table(("run", "events", "seconds", "peak RSS MiB"), rows))
    peaks = [result[run]["peak_rss_mib"] for run in ("replay", "worker") if run in result]
    met = max(peaks) <= TARGET_MIB
    result.update(target_mib=TARGET_MIB, met=met)
    if "worker" in result and result["worker"]["checkpoint"].get("files"):
        cp = result["worker"]["checkpoint"]
        print(
            f"\none checkpoint of the worker's state: {cp['seconds']:.2f} s, "
            f"{cp['bytes'] / 2**20:.0f} MiB in {cp['files']} files"
        )
    print(f"peak RSS ≤ {TARGET_MIB} MiB: {'met' if met else 'NOT met'}")
    if not args.no_write:
        log(f"wrote {write_result('memory', result)}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
