"""`cxstream generate`: synthetic traffic as JSON lines, or to Kafka in real time.

To stdout (`--out -`) or a file the whole span is written as fast as possible,
each event with its own event time. To Kafka (the default; broker and topics
from the settings, as for `cxstream worker`) events go out through the
`Emitter` at wall-clock pace:

- live (the default): the run starts now, or at `--start` with every `ts`
  moved onto the wall clock, so each event is stamped with the moment it is
  sent;
- `--backfill`: the run starts at `--start` (default: one `--duration`, or one
  hour, ago) and keeps its event time; what lies in the past is sent at once,
  then the stream continues in real time until `--duration` ends (no
  `--duration`: until stopped).

`--bad-ratio` mixes in deliberately invalid messages (every reject reason of
SPEC section 5 in turn), the share of all messages that are bad. The same
`--seed` and `--start` give the same output.
"""

from __future__ import annotations

__all__ = [
    "BadLines",
    "GenerateSummary",
    "TrafficPlan",
    "add_parser",
    "cmd_generate",
    "parse_duration_s",
    "plan_traffic",
    "traffic",
]

import argparse
import asyncio
import math
import random
import re
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from cxstream.errors import CxStreamError, InvalidEvent
from cxstream.events import parse_timestamp
from cxstream.generate import REJECT_REASONS, Incident, TrafficModel, generate_bad_lines

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DEFAULT_SPAN_S = 3600.0
_PROGRESS_EVERY_S = 5.0
_FLUSH_EVERY_S = 0.25
# Bad lines sent to a live worker are made for a clock a minute ahead and at
# most 30 s old, so a `future_timestamp` line (> 5 min ahead) is still in the
# future when the worker reads it, and every other line is not.
_BAD_AHEAD_MS = 60_000
_BAD_FRESH_MS = 30_000


def parse_duration_s(text: str) -> float:
    """Seconds in a duration such as `90s`, `10m`, `2h`, `1h30m`, `1.5d` or `250ms`.

    Raises ValueError saying what a duration looks like.
    """
    spec = text.strip()
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(spec):
        if match.start() != pos:
            break
        total += float(match[1]) * _UNIT_S[match[2]]
        pos = match.end()
    if not spec or pos != len(spec):
        raise ValueError(
            f"expected a duration: numbers with a unit ms, s, m, h or d, e.g. 10m or 1h30m; "
            f"got {text!r}"
        )
    return total


def duration_arg(text: str) -> float:
    """An argparse type: a duration such as `90s`, `10m` or `2h`, above zero."""
    try:
        seconds = parse_duration_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration > 0, got {text!r}")
    return seconds


def _time_arg(text: str) -> int:
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        return parse_timestamp(value)
    except InvalidEvent:
        raise argparse.ArgumentTypeError(
            f"expected epoch milliseconds or an RFC 3339 date-time such as "
            f"2026-11-27T08:00:00Z, got {text!r}"
        ) from None


def _incident_arg(text: str) -> Incident:
    try:
        return Incident.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return int(text)


def _ratio_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a share from 0 up to (not including) 1, got {text!r}"
        )
    return value


def _seed_arg(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `generate` on the `cxstream` subcommands (`sub` from `add_subparsers`)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "generate",
        help="synthetic traffic (users, sessions, surveys) to Kafka or JSON lines",
        description=(
            "Realistic synthetic customer-experience traffic. Without --out it is sent to "
            "Kafka (CXSTREAM_BROKER, topics from CXSTREAM_CONFIG) in real time, each "
            "event stamped with the moment it is sent (--backfill keeps event time and "
            "sends the past at once); with --out - it is written to stdout as JSON lines, "
            "as fast as possible."
        ),
    )
    parser.add_argument(
        "--rate", type=_positive_float, default=20.0, help="mean events per second (default 20)"
    )
    parser.add_argument(
        "--users", type=_positive_int, default=500, help="starting user population (default 500)"
    )
    parser.add_argument(
        "--duration",
        type=duration_arg,
        help="event time to cover, e.g. 10m or 2h (default: until Ctrl-C to Kafka, 1h to --out)",
    )
    parser.add_argument(
        "--seed", type=_seed_arg, help="random seed; same seed and --start, same output"
    )
    parser.add_argument(
        "--incident",
        type=_incident_arg,
        action="append",
        default=[],
        metavar="SPEC",
        help=(
            "bend a metric for a while, e.g. csat:product=web_app:drop=0.3@5m+10m "
            "(METRIC:SCOPE:drop|rise=AMOUNT[@START][+DURATION]; repeatable)"
        ),
    )
    parser.add_argument(
        "--start",
        type=_time_arg,
        help=(
            "event time of the start: epoch ms or RFC 3339 (default: now; with --out "
            "or --backfill, one --duration (or 1h) before now)"
        ),
    )
    parser.add_argument(
        "--messy",
        action="store_true",
        help="send what careless producers send: odd spellings, nulls, extra fields, duplicates",
    )
    parser.add_argument(
        "--bad-ratio",
        type=_ratio_arg,
        default=0.0,
        metavar="SHARE",
        help="share of deliberately invalid messages, for the dead letters (default 0)",
    )
    parser.add_argument(
        "--backfill",
        action="store_true",
        help="keep event time: send the past as fast as possible, then continue live",
    )
    parser.add_argument(
        "--out", metavar="FILE", help="write JSON lines to FILE (- for stdout) instead of Kafka"
    )
    parser.set_defaults(func=cmd_generate)
    return parser


