"""Private services on this machine: free ports, throwaway servers, a worker's environment.

`cxstream demo`, the integration tests and the benchmarks all run a worker
against services of their own on 127.0.0.1; they share this module so that
there is one way to run such a server (:class:`LocalServer`: a redis-server
here, the Tansu broker in :class:`cxstream.kafka.LocalBroker`, beside the Kafka
plumbing it needs) and one set of settings for a worker on the local broker.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from cxstream.errors import CxStreamError

__all__ = [
    "LocalRedis",
    "LocalRedisError",
    "LocalServer",
    "free_port",
    "local_worker_env",
    "terminate_group",
]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on `host` right now.

    The kernel picks it (bind to port 0), so two callers do not get the same
    port; another process may still take it before the caller binds it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def terminate_group(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """End `proc` and every process in its group (it was started in its own session)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; children that ignored SIGTERM still get SIGKILL.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return


def local_worker_env(
    *,
    broker_url: str,
    redis_url: str,
    config: Path,
    app_id: str,
    datadir: Path,
    metrics_port: int,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a `cxstream worker` on the local test broker.

    `base` (default: this process's environment) without its `CXSTREAM_*`
    settings, which may name a production broker or SASL credentials that have
    no place next to a throwaway broker, plus the worker's settings of SPEC
    section 6, the Tansu compatibility switch and a short group session timeout
    (6 s: a worker that is killed hands its partitions on sooner).
    """
    env = {
        key: value
        for key, value in (os.environ if base is None else base).items()
        if not key.startswith("CXSTREAM_")
    }
    env.update(
        {
            "CXSTREAM_BROKER": broker_url,
            "CXSTREAM_REDIS_URL": redis_url,
            "CXSTREAM_METRICS_PORT": str(metrics_port),
            "CXSTREAM_METRICS_BIND": "127.0.0.1",
            "CXSTREAM_CONFIG": str(config),
            "CXSTREAM_APP_ID": app_id,
            "CXSTREAM_DATADIR": str(datadir),
            "CXSTREAM_BROKER_COMPAT": "tansu",
            "CXSTREAM_KAFKA_SESSION_TIMEOUT_S": "6",
        }
    )
    return env


_LIVE_SERVERS: weakref.WeakSet[LocalServer] = weakref.WeakSet()


@atexit.register
def _close_live_servers() -> None:
    # A server outlives its Python parent otherwise (it runs in its own session).
    for server in list(_LIVE_SERVERS):
        server.close()


class LocalServer:
    """A throwaway server on 127.0.0.1, run as a subprocess in its own session.

    A subclass says how to start it (`_command`) and when it serves (`_ready`).
    Its log is `log_name` in `directory` (default: a temporary directory, removed
    by :meth:`close`). :meth:`start` returns once the server is ready;
    :meth:`stop` ends it and every process it made, and :meth:`close` also
    removes what it made, which happens at interpreter exit to servers still
    running. Its own session keeps a Ctrl-C meant for the parent from reaching
    it: the parent stops its parts in its own order.
    """

    what: ClassVar[str] = "server"
    log_name: ClassVar[str] = "server.log"
    error: ClassVar[type[CxStreamError]] = CxStreamError

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        directory: Path | None = None,
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._startup_timeout_s = startup_timeout_s
        self._directory = directory
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state}>"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    @property
    def directory(self) -> Path:
        """Where the server works and logs (made on first use)."""
        if self._directory is None:
            prefix = f"cxstream-{type(self).__name__.lower()}-"
            self._tmpdir = tempfile.TemporaryDirectory(prefix=prefix)
            self._directory = Path(self._tmpdir.name)
        return self._directory

    @property
    def log_path(self) -> Path:
        """The server's stdout and stderr."""
        return self.directory / self.log_name

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (fault tests signal it)."""
        return self._proc.pid if self._proc is not None and self.running else None

    @property
    def returncode(self) -> int | None:
        """The exit status of a server that has exited, else None."""
        return None if self._proc is None else self._proc.poll()

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return "(no log)"

    def start(self) -> Self:
        """Start the server and wait until it is ready.

        Raises the class's `error` with the end of the log if the server exits or
        is not ready within `startup_timeout_s`.
        """
        if self.running:
            return self
        cmd = self._command()
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LIVE_SERVERS.add(self)
        deadline = time.monotonic() + self._startup_timeout_s
        while not self._ready():
            exited = self._proc.poll() is not None
            if exited or time.monotonic() > deadline:
                why = (
                    f"exited with {self._proc.returncode}"
                    if exited
                    else f"did not answer within {self._startup_timeout_s:g} s"
                )
                tail = self.log_tail()
                self.stop()
                raise self.error(f"{self.what} on {self.host}:{self.port} {why}; its log:\n{tail}")
            time.sleep(0.05)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM to the server's group, SIGKILL after `timeout_s`; safe to call twice."""
        proc, self._proc = self._proc, None
        _LIVE_SERVERS.discard(self)
        if proc is not None:
            terminate_group(proc, timeout_s)

    def kill(self) -> None:
        """SIGKILL the server's group (an outage, no clean shutdown) and wait until it is gone."""
        proc, self._proc = self._proc, None
        _LIVE_SERVERS.discard(self)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def close(self) -> None:
        """Stop the server and remove its directory if it made one."""
        self.stop()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
            self._directory = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LocalRedisError(CxStreamError):
    """redis-server is missing, or did not start; the message says which and why."""


class LocalRedis(LocalServer):
    """A private `redis-server` that keeps nothing on disk.

    `url` stays valid across :meth:`restart_empty`, which outage tests need:
    kill Redis, let the worker notice, bring back an empty one on the same port.
    """

    what = "redis-server"
    log_name = "redis.log"
    error = LocalRedisError

    def __init__(
        self,
        port: int | None = None,
        *,
        binary: str | None = None,
        directory: Path | None = None,
        startup_timeout_s: float = 10.0,
    ) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise LocalRedisError("redis-server is not installed: apt-get install -y redis-server")
        self.binary = found
        super().__init__(port, directory=directory, startup_timeout_s=startup_timeout_s)

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT/0`, the form CXSTREAM_REDIS_URL takes."""
        return f"redis://{self.host}:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
        ]  # fmt: skip

    def _ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def restart_empty(self) -> None:
        """Kill the server and start an empty one on the same port."""
        self.kill()
        self.start()
