"""The `cxstream` command line.

Errors an operator can fix print as one line plus a hint, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import IO

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

    from cxstream.app import run_worker
    from cxstream.config import load_settings

    settings = load_settings()
    logging.basicConfig(
        level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run_worker(settings, loglevel=args.loglevel)


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

    worker = sub.add_parser("worker", help="run the stream processor with its sinks")
    worker.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    worker.set_defaults(func=cmd_worker)
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
    sys.exit(main())
