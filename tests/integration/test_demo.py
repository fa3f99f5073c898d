"""`cxstream demo` headless: metrics reach its Redis and /metrics, and it leaves nothing behind.

The demo runs as a real subprocess, as a user would start it. While it runs the
test polls the Redis and Prometheus endpoints the demo prints, and records every
process below it (from /proc, recursively: the broker, Redis, the worker, the
generator and anything they start); after it has exited none of them may be alive.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from infra import wait_until

# Startup (broker, worker joining its group) takes 10-20 s on a 2-core machine;
# the first metrics must show within 60 s.
FIRST_METRICS_S = 60.0
STOP_S = 45.0


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the fields follow the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], fields[19]


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.update(int(p) for p in path.read_text().split())
    return found


class DemoRun:
    """`cxstream demo --no-live ...` with its output collected line by line."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CXSTREAM_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cxstream.cli", "demo", "--no-live", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.descendants: dict[int, str] = {}  # pid -> start time
        self.commands: dict[int, str] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def printed(self, pattern: str) -> str | None:
        match = re.search(pattern, self.output)
        return match.group(1) if match else None

    def collect(self) -> None:
        """Record every live process below the demo."""
        todo = [self.proc.pid]
        while todo:
            for child in _children(todo.pop()):
                stat = _stat(child)
                if stat is None:
                    continue
                self.descendants.setdefault(child, stat[1])
                if self.descendants[child] == stat[1]:
                    # Read every time: a child seen between fork and exec still shows
                    # its parent's command line (an exiting one shows none: keep the last).
                    with contextlib.suppress(OSError):
                        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                        if cmdline:
                            self.commands[child] = cmdline.replace(b"\0", b" ").decode()
                todo.append(child)

    def started_all_parts(self) -> bool:
        """Whether the broker, Redis, the worker and the generator were seen running."""
        commands = " | ".join(self.commands.values())
        return all(
            part in commands for part in ("tansu", "redis-server", "cli worker", "cli generate")
        )

    def survivors(self) -> list[int]:
        """Recorded descendants still running (same pid and start time, not a zombie)."""
        alive = []
        for pid, started in self.descendants.items():
            stat = _stat(pid)
            if stat is not None and stat[1] == started and stat[0] != "Z":
                alive.append(pid)
        return alive

    def wait(self, timeout: float) -> int:
        """Wait for the demo to exit, recording its processes meanwhile."""

        def exited() -> bool:
            self.collect()
            return self.proc.poll() is not None

        wait_until(exited, timeout=timeout, interval=0.2, message=f"demo exit\n{self.output}")
        self._reader.join(timeout=5)
        return self.proc.returncode

    def kill_all(self) -> None:
        """Clean up after a failed test: the demo and whatever it left, by pid."""
        if self.proc.poll() is None:
            self.collect()
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for pid in self.survivors():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def demo_run() -> Iterator[list[DemoRun]]:
    runs: list[DemoRun] = []
    yield runs
    for run in runs:
        run.kill_all()


def redis_events(url: str) -> int:
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        value = client.hget("cx:metrics:1h:all", "events")
    except redis.RedisError:
        return 0
    finally:
        client.close()
    return int(value or 0)


def prometheus_events(url: str) -> float:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "cx_events" and sample.labels.get("window") == "1h"
    )


def wait_for_metrics(run: DemoRun) -> tuple[int, float]:
    """Poll the demo's Redis and /metrics (as printed) until both show events."""
    seen = {"redis": 0, "prometheus": 0.0}

    def both_have_events() -> bool:
        run.collect()
        assert run.proc.poll() is None, f"demo exited early:\n{run.output}"
        redis_url = run.printed(r"Redis on (redis://\S+)")
        metrics_url = run.printed(r"Prometheus metrics on (http://\S+/metrics)")
        if redis_url is not None and not seen["redis"]:
            seen["redis"] = redis_events(redis_url)
        if metrics_url is not None and not seen["prometheus"]:
            seen["prometheus"] = prometheus_events(metrics_url)
        return bool(seen["redis"] and seen["prometheus"])

    wait_until(
        both_have_events,
        timeout=FIRST_METRICS_S,
        interval=0.5,
        message=f"metrics in Redis and /metrics ({seen})",
    )
    return int(seen["redis"]), seen["prometheus"]


def test_demo_headless_reaches_redis_and_metrics_and_leaves_nothing(
    demo_run: list[DemoRun],
) -> None:
    started = time.monotonic()
    run = DemoRun("--for", "25s")
    demo_run.append(run)
    in_redis, in_prometheus = wait_for_metrics(run)
    assert in_redis > 0 and in_prometheus > 0
    assert time.monotonic() - started < FIRST_METRICS_S

    assert run.wait(timeout=25 + FIRST_METRICS_S + STOP_S) == 0, run.output
    assert run.started_all_parts(), run.commands
    assert run.survivors() == []
    assert "first metrics after" in run.output
    assert re.search(r"1h/all · events [\d,]+ ", run.output), run.output


def test_demo_stops_cleanly_on_sigint(demo_run: list[DemoRun]) -> None:
    run = DemoRun("--for", "5m")
    demo_run.append(run)
    wait_for_metrics(run)
    run.proc.send_signal(signal.SIGINT)
    assert run.wait(timeout=STOP_S) == 0, run.output
    assert run.started_all_parts(), run.commands
    assert run.survivors() == []
    assert "stopped; nothing left running" in run.output


def test_view_fits_a_small_terminal() -> None:
    from rich.console import Console

    from cxstream.demo import Snapshot, render, summary_line

    snap = Snapshot(
        window="5m",
        scope="product=web_app",
        scopes=["all", "channel=web", "product=web_app"],
        fields={"nps": -12.5, "nps_ci95": 30.1, "nps_n": 24, "csat": 0.41, "csat_ci95_low": 0.3},
        exit_pages=[("/", 39.0), ("/docs/quickstart", 12.0)],
        alerts=[
            {"severity": "critical", "rule": "demo_csat_low", "metric": "csat", "value": 0.41},
            {"severity": "warning", "rule": "demo_nps_low", "metric": "nps", "value": -12.5},
        ],
        events_per_s=20.4,
        worker_up=True,
        first_metrics_s=12.5,
    )
    console = Console(width=80, record=True, color_system=None)
    console.print(render(snap, "Prometheus http://127.0.0.1:9108/metrics  ·  Redis not running"))
    text = console.export_text()
    assert len(text.splitlines()) <= 24
    for shown in ("-12.5", "± 30.1", "41.0 %", "(3/3)", "demo_csat_low", "demo_nps_low"):
        assert shown in text
    line = summary_line(snap)
    assert "5m/product=web_app" in line and "NPS -12.5 (n 24)" in line
    assert "alerts firing 2" in line