# --- the plan ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TrafficPlan:
    """What one `generate` run sends, and how its event time maps onto the wall clock.

    An event is due on the wall clock at `ts + shift_ms`; with a nonzero
    `shift_ms` it is also stamped with that time. `bad_now_ms` is the clock the
    invalid lines of a file are made for (None: the wall clock, for Kafka).
    """

    model: TrafficModel
    bad_ratio: float = 0.0
    shift_ms: int = 0
    paced: bool = True
    bad_now_ms: int | None = None

    @property
    def end_ms(self) -> float:
        return self.model.start_ms + self.model.duration_s * 1000


def plan_traffic(args: argparse.Namespace, now_ms: int, seed: int) -> TrafficPlan:
    """The plan for parsed `generate` arguments at wall-clock time `now_ms`.

    Raises ValueError when the arguments do not describe a run (an incident
    scope no generated event has, a backfill starting in the future, ...).
    """
    to_file = args.out is not None
    duration_s: float | None = args.duration
    if to_file:
        duration_s = duration_s if duration_s is not None else _DEFAULT_SPAN_S
        start_ms = args.start if args.start is not None else now_ms - round(duration_s * 1000)
        shift_ms, paced = 0, False
    elif args.backfill:
        span_s = duration_s if duration_s is not None else _DEFAULT_SPAN_S
        start_ms = args.start if args.start is not None else now_ms - round(span_s * 1000)
        if start_ms > now_ms:
            raise ValueError("--start is in the future; --backfill sends past event time")
        shift_ms, paced = 0, True
    else:
        start_ms = args.start if args.start is not None else now_ms
        shift_ms, paced = now_ms - start_ms, True
    model = TrafficModel(
        seed=seed,
        start_ms=start_ms,
        duration_s=duration_s if duration_s is not None else math.inf,
        rate=args.rate,
        users=args.users,
        incidents=tuple(args.incident),
        messy=args.messy,
    )
    bad_now_ms = round(start_ms + model.duration_s * 1000) if to_file else None
    return TrafficPlan(
        model=model,
        bad_ratio=args.bad_ratio,
        shift_ms=shift_ms,
        paced=paced,
        bad_now_ms=bad_now_ms,
    )


class BadLines:
    """Invalid messages for `--bad-ratio`, one reject reason after the other.

    Lines are made nine at a time (one per reason) for the clock passed to
    `next`, plus `ahead_ms`; a batch older than `fresh_ms` is made again before
    its next line is used, so the lines of a live run stay invalid for the
    reason they were made for.
    """

    def __init__(self, seed: int, *, ahead_ms: int = 0, fresh_ms: int | None = None) -> None:
        self._rng = random.Random(f"cxstream-bad-lines-{seed}")
        self._ahead_ms = ahead_ms
        self._fresh_ms = fresh_ms
        self._batch: list[tuple[str, str]] = []
        self._made_ms = 0
        self._count = 0

    def next(self, now_ms: int) -> tuple[str, str]:
        """The next (reason, line)."""
        pos = self._count % len(REJECT_REASONS)
        stale = self._fresh_ms is not None and now_ms - self._made_ms > self._fresh_ms
        if pos == 0 or stale or not self._batch:
            self._batch = generate_bad_lines(
                self._rng.getrandbits(32), len(REJECT_REASONS), now_ms=now_ms + self._ahead_ms
            )
            self._made_ms = now_ms
        self._count += 1
        return self._batch[pos]


