"""Shared helpers: results, tables, machine facts and the benchmark data sets."""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from cxstream.emit import partition_for
from cxstream.errors import InvalidEvent
from cxstream.events import parse_timestamp
from cxstream.generate import generate_bad_lines, generate_events, rfc3339

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATA = RESULTS / "data"
PYTHON = sys.executable

Event = dict[str, Any]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    versions = {}
    for dist in ("faust-streaming", "aiokafka", "orjson", "msgspec", "redis", "uvloop"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write `result` as bench/results/<name>-<stamp>.json and <name>.json (latest)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **result}
    doc.setdefault("machine", machine())
    text = json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n"
    stamped = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    stamped.write_text(text)
    (RESULTS / f"{name}.json").write_text(text)
    return stamped


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:,.2f}"
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table, numbers right-aligned."""
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append(
            "  ".join(
                c.rjust(w) if c[:1].isdigit() or c[:1] in "-." else c.ljust(w)
                for c, w in zip(row, widths, strict=True)
            )
        )
    return "\n".join(lines)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    data = sorted(values)
    pos = (len(data) - 1) * q
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def proc_status_kib(pid: int, name: str) -> int | None:
    """A size line of `/proc/{pid}/status` (`VmHWM`, `VmRSS`, ...) in KiB; None if absent."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    return None


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that services started by a benchmark are stopped."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data


def realistic_events(
    n: int, *, seed: int, start_ms: int, span_s: float, users: int, messy: bool
) -> list[Event]:
    """`n` events of the synthetic traffic model, spread over about `span_s` seconds."""
    out: list[Event] = []
    for event in generate_events(
        seed=seed,
        start_ms=start_ms,
        duration_s=span_s * 1.5,
        rate=n / span_s,
        users=users,
        messy=messy,
    ):
        out.append(event)
        if len(out) >= n:
            break
    return out


def mixed_lines(
    events: Sequence[Event],
    *,
    seed: int,
    batch_share: float = 0.1,
    partitions: int = 8,
    bad_lines: int = 0,
    now_ms: int | None = None,
) -> Iterator[bytes]:
    """JSON lines: mostly one event per line; about `batch_share` of the events in batches.

    A batch holds consecutive events of users of one partition (as the SDK sends
    them); `bad_lines` rejected lines of every reason are mixed in.
    """
    rng = random.Random(seed)
    bad_every = max(1, len(events) // (bad_lines + 1)) if bad_lines else 0
    bad_made = 0
    i = 0
    next_bad = bad_every
    mean_batch = 100
    start_batch = batch_share / mean_batch / max(1e-9, 1 - batch_share)
    while i < len(events):
        if bad_made < bad_lines and i >= next_bad:
            # Every reason in turn but `future_timestamp`: without `--now`, replay's
            # clock is the largest `ts` read, and a line a year ahead would make all
            # later traffic old (replay can only reject it given `--now`).
            made = generate_bad_lines(seed + bad_made, bad_made % 8 + 1, now_ms=now_ms or 0)
            yield made[-1][1].encode()
            bad_made += 1
            next_bad += bad_every
        if rng.random() < start_batch:
            chunk = events[i : i + rng.randint(20, 2 * mean_batch - 20)]
            i += len(chunk)
            groups: dict[int, list[Event]] = {}
            for event in chunk:
                groups.setdefault(partition_for(str(event["user_id"]), partitions), []).append(
                    event
                )
            for group in groups.values():
                yield orjson.dumps(group)
        else:
            yield orjson.dumps(events[i])
            i += 1


def load_events(path: Path) -> tuple[list[Event], int]:
    """The event objects of a JSON-lines file (an event or an array of events per
    line, as `cxstream replay` reads), and how many lines or items are not objects."""
    events: list[Event] = []
    other = 0
    with open(path, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                other += 1
                continue
            for item in doc if isinstance(doc, list) else [doc]:
                if isinstance(item, dict):
                    events.append(item)
                else:
                    other += 1
    return events, other


def rebase(events: Sequence[Event], latest_ms: int) -> list[Event]:
    """The same events moved in time, gaps kept, so that the latest is at `latest_ms`.

    A file recorded earlier, replayed to a live worker, would otherwise fall outside
    every window. `ts` keeps its form (RFC 3339 text or epoch ms); events without a
    readable `ts` are left as they are.
    """
    stamps = [_ts_ms(event.get("ts")) for event in events]
    known = [ts for ts in stamps if ts is not None]
    if not known:
        return list(events)
    shift = latest_ms - max(known)
    out = []
    for event, ts in zip(events, stamps, strict=True):
        if ts is not None:
            old, moved = event["ts"], ts + shift
            event = {**event, "ts": rfc3339(moved) if isinstance(old, str) else type(old)(moved)}
        out.append(event)
    return out


def _ts_ms(ts: Any) -> int | None:
    """Epoch ms of a `ts` value of SPEC section 1 (text or a number), None if unreadable."""
    if isinstance(ts, str):
        try:
            return parse_timestamp(ts)
        except InvalidEvent:
            return None
    if isinstance(ts, int | float) and not isinstance(ts, bool) and float(ts).is_integer():
        return int(ts)
    return None


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - started, value
