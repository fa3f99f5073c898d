"""`cxstream alerts` against the real broker: JSON lines, readable colours, errors."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from cxstream.alerts import Alert
from cxstream.kafka import ensure_topics, free_port

from integration.worker import write_config


def alert(state: str, severity: str = "critical", **kw: Any) -> Alert:
    fields: dict[str, Any] = dict(
        alert_id="a1",
        rule="csat_drop",
        state=state,
        severity=severity,
        metric="csat",
        window="1h",
        scope="channel=chat",
        value=0.61,
        n=80,
        at=int(time.time() * 1000),
        message="CSAT 0.61 (n=80) significantly below the 7d baseline 0.8 (p=0.00021) "
        "over 1h for channel=chat",
        comparison=True,
        baseline=0.8,
        p_value=0.00021,
    )
    fields.update(kw)
    return Alert(**fields)


async def produce(broker: str, topic: str, alerts: list[Alert]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        for a in alerts:
            await producer.send_and_wait(topic, a.to_json(), key=a.key.encode())
    finally:
        await producer.stop()


class Cli:
    """`cxstream alerts ARGS` as a subprocess, read line by line with deadlines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, env: dict[str, str], *args: str) -> Cli:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cxstream.cli",
            "alerts",
            *args,
            env={**os.environ, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def line(self, stream: Any, timeout: float = 20.0) -> str:
        raw = await asyncio.wait_for(stream.readline(), timeout)
        assert raw, "the command ended early"
        return str(raw.decode().rstrip("\n"))

    async def stdout_lines(self, n: int) -> list[str]:
        return [await self.line(self.proc.stdout) for _ in range(n)]

    async def following(self) -> None:
        """Wait for the command to say it follows the topic (on stderr)."""
        while "following" not in await self.line(self.proc.stderr):
            pass

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 10)


def env_for(broker: str, config: Path) -> dict[str, str]:
    return {"CXSTREAM_BROKER": f"kafka://{broker}", "CXSTREAM_CONFIG": str(config)}


@pytest.mark.asyncio
async def test_json_from_beginning_then_follows(
    broker: str, topic_prefix: str, tmp_path: Path
) -> None:
    topic = f"{topic_prefix}.alerts"
    await ensure_topics(broker, {topic: 3})
    earlier = [alert("firing"), alert("resolved", message="resolved: CSAT 0.79 (n=90)")]
    await produce(broker, topic, earlier)
    cli = await Cli.start(
        env_for(broker, write_config(tmp_path / "cx.yaml", topic_prefix)),
        "--json",
        "--from-beginning",
    )
    try:
        lines = await cli.stdout_lines(2)
        assert [orjson.loads(line) for line in lines] == [a.to_dict() for a in earlier]
        later = alert("firing", alert_id="a2")
        await produce(broker, topic, [later])
        [line] = await cli.stdout_lines(1)
        assert orjson.loads(line) == later.to_dict()
    finally:
        await cli.stop()


@pytest.mark.asyncio
async def test_readable_lines_coloured_by_severity(
    broker: str, topic_prefix: str, tmp_path: Path
) -> None:
    topic = f"{topic_prefix}.alerts"
    await ensure_topics(broker, {topic: 2})
    await produce(broker, topic, [alert("firing", alert_id="old")])
    env = {**env_for(broker, write_config(tmp_path / "cx.yaml", topic_prefix)), "FORCE_COLOR": "1"}
    cli = await Cli.start(env)
    try:
        await cli.following()
        await produce(
            broker,
            topic,
            [
                alert("firing", alert_id="new"),
                alert("resolved", alert_id="new", message="resolved: CSAT 0.8 (n=95) ok"),
                alert("firing", severity="info", alert_id="n3", rule="info_rule"),
            ],
        )
        critical, resolved, info = await cli.stdout_lines(3)
    finally:
        await cli.stop()
    # Only what arrived after the start: the old alert is not printed.
    assert "FIRING" in critical and "critical" in critical
    assert "csat_drop|1h|channel=chat" in critical
    assert "CSAT 0.61 (n=80) significantly below the 7d baseline 0.8" in critical
    assert "\x1b[1;31m" in critical  # bold red
    assert "RESOLVED" in resolved and "\x1b[32m" in resolved  # green
    assert "CSAT 0.8 (n=95) ok" in resolved and "resolved: " not in resolved
    assert "info_rule" in info and "\x1b[36m" in info  # cyan


@pytest.mark.asyncio
async def test_unreachable_broker_is_one_line_and_a_hint(tmp_path: Path) -> None:
    port = free_port()
    cli = await Cli.start({"CXSTREAM_BROKER": f"kafka://127.0.0.1:{port}", "CXSTREAM_CONFIG": ""})
    out, err = await asyncio.wait_for(cli.proc.communicate(), 60)
    assert cli.proc.returncode == 2
    assert out == b""
    lines = err.decode().splitlines()
    assert len(lines) == 2, lines
    expected = f"cxstream alerts: error: cannot connect to Kafka at 127.0.0.1:{port}"
    assert lines[0].startswith(expected)
    assert lines[1] == "hint: start a broker or set CXSTREAM_BROKER (e.g. kafka://localhost:9092)"