BAD = None
"""What `traffic` yields where an invalid message goes."""


def traffic(plan: TrafficPlan) -> Iterator[dict[str, Any] | None]:
    """The plan's events in `ts` order, with `BAD` (None) where an invalid message goes.

    Before each event come k invalid messages, k geometric with mean
    r / (1 − r), so that a share r = `bad_ratio` of all messages is invalid.
    The draws use their own random stream: the events are the same with or
    without bad lines.
    """
    rng = random.Random(f"cxstream-bad-ratio-{plan.model.seed}")
    ratio = plan.bad_ratio
    for event in plan.model.events():
        while ratio and rng.random() < ratio:
            yield BAD
        yield event


def event_ts_ms(event: dict[str, Any]) -> int:
    ts = event["ts"]
    return parse_timestamp(ts) if isinstance(ts, str) else int(ts)


# --- running -----------------------------------------------------------------


@dataclass(slots=True)
class GenerateSummary:
    """What a run has sent so far; `line` reads it out for stderr."""

    seed: int
    started: float = field(default_factory=time.monotonic)
    events: int = 0
    bad: int = 0
    skipped: int = 0
    last_ts_ms: int | None = None

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.events / elapsed if elapsed > 0 else 0.0

    def line(self, verb: str) -> str:
        text = f"generate: {verb} {self.events:,} events"
        if self.bad:
            text += f" and {self.bad:,} invalid messages"
        text += f" in {time.monotonic() - self.started:,.1f} s ({self.rate():,.1f} events/s)"
        if self.last_ts_ms is not None:
            text += f", event time {_iso(self.last_ts_ms)}"
        if self.skipped:
            text += f"; {self.skipped} skipped as invalid"
        return text


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def write_lines(
    plan: TrafficPlan,
    out: IO[bytes],
    summary: GenerateSummary,
    progress: IO[str] | None = None,
) -> None:
    """Write the plan's events (and invalid lines) as JSON lines, as fast as possible."""
    bad_now = plan.bad_now_ms if plan.bad_now_ms is not None else _wall_ms()
    bad = BadLines(plan.model.seed)
    last_report = time.monotonic()
    last: dict[str, Any] | None = None
    for item in traffic(plan):
        if item is BAD:
            out.write(bad.next(bad_now)[1].encode() + b"\n")
            summary.bad += 1
            continue
        out.write(orjson.dumps(item) + b"\n")
        summary.events += 1
        last = item
        if progress is not None and summary.events % 10_000 == 0:
            summary.last_ts_ms = event_ts_ms(item)
            if time.monotonic() - last_report >= _PROGRESS_EVERY_S:
                last_report = time.monotonic()
                print(summary.line("wrote"), file=progress, flush=True)
    out.flush()
    if last is not None:
        summary.last_ts_ms = event_ts_ms(last)


async def send_to_kafka(
    plan: TrafficPlan,
    settings: Any,
    summary: GenerateSummary,
    stop: asyncio.Event,
    progress: IO[str] | None = None,
) -> None:
    """Send the plan to Kafka at wall-clock pace until it ends or `stop` is set."""
    from aiokafka import AIOKafkaProducer

    from cxstream.emit import Emitter
    from cxstream.kafka import client_security, ensure_topics

    security = client_security(settings.kafka)
    bootstrap = ",".join(settings.bootstrap_servers)
    topics = settings.topics
    emitter = Emitter(
        bootstrap,
        interactions_topic=topics.interactions,
        feedback_topic=topics.feedback,
        security=security,
    )
    raw: Any = None
    try:
        await emitter.start()
        if plan.bad_ratio:
            raw = AIOKafkaProducer(
                bootstrap_servers=bootstrap, max_request_size=2 * 1024 * 1024, **security
            )
            await raw.start()
    except Exception as exc:
        await emitter.stop()
        raise _usage(
            f"cannot connect to Kafka at {bootstrap}: {exc}",
            "start a broker or set CXSTREAM_BROKER (or use --out - for JSON lines)",
        ) from None
    try:
        # A topic the broker auto-creates on first send gets the broker's partition
        # count, and the worker then refuses it; create the inputs as the worker would.
        await ensure_topics(
            bootstrap,
            {topics.interactions: topics.partitions, topics.feedback: topics.partitions},
            security=security,
        )
        await _pace(plan, emitter, raw, topics.interactions, summary, stop, progress)
    finally:
        try:
            await emitter.stop()
        finally:
            if raw is not None:
                await raw.stop()


