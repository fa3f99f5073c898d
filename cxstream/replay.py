"""`cxstream replay`: every window and scope of SPEC section 2 from a JSON-lines file.

It drives the same engine as the worker, as a single partition whose stream time
is `--now` or, by default, the largest `ts` seen so far (which ends as the largest
`ts` of the valid events, so nothing is in the future).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from cxstream.engine import (
    DEFAULT_CSAT_THRESHOLDS,
    WINDOWS,
    DimensionCap,
    Outcome,
    PartitionState,
    evaluate_scope,
    live_scopes,
)
from cxstream.engine.store import UntrackedBucketStore
from cxstream.events import Event, decode_message
from cxstream.heap import LongLivedHeap

__all__ = ["ReplayResult", "replay_lines"]

MAX_REPORTED_LINES = 20
SETTLE_EVERY_LINES = 10_000  # see cxstream/heap.py


@dataclass(slots=True)
class ReplayResult:
    """The replay report plus what stderr should say about bad lines."""

    report: dict[str, Any]
    bad_lines: list[tuple[int, str, str]] = field(default_factory=list)  # (line, reason, error)
    bad_line_count: int = 0


def replay_lines(
    lines: Iterable[bytes],
    *,
    now_ms: int | None = None,
    max_dimension_values: int = 50,
    top_n: int = 20,
    csat_thresholds: Mapping[int, int] = DEFAULT_CSAT_THRESHOLDS,
    progress: IO[str] | None = None,
    pack_buckets: bool = False,
) -> ReplayResult:
    """Run the engine over JSON lines (each an event or a batch); blank lines skipped.

    Buckets stay unpacked by default: replay holds one partition, whose buckets are
    a small part of its memory, and packing them cost about a fifth of replay's
    speed on the replay benchmark.
    """
    state = PartitionState(
        cap=DimensionCap(max_dimension_values),
        csat_thresholds=csat_thresholds,
        dedupe_horizon_ms=None,
        # Packing needs to know what changed since the last packing; nothing else here does.
        store=None if pack_buckets else UntrackedBucketStore(),
        pack_buckets=pack_buckets,
    )
    if now_ms is not None:
        state.advance(now_ms)
    heap = LongLivedHeap()
    try:
        return _replay(lines, state, now_ms, top_n, progress, heap)
    finally:
        heap.release()


def _replay(
    lines: Iterable[bytes],
    state: PartitionState,
    now_ms: int | None,
    top_n: int,
    progress: IO[str] | None,
    heap: LongLivedHeap,
) -> ReplayResult:
    rejected: Counter[str] = Counter()
    result = ReplayResult(report={})
    duplicates = accepted = 0
    max_ts: int | None = None
    started = last_report = time.monotonic()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if number % SETTLE_EVERY_LINES == 0:
            heap.settle()
        bad_here: list[tuple[str, str]] = []
        for item in decode_message(line.rstrip(b"\r\n"), now_ms):
            if not isinstance(item, Event):
                rejected[item.reason] += 1
                bad_here.append((item.reason, item.error))
                continue
            if now_ms is None and (max_ts is None or item.ts_ms > max_ts):
                max_ts = item.ts_ms
                state.advance(max_ts)
            if state.offer(item) == Outcome.DUPLICATE:
                duplicates += 1
            else:
                accepted += 1
        if bad_here:
            result.bad_line_count += 1
            if len(result.bad_lines) < MAX_REPORTED_LINES:
                reason, error = bad_here[0]
                more = f" (+{len(bad_here) - 1} more in this batch)" if len(bad_here) > 1 else ""
                result.bad_lines.append((number, reason, error + more))
        if progress is not None and number % 50_000 == 0:
            now = time.monotonic()
            if now - last_report >= 2:
                last_report = now
                rate = number / (now - started)
                print(f"replay: {number:,} lines, {rate:,.0f} lines/s", file=progress)
    final_now = now_ms if now_ms is not None else (max_ts if max_ts is not None else 0)
    result.report = build_report(state, final_now, top_n)
    result.report.update(
        rejected=dict(sorted(rejected.items())), duplicates=duplicates, accepted=accepted
    )
    return result


def build_report(state: PartitionState, now_ms: int, top_n: int) -> dict[str, Any]:
    """The JSON document of SPEC section 7 (plus the top lists) at `now_ms`."""
    windows: dict[str, dict[str, Any]] = {w.name: {} for w in WINDOWS}
    features: dict[str, dict[str, Any]] = {w.name: {} for w in WINDOWS}
    tops: dict[str, dict[str, Any]] = {w.name: {} for w in WINDOWS}
    for scope in sorted(live_scopes(state.store, now_ms)):
        for name, res in evaluate_scope(state.store, scope, now_ms, top_n).items():
            windows[name][scope] = res.fields
            features[name][scope] = res.features
            tops[name][scope] = res.as_dict()
    return {"now": now_ms, "windows": windows, "features": features, "top": tops}


def print_bad_lines(result: ReplayResult, out: IO[str] = sys.stderr) -> None:
    for number, reason, error in result.bad_lines:
        print(f"line {number}: {reason}: {error}", file=out)
    hidden = result.bad_line_count - len(result.bad_lines)
    if hidden > 0:
        print(f"... and {hidden} more bad lines", file=out)
