"""Benchmark 4: freshness at a steady 5,000 events/s: send → reflected in the Redis hash.

    .venv/bin/python -m bench.freshness [--rate 5000] [--seconds 120]

One worker with the default publish interval (1 s) runs against the local broker
and Redis. Synthetic traffic is sent with the SDK (batched, its default linger of
0.1 s) at a steady rate, each event stamped with the time it is sent. Among it,
every 100 ms, a probe event: probe k (k = 0..7) belongs to a user of partition k
and carries touchpoint `probek`, so its count in `cx:metrics:5m:touchpoint=probek`
rises by one per probe, in order. Redis is polled every 20 ms; a probe's latency
is the time from its `send` call to the first poll that shows its count. The
same traffic runs `--warmup` seconds (20) before the measured `--seconds`, so
that the figure is the steady state; the first probes' latency (cold start) is
reported on its own line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from typing import Any

from bench.common import log, percentile, realistic_events, stop_on_sigterm, table, write_result
from bench.stack import PARTITIONS, Stack, wait_healthy
from cxstream.emit import Emitter, partition_for

TARGET_P99_S = 2.0
PROBES = 8
PROBE_EVERY_S = 0.1


def probe_users(partitions: int) -> list[str]:
    users: dict[int, str] = {}
    i = 0
    while len(users) < min(PROBES, partitions):
        uid = f"probe-user-{i}"
        users.setdefault(partition_for(uid, partitions), uid)
        i += 1
    return [users[p] for p in sorted(users)]


async def run(
    stack: Stack, topics: dict[str, str], rate: float, seconds: float, warmup: float
) -> dict[str, Any]:
    import redis.asyncio as aioredis

    pool = realistic_events(
        int(rate * (seconds + warmup) * 1.05) + 1000,
        seed=4,
        start_ms=time.time_ns() // 1_000_000 - 86_400_000,
        span_s=seconds,
        users=50_000,
        messy=False,
    )
    users = probe_users(PARTITIONS)
    keys = [f"cx:metrics:5m:touchpoint=probe{k}" for k in range(len(users))]
    sent_at: list[list[float]] = [[] for _ in users]
    seen_at: list[list[float]] = [[] for _ in users]
    client = aioredis.Redis(port=stack.redis.port)
    stop = asyncio.Event()

    async def poll() -> None:
        while True:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.hget(key, "events")
            values = await pipe.execute()
            now = time.perf_counter()
            for k, value in enumerate(values):
                count = int(value) if value is not None else 0
                while len(seen_at[k]) < min(count, len(sent_at[k])):
                    seen_at[k].append(now)
            if stop.is_set() and all(
                len(s) == len(t) for s, t in zip(seen_at, sent_at, strict=True)
            ):
                return
            await asyncio.sleep(0.02)

    poller = asyncio.create_task(poll())
    sent = 0
    async with Emitter(
        stack.broker.bootstrap,
        interactions_topic=topics["interactions"],
        feedback_topic=topics["feedback"],
    ) as emitter:
        started = time.perf_counter()
        next_probe = started
        probe_no = 0
        while True:
            now = time.perf_counter()
            elapsed = now - started
            if elapsed >= seconds + warmup:
                break
            due = min(int(elapsed * rate), len(pool))
            ts = time.time_ns() // 1_000_000
            while sent < due:
                event = pool[sent]
                event["ts"] = ts
                await emitter.send(event)
                sent += 1
            if now >= next_probe:
                k = probe_no % len(users)
                probe_no += 1
                next_probe += PROBE_EVERY_S
                sent_at[k].append(time.perf_counter())
                await emitter.send(
                    {
                        "event_id": str(uuid.uuid4()),
                        "type": "click",
                        "ts": ts,
                        "user_id": users[k],
                        "touchpoint": f"probe{k}",
                        "properties": {"element": "probe"},
                    }
                )
            await asyncio.sleep(0.005)
        send_seconds = time.perf_counter() - started
    stop.set()
    try:
        await asyncio.wait_for(poller, 30)
    except TimeoutError:
        log("some probes never showed within 30 s of the end")
        poller.cancel()
    await client.aclose()
    measured_from = started + warmup
    pairs = [
        (sent_time, seen)
        for k in range(len(users))
        for sent_time, seen in zip(sent_at[k], seen_at[k], strict=False)
    ]
    latencies = [seen - sent_time for sent_time, seen in pairs if sent_time >= measured_from]
    cold = [seen - sent_time for sent_time, seen in pairs if sent_time < started + 1]
    timeline = sorted(
        (round(sent_time - measured_from, 2), round(seen - sent_time, 3))
        for sent_time, seen in pairs
    )
    missing = sum(len(t) - len(s) for s, t in zip(seen_at, sent_at, strict=True))
    return {
        "events_sent": sent,
        "send_seconds": send_seconds,
        "warmup_s": warmup,
        "first_probes_latency_s": max(cold) if cold else None,
        "rate": sent / send_seconds,
        "probes": len(latencies) + missing,
        "probes_missing": missing,
        "p50_s": percentile(latencies, 0.5),
        "p90_s": percentile(latencies, 0.9),
        "p99_s": percentile(latencies, 0.99),
        "max_s": max(latencies) if latencies else float("nan"),
        "timeline": timeline,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.freshness", description=__doc__)
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument(
        "--warmup", type=float, default=20, help="seconds of the same traffic before measuring"
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    with Stack() as stack:
        topics, config = stack.topics("fresh", publish_interval_s=1.0)
        worker = stack.start_worker(topics, config)
        wait_healthy([worker])
        time.sleep(3)
        log(f"sending {args.rate:,.0f} events/s for {args.seconds:g} s")
        cpu0 = worker.cpu_seconds()
        got = asyncio.run(run(stack, topics, args.rate, args.seconds, args.warmup))
        got["worker_cpu_share"] = (worker.cpu_seconds() - cpu0) / got["send_seconds"]
        got["worker_peak_rss_mib"] = worker.peak_rss_mib()
        stack.stop_workers()
    rows = [
        ("rate sent (events/s)", got["rate"]),
        ("probes", got["probes"]),
        ("probes never seen", got["probes_missing"]),
        ("p50 send → Redis (s)", got["p50_s"]),
        ("p90 send → Redis (s)", got["p90_s"]),
        ("p99 send → Redis (s)", got["p99_s"]),
        ("max send → Redis (s)", got["max_s"]),
        ("first probes, cold start (s)", got["first_probes_latency_s"]),
        ("worker CPU (cores)", got["worker_cpu_share"]),
    ]
    print(table(("freshness", "value"), rows))
    met = got["p99_s"] <= TARGET_P99_S and not got["probes_missing"]
    got.update(target_p99_s=TARGET_P99_S, met=met)
    print(
        f"\np99 = {got['p99_s']:.2f} s (target ≤ {TARGET_P99_S:g} s: {'met' if met else 'NOT met'})"
    )
    if not args.no_write:
        log(f"wrote {write_result('freshness', got)}")
    return got


if __name__ == "__main__":
    main(sys.argv[1:])
