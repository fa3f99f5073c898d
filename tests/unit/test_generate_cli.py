"""`cxstream generate`: JSON lines that are valid, reproducible and as many as asked for;
invalid lines rejected for the reason they were made for; the plan's clock arithmetic;
pacing against the wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from cxstream.cli import main
from cxstream.events import Event, decode_message, validate_event
from cxstream.generate import REJECT_REASONS, TrafficModel
from cxstream.generate_cli import (
    BadLines,
    GenerateSummary,
    TrafficPlan,
    _pace,
    event_ts_ms,
    parse_duration_s,
    plan_traffic,
    traffic,
)

from infra import wait_for

START = "2026-11-27T08:00:00Z"
START_MS = 1_795_766_400_000
TEN_MIN_MS = 600_000
NOW_MS = 1_795_800_000_000


def generate(capsysbinary: pytest.CaptureFixture[bytes], *args: str) -> list[bytes]:
    assert main(["generate", "--out", "-", *args]) == 0
    return capsysbinary.readouterr().out.splitlines()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("90s", 90.0),
        ("250ms", 0.25),
        ("1.5d", 129_600.0),
        (" 20s ", 20.0),
    ],
)
def test_duration(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "m", "10x", "1h 30m", "-5m", "5m10"])
def test_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration_s(text)


def test_stdout_is_valid_json_lines_about_rate_times_duration(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    before = time.time_ns() // 1_000_000
    lines = generate(capsysbinary, "--duration", "10m", "--rate", "5", "--seed", "1")
    after = time.time_ns() // 1_000_000
    # 5 events/s over 600 s; sessions come in bursts, so allow a quarter either way.
    assert 0.75 * 3000 <= len(lines) <= 1.25 * 3000
    stamps = []
    for line in lines:
        event = orjson.loads(line)
        assert isinstance(event, dict)
        validate_event(event, after)  # raises InvalidEvent if it is not valid
        stamps.append(event_ts_ms(event))
    assert stamps == sorted(stamps)
    # By default the span ends now: recent enough for every window, never in the future.
    assert before - TEN_MIN_MS <= stamps[0] and stamps[-1] <= after


def test_same_seed_and_start_same_output(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    args = ("--duration", "10m", "--rate", "5", "--start", START)
    first = generate(capsysbinary, *args, "--seed", "1")
    again = generate(capsysbinary, *args, "--seed", "1")
    other = generate(capsysbinary, *args, "--seed", "2")
    assert first == again
    assert first != other
    stamps = [event_ts_ms(orjson.loads(line)) for line in first]
    assert min(stamps) >= START_MS and max(stamps) <= START_MS + TEN_MIN_MS


def test_bad_lines_are_rejected_by_replay_for_every_reason(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    args = ("--duration", "10m", "--rate", "5", "--seed", "7", "--start", START)
    clean = generate(capsysbinary, *args)
    mixed = generate(capsysbinary, *args, "--bad-ratio", "0.2")
    # The valid events are the same with or without bad lines; the rest are the bad ones.
    good = [line for line in mixed if line in set(clean)]
    assert good == clean
    bad_count = len(mixed) - len(clean)
    assert 0.15 <= bad_count / len(mixed) <= 0.25

    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(mixed) + b"\n")
    end = "2026-11-27T08:10:00Z"  # the span's end: the clock the bad lines were made for
    assert main(["replay", str(path), "--now", end]) == 0
    report = orjson.loads(capsysbinary.readouterr().out)
    assert sum(report["rejected"].values()) == bad_count
    assert set(report["rejected"]) == set(REJECT_REASONS)
    assert report["accepted"] + report["duplicates"] == len(clean)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "0s"], "expected a duration > 0"),
        (["--bad-ratio", "1"], "expected a share from 0"),
        (["--rate", "-3"], "expected a number > 0"),
        (["--users", "0"], "expected an int >= 1"),
        (["--start", "yesterday"], "epoch milliseconds or an RFC 3339"),
        (["--incident", "csat:all"], "incident 'csat:all'"),
    ],
)
def test_bad_arguments(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--out", "-", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_incident_scope_no_event_has(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", "--out", "-", "--incident", "csat:product=web:drop=0.3@5m"])
    assert code == 2
    assert "no generated event has product 'web'" in capsys.readouterr().err


def namespace(**given: Any) -> argparse.Namespace:
    args: dict[str, Any] = {
        "out": None,
        "backfill": False,
        "duration": None,
        "start": None,
        "rate": 20.0,
        "users": 500,
        "incident": [],
        "messy": False,
        "bad_ratio": 0.0,
    }
    args.update(given)
    return argparse.Namespace(**args)


HOUR_MS = 3_600_000


@pytest.mark.parametrize(
    ("given", "start_ms", "duration_s", "shift_ms", "paced"),
    [
        # live: starts now, every event due at its own ts
        ({}, NOW_MS, math.inf, 0, True),
        # live from a past start: event time moved onto the wall clock
        ({"start": NOW_MS - HOUR_MS}, NOW_MS - HOUR_MS, math.inf, HOUR_MS, True),
        ({"duration": 600.0}, NOW_MS, 600.0, 0, True),
        # backfill: an hour ago (or one duration ago) in event time, then live
        ({"backfill": True}, NOW_MS - HOUR_MS, math.inf, 0, True),
        ({"backfill": True, "duration": 7200.0}, NOW_MS - 2 * HOUR_MS, 7200.0, 0, True),
        (
            {"backfill": True, "start": NOW_MS - 5 * HOUR_MS},
            NOW_MS - 5 * HOUR_MS,
            math.inf,
            0,
            True,
        ),
        # a file: the hour (or duration) up to now, as fast as possible
        ({"out": "-"}, NOW_MS - HOUR_MS, 3600.0, 0, False),
        ({"out": "-", "duration": 600.0}, NOW_MS - 600_000, 600.0, 0, False),
        ({"out": "-", "start": START_MS}, START_MS, 3600.0, 0, False),
    ],
)
def test_plan(
    given: dict[str, Any], start_ms: int, duration_s: float, shift_ms: int, paced: bool
) -> None:
    plan = plan_traffic(namespace(**given), NOW_MS, seed=1)
    assert plan.model.start_ms == start_ms
    assert plan.model.duration_s == duration_s
    assert plan.shift_ms == shift_ms
    assert plan.paced is paced
    assert plan.bad_now_ms == (None if "out" not in given else start_ms + duration_s * 1000)


def test_backfill_from_the_future_is_refused() -> None:
    with pytest.raises(ValueError, match="future"):
        plan_traffic(namespace(backfill=True, start=NOW_MS + 60_000), NOW_MS, seed=1)


def reason_of(line: str, now_ms: int) -> str | None:
    items = decode_message(line.encode(), now_ms)
    assert len(items) == 1
    return None if isinstance(items[0], Event) else items[0].reason


def test_bad_lines_cycle_through_the_reasons() -> None:
    bad = BadLines(3)
    made = [bad.next(NOW_MS) for _ in range(2 * len(REJECT_REASONS))]
    assert [reason for reason, _ in made] == list(REJECT_REASONS) * 2
    for reason, line in made:
        assert reason_of(line, NOW_MS) == reason


def test_live_bad_lines_stay_invalid_while_they_wait() -> None:
    # Made a minute ahead and at most 30 s old: a line sent up to 30 s after its
    # batch was made, and read by the worker up to 30 s after that, keeps its reason.
    bad = BadLines(5, ahead_ms=60_000, fresh_ms=30_000)
    for step in range(60):
        now = NOW_MS + step * 7_000
        reason, line = bad.next(now)
        for read_at in (now, now + 30_000):
            assert reason_of(line, read_at) == reason


def test_bad_share_is_the_ratio() -> None:
    model = TrafficModel(seed=2, start_ms=START_MS, duration_s=3600, rate=5, users=100)
    items = list(traffic(TrafficPlan(model=model, bad_ratio=0.1)))
    share = sum(item is None for item in items) / len(items)
    assert 0.085 <= share <= 0.115


class FakeEmitter:
    """Records when each event was sent, by the wall clock."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, dict[str, Any]]] = []
        self.flushes = 0

    async def send(self, event: dict[str, Any]) -> None:
        self.sent.append((time.time_ns() // 1_000_000, dict(event)))

    async def flush(self) -> None:
        self.flushes += 1


async def test_live_events_go_out_when_due_stamped_with_the_wall_clock() -> None:
    now = time.time_ns() // 1_000_000
    # Event time an hour back, moved onto the wall clock: due over the next 2 s.
    model = TrafficModel(seed=4, start_ms=now - HOUR_MS, duration_s=2, rate=40, users=50)
    plan = TrafficPlan(model=model, shift_ms=HOUR_MS)
    emitter = FakeEmitter()
    summary = GenerateSummary(seed=4)
    await _pace(plan, emitter, None, "t", summary, asyncio.Event(), None)
    expected = [event_ts_ms(e) + HOUR_MS for e in model.events()]
    assert len(emitter.sent) == summary.events == len(expected) > 0
    for (sent_at, event), due in zip(emitter.sent, expected, strict=True):
        assert event["ts"] == due
        assert sent_at >= due - 5  # never early (a few ms of clock rounding)
    assert emitter.flushes >= 1


async def test_stop_ends_a_paced_run_at_once() -> None:
    now = time.time_ns() // 1_000_000
    model = TrafficModel(seed=4, start_ms=now, duration_s=math.inf, rate=2, users=50)
    stop = asyncio.Event()
    summary = GenerateSummary(seed=4)
    run = asyncio.create_task(
        _pace(TrafficPlan(model=model), FakeEmitter(), None, "t", summary, stop, None)
    )
    await wait_for(lambda: summary.events >= 1, timeout=20, message="a first paced event")
    stop.set()
    await asyncio.wait_for(run, timeout=2.0)
    assert summary.events < 40