async def _pace(
    plan: TrafficPlan,
    emitter: Any,
    raw: Any,
    bad_topic: str,
    summary: GenerateSummary,
    stop: asyncio.Event,
    progress: IO[str] | None,
) -> None:
    bad = BadLines(plan.model.seed, ahead_ms=_BAD_AHEAD_MS, fresh_ms=_BAD_FRESH_MS)
    last_report = last_flush = time.monotonic()
    unflushed = False
    sent_since_yield = 0
    for item in traffic(plan):
        if stop.is_set():
            return
        if item is BAD:
            await raw.send(bad_topic, bad.next(_wall_ms())[1].encode())
            summary.bad += 1
            continue
        ts_ms = event_ts_ms(item)
        due_ms = ts_ms + plan.shift_ms
        delay_s = (due_ms - _wall_ms()) / 1000 if plan.paced else 0.0
        now = time.monotonic()
        if unflushed and (now - last_flush >= _FLUSH_EVERY_S or delay_s >= _FLUSH_EVERY_S):
            # Batches wait for more events; caught up with the clock, send what waits.
            await emitter.flush()
            last_flush, unflushed = time.monotonic(), False
        if delay_s > 0.002:
            try:
                await asyncio.wait_for(stop.wait(), delay_s)
                return
            except TimeoutError:
                pass
            sent_since_yield = 0
        if plan.shift_ms:
            item["ts"] = due_ms
        try:
            await emitter.send(item)
        except InvalidEvent as exc:
            summary.skipped += 1
            if summary.skipped <= 5 and progress is not None:
                print(f"generate: skipped an event: {exc}", file=progress, flush=True)
            continue
        summary.events += 1
        summary.last_ts_ms = due_ms
        unflushed = True
        sent_since_yield += 1
        if sent_since_yield >= 500:
            # Behind the clock nothing waits; let signal handlers and the producer run.
            await asyncio.sleep(0)
            sent_since_yield = 0
        if progress is not None and time.monotonic() - last_report >= _PROGRESS_EVERY_S:
            last_report = time.monotonic()
            print(summary.line("sent"), file=progress, flush=True)


def _usage(message: str, hint: str) -> CxStreamError:
    # Imported here: cxstream.cli imports this module to register the command.
    from cxstream.cli import UsageError

    return UsageError(message, hint)


def cmd_generate(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    try:
        plan = plan_traffic(args, _wall_ms(), seed)
    except ValueError as exc:
        raise _usage(str(exc), "see cxstream generate --help") from None
    summary = GenerateSummary(seed=seed)
    if args.out is not None:
        return _to_file(plan, args.out, summary)
    from cxstream.config import load_settings

    settings = load_settings()
    print(
        f"generate: {args.rate:g} events/s to {','.join(settings.bootstrap_servers)} "
        f"({settings.topics.interactions}, {settings.topics.feedback}), "
        f"{'backfill from ' + _iso(plan.model.start_ms) if args.backfill else 'live'}, "
        f"seed {seed}; Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    asyncio.run(_run_kafka(plan, settings, summary))
    print(summary.line("sent") + f"; seed {seed}", file=sys.stderr, flush=True)
    return 0


async def _run_kafka(plan: TrafficPlan, settings: Any, summary: GenerateSummary) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await send_to_kafka(plan, settings, summary, stop, sys.stderr)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _to_file(plan: TrafficPlan, path: str, summary: GenerateSummary) -> int:
    try:
        if path == "-":
            write_lines(plan, sys.stdout.buffer, summary, sys.stderr)
        else:
            try:
                handle = open(path, "wb")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise _usage(f"cannot write {path}: {exc.strerror}", "check the path") from None
            with handle:
                write_lines(plan, handle, summary, sys.stderr)
    except KeyboardInterrupt:
        print(summary.line("wrote") + " (interrupted)", file=sys.stderr, flush=True)
        return 130
    print(summary.line("wrote") + f"; seed {summary.seed}", file=sys.stderr, flush=True)
    return 0
