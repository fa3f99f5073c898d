"""Run `cxstream worker` as a real subprocess for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from cxstream.local import free_port, local_worker_env


def write_config(path: Path, prefix: str, partitions: int = 4, **extra: Any) -> Path:
    """A YAML config with this test's own topics."""
    config: dict[str, Any] = {
        "topics": {
            "interactions": f"{prefix}.interactions",
            "feedback": f"{prefix}.feedback",
            "alerts": f"{prefix}.alerts",
            "deadletter": f"{prefix}.deadletter",
            "partitions": partitions,
        },
        "publish": {"interval_s": 0.5},
    }
    config.update(extra)
    path.write_text(yaml.safe_dump(config))
    return path


class WorkerProcess:
    """One `cxstream worker` with the environment of SPEC section 6."""

    def __init__(
        self,
        *,
        broker: str,
        redis_url: str,
        config: Path,
        app_id: str,
        datadir: Path,
        metrics_port: int | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.metrics_port = metrics_port or free_port()
        self.env = local_worker_env(
            broker_url=f"kafka://{broker}",
            redis_url=redis_url,
            config=config,
            app_id=app_id,
            datadir=datadir,
            metrics_port=self.metrics_port,
        )
        self.env.update(extra_env or {})
        self.log_path = datadir / f"worker-{self.metrics_port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cxstream.cli", "worker"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    def healthy(self) -> bool:
        return self.get("/healthz")[0] == 200

    def metrics_text(self) -> str:
        return self.get("/metrics")[1]

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9 the worker's whole process group."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def parse_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text format → {(name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def wait_seconds_left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
