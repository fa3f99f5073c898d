"""The `cxstream` command line.

Errors an operator can fix print as one line plus a hint, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

import orjson

from cxstream.errors import CxStreamError, InvalidEvent
from cxstream.events import parse_timestamp

__all__ = ["main"]


class UsageError(CxStreamError):
    """A command-line mistake; `hint` says what to do instead."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def parse_time_arg(text: str) -> int:
    """Epoch milliseconds from `--now`: an integer of epoch ms or an RFC 3339 date-time."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        return parse_timestamp(text)
    except InvalidEvent:
        raise UsageError(
            f"--now: expected epoch milliseconds or an RFC 3339 date-time, got {text!r}",
            "e.g. --now 2026-11-27T08:00:00Z or --now 1795766400000",
        ) from None


@contextlib.contextmanager
def open_input(path: str) -> Iterator[IO[bytes]]:
    """The file at `path`, or standard input for `-`, as bytes."""
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", "check the file name") from None
    with handle:
        yield handle


def cmd_replay(args: argparse.Namespace) -> int:
    from cxstream.config import load_settings
    from cxstream.replay import print_bad_lines, replay_lines

    settings = load_settings()
    now_ms = parse_time_arg(args.now) if args.now is not None else None
    with open_input(args.file) as handle:
        result = replay_lines(
            handle,
            now_ms=now_ms,
            max_dimension_values=settings.limits.max_dimension_values,
            top_n=settings.limits.top_n,
            csat_thresholds=settings.csat_thresholds,
            progress=sys.stderr,
        )
    print_bad_lines(result)
    sys.stdout.buffer.write(orjson.dumps(result.report, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import logging

    from cxstream.allocator import tune_malloc
    from cxstream.app import run_worker
    from cxstream.config import load_settings

    settings = load_settings()
    logging.basicConfig(
        level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    tuned = tune_malloc()  # before Faust starts its threads
    if tuned:
        logging.getLogger("cxstream").info(
            "malloc: %s", ", ".join(f"{k}={v}" for k, v in tuned.items())
        )
    return run_worker(settings, loglevel=args.loglevel)


def cmd_emit(args: argparse.Namespace) -> int:
    import asyncio

    from cxstream.config import load_settings

    settings = load_settings()
    with open_input(args.file) as handle:
        return asyncio.run(_emit(settings, handle, batch=not args.no_batch))


async def _emit(settings: Any, handle: IO[bytes], *, batch: bool) -> int:
    import time

    from cxstream.emit import Emitter, line_events
    from cxstream.events import Rejection
    from cxstream.kafka import client_security

    sec = settings.kafka
    emitter = Emitter(
        ",".join(settings.bootstrap_servers),
        interactions_topic=settings.topics.interactions,
        feedback_topic=settings.topics.feedback,
        batch=batch,
        security=client_security(sec),
    )
    try:
        await emitter.start()
    except Exception as exc:
        from cxstream.kafka import connect_problem

        # The cause (refused login, TLS, no broker), not aiokafka's "Unable to bootstrap".
        raise UsageError(
            await connect_problem(emitter.bootstrap, emitter.security, exc),
            "start a broker or set CXSTREAM_BROKER (and CXSTREAM_KAFKA_* for a secured one)",
        ) from None
    invalid = 0
    started = last = time.monotonic()
    try:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parsed = line_events(line.rstrip(b"\r\n"))
            if isinstance(parsed, Rejection):
                invalid += 1
                if invalid <= 20:
                    print(f"line {number}: {parsed.reason}: {parsed.error}", file=sys.stderr)
                continue
            for event in parsed:
                await emitter.send(event)
            if number % 10_000 == 0 and time.monotonic() - last >= 2:
                last = time.monotonic()
                rate = emitter.stats.events / (last - started)
                print(f"emit: {number:,} lines, {rate:,.0f} events/s", file=sys.stderr)
    finally:
        await emitter.stop()
    if invalid > 20:
        print(f"... and {invalid - 20} more invalid lines", file=sys.stderr)
    stats = emitter.stats
    print(
        f"emit: sent {stats.events} events in {stats.messages} messages; "
        f"{invalid} invalid lines skipped",
        file=sys.stderr,
    )
    return 1 if invalid else 0


Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxstream",
        description="Live customer-experience metrics from Kafka to Redis and Prometheus.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    replay = sub.add_parser(
        "replay", help="compute every window and scope from a JSON-lines file, no Kafka"
    )
    replay.add_argument("file", help="JSON-lines file of events or batches; - for stdin")
    replay.add_argument("--now", help="evaluation time: epoch ms or RFC 3339 (default: max ts)")
    replay.set_defaults(func=cmd_replay)

    emit = sub.add_parser("emit", help="validate JSON-lines events and produce them to Kafka")
    emit.add_argument("file", nargs="?", default="-", help="JSON-lines file; - for stdin")
    emit.add_argument(
        "--no-batch", action="store_true", help="one event per message instead of batches"
    )
    emit.set_defaults(func=cmd_emit)

    worker = sub.add_parser("worker", help="run the stream processor with its sinks")
    worker.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    worker.set_defaults(func=cmd_worker)

    from cxstream import alerts_cli

    alerts_cli.add_parser(sub)

    from cxstream import demo, generate_cli

    generate_cli.add_parser(sub)
    demo.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except UsageError as exc:
        print(f"cxstream {args.command}: error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 2
    except CxStreamError as exc:
        print(f"cxstream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cxstream {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    # `python -m cxstream.cli` runs this file as __main__; the commands' modules
    # import cxstream.cli, so use its main, or their UsageErrors lose the hint.
    from cxstream.cli import main as _main

    sys.exit(_main())
