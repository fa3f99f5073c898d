"""`cxstream alerts`: follow the alerts topic and print alerts as they come.

Readable by default, one alert a line, coloured by severity when the output
is a terminal (critical red, warning yellow, info cyan; resolved green):

    2026-11-27 08:05:12  FIRING    warning   nps_low|1h|product=web  NPS 12.5 (n=57) below 20 ...
    2026-11-27 08:41:40  RESOLVED  warning   nps_low|1h|product=web  NPS 31.2 (n=80) no longer ...

`--json` prints each message exactly as the worker sent it, one per line, for
machines (`jq`, log shippers). Without `--from-beginning` only alerts sent
from now on are shown. Broker, topic and Kafka security come from the same
settings as `cxstream worker` (CXSTREAM_BROKER, CXSTREAM_CONFIG, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import datetime
from typing import IO, Any, Final

import orjson

from cxstream.alerts import Alert
from cxstream.config import Settings
from cxstream.errors import CxStreamError

__all__ = ["add_parser", "cmd_alerts", "follow_alerts", "format_alert"]

SEVERITY_STYLES: Final = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
RESOLVED_STYLE: Final = "green"
_TOPIC_POLL_S: Final = 1.0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `alerts` on the `cxstream` subcommands (`sub` from `add_subparsers`)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "alerts",
        help="follow the alerts topic and print alerts as they come",
        description="Follow the alerts topic (topics.alerts, default cx.alerts) and print "
        "each alert as it is sent: readable and coloured by severity, or JSON lines.",
    )
    parser.add_argument(
        "--json", action="store_true", help="print each alert as its JSON message, one per line"
    )
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="print every alert still in the topic first, then follow",
    )
    parser.set_defaults(func=cmd_alerts)
    return parser


def cmd_alerts(args: argparse.Namespace) -> int:
    from cxstream.config import load_settings

    settings = load_settings()
    try:
        return asyncio.run(
            follow_alerts(settings, json_lines=args.json, from_beginning=args.from_beginning)
        )
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how one stops following


def format_alert(alert: Alert) -> Any:
    """One readable line (a rich `Text`): time, state, severity, key, message."""
    from rich.text import Text

    when = datetime.fromtimestamp(alert.at / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    style = RESOLVED_STYLE if alert.state == "resolved" else SEVERITY_STYLES.get(alert.severity)
    message = alert.message.removeprefix("resolved: ")
    line = Text(f"{when}  ")
    line.append(f"{alert.state.upper():<9} {alert.severity:<9}", style=style or "")
    line.append(f" {alert.key}  ", style="bold")
    line.append(message)
    return line


def _usage(message: str, hint: str) -> CxStreamError:
    # cli.py imports this module inside build_parser; by then UsageError exists.
    from cxstream.cli import UsageError

    return UsageError(message, hint)


async def follow_alerts(
    settings: Settings,
    *,
    json_lines: bool = False,
    from_beginning: bool = False,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """Print the alerts of `settings.topics.alerts` until cancelled.

    Waits for the topic when it does not exist yet (no worker with alert rules
    has started). Raises a `UsageError` with a hint when the broker cannot be
    reached.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaConnectionError
    from rich.console import Console

    from cxstream.kafka import client_security, correct_end_offsets

    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    bootstrap = ",".join(settings.bootstrap_servers)
    topic = settings.topics.alerts
    sec = settings.kafka
    security = client_security(sec)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **security,
    )
    # aiokafka logs each failed connection attempt; the one-line error below says it.
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        await consumer.start()
    except Exception as exc:
        await consumer.stop()
        # aiokafka's own text only repeats the address it could not reach.
        reason = "no broker answered" if isinstance(exc, KafkaConnectionError) else str(exc)
        raise _usage(
            f"cannot connect to Kafka at {bootstrap}: {reason or type(exc).__name__}",
            "start a broker or set CXSTREAM_BROKER (e.g. kafka://localhost:9092)",
        ) from None
    finally:
        kafka_log.setLevel(level)
    console = Console(file=out, highlight=False, soft_wrap=True)
    try:
        waiting = False
        while topic not in await consumer.topics():
            if not waiting:
                print(
                    f"cxstream alerts: waiting for topic {topic} (created when a worker starts)",
                    file=err,
                    flush=True,
                )
                waiting = True
            await asyncio.sleep(_TOPIC_POLL_S)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            # Some brokers report an end short of the last batch's records; fix it
            # up, or a new follower would print a few old alerts first.
            reported = await consumer.end_offsets(tps)
            probe = AIOKafkaConsumer(
                bootstrap_servers=bootstrap, enable_auto_commit=False, **security
            )
            for tp, end in (await correct_end_offsets(probe, reported)).items():
                consumer.seek(tp, end)
        print(f"cxstream alerts: following {topic} on {bootstrap}", file=err, flush=True)
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            records = sorted(
                (r for batch in batches.values() for r in batch),
                key=lambda r: (r.timestamp, r.partition, r.offset),
            )
            for record in records:
                _print(record, console, out, err, json_lines=json_lines)
    finally:
        await consumer.stop()


def _print(record: Any, console: Any, out: IO[str], err: IO[str], *, json_lines: bool) -> None:
    value: bytes = record.value or b""
    try:
        alert = Alert.from_json(value)
    except ValueError as exc:
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        print(f"cxstream alerts: skipped {where}, not an alert: {exc}", file=err, flush=True)
        return
    if json_lines:
        out.write(orjson.dumps(orjson.loads(value)).decode() + "\n")
        out.flush()
    else:
        console.print(format_alert(alert))
        out.flush()
