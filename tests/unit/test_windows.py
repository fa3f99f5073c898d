"""Window arithmetic (SPEC section 2): window starts, bucket starts, covers, edges.

A window W of granularity g evaluated at `now` covers

    floor(now, g) - W + g  <=  ts  <=  now

i.e. the current, partial granule plus the W/g - 1 whole granules before it.
"""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cxstream.engine.windows import HOUR_MS, MINUTE_MS, WINDOWS, Window, bucket_start, cover, window
from cxstream.replay import replay_lines

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR


def ms(text: str) -> int:
    """Epoch ms of an ISO date-time with offset, in integers."""
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(milliseconds=1)


# 2026-11-27T08:30:15.500Z: neither minute- nor hour-aligned.
NOW = ms("2026-11-27T08:30:15.500+00:00")
# 2026-11-27T08:00:00.000Z: minute- and hour-aligned, floor(now, g) == now.
NOW_ALIGNED = ms("2026-11-27T08:00:00.000+00:00")
# 1969-12-30T23:58:58.500Z: before 1970, where floor must go toward -infinity.
NOW_BEFORE_1970 = ms("1969-12-30T23:58:58.500+00:00")


def test_the_five_windows() -> None:
    assert [(w.name, w.width_ms, w.granularity_ms) for w in WINDOWS] == [
        ("5m", 5 * MIN, MIN),
        ("1h", HOUR, MIN),
        ("24h", DAY, MIN),
        ("7d", 7 * DAY, HOUR),
        ("30d", 30 * DAY, HOUR),
    ]
    assert MINUTE_MS == MIN and HOUR_MS == HOUR


@pytest.mark.parametrize(
    ("name", "now_ms", "expected"),
    [
        # now 08:30:15.5 -> floor to the minute 08:30:00; start = 08:30 - W + 1 min
        ("5m", NOW, ms("2026-11-27T08:26:00+00:00")),  # 08:30 - 5 min + 1 min
        ("1h", NOW, ms("2026-11-27T07:31:00+00:00")),  # 08:30 - 60 min + 1 min
        ("24h", NOW, ms("2026-11-26T08:31:00+00:00")),  # 08:30 - 24 h + 1 min
        # hour granularity: floor to the hour 08:00; start = 08:00 - W + 1 h
        ("7d", NOW, ms("2026-11-20T09:00:00+00:00")),  # Nov 27 08:00 - 7 d + 1 h
        ("30d", NOW, ms("2026-10-28T09:00:00+00:00")),  # Nov 27 08:00 - 30 d + 1 h
        # now on an hour boundary: floor(now) == now
        ("5m", NOW_ALIGNED, ms("2026-11-27T07:56:00+00:00")),
        ("1h", NOW_ALIGNED, ms("2026-11-27T07:01:00+00:00")),
        ("24h", NOW_ALIGNED, ms("2026-11-26T08:01:00+00:00")),
        ("7d", NOW_ALIGNED, ms("2026-11-20T09:00:00+00:00")),
        ("30d", NOW_ALIGNED, ms("2026-10-28T09:00:00+00:00")),
        # small integers: 0 - 300_000 + 60_000 = -240_000
        ("5m", 0, -240_000),
        ("5m", 59_999, -240_000),  # floor(59_999, 1 min) = 0
        ("5m", 60_000, -180_000),  # 60_000 - 300_000 + 60_000
        # before 1970: floor(-1, 1 min) = -60_000; -60_000 - 300_000 + 60_000
        ("5m", -1, -300_000),
        # floor(-1, 1 h) = -3_600_000; -3_600_000 - 7 * 86_400_000 + 3_600_000
        ("7d", -1, -7 * 86_400_000),
    ],
)
def test_window_start(name: str, now_ms: int, expected: int) -> None:
    assert window(name).start_ms(now_ms) == expected


@pytest.mark.parametrize(
    ("ts", "width", "expected"),
    [
        (0, MIN, 0),
        (1, MIN, 0),
        (59_999, MIN, 0),
        (60_000, MIN, 60_000),
        (60_001, MIN, 60_000),
        (3_599_999, HOUR, 0),
        (3_600_000, HOUR, 3_600_000),
        (123_456_789, HOUR, 122_400_000),  # 123_456_789 // 3_600_000 = 34; 34 * 3_600_000
        (123_456_789, MIN, 123_420_000),  # 123_456_789 // 60_000 = 2057; 2057 * 60_000
        # negative ts floors toward -infinity, not toward 0
        (-1, MIN, -60_000),
        (-59_999, MIN, -60_000),
        (-60_000, MIN, -60_000),
        (-60_001, MIN, -120_000),
        (-1, HOUR, -3_600_000),
        (-3_600_001, HOUR, -7_200_000),
        (NOW, MIN, ms("2026-11-27T08:30:00+00:00")),
        (NOW, HOUR, ms("2026-11-27T08:00:00+00:00")),
    ],
)
def test_bucket_start(ts: int, width: int, expected: int) -> None:
    assert bucket_start(ts, width) == expected


def test_unknown_window_and_bad_width() -> None:
    with pytest.raises(ValueError, match="unknown window"):
        window("2h")
    with pytest.raises(ValueError, match="not a multiple"):
        Window("odd", 90_000, MIN)


# -- cover ------------------------------------------------------------------------


def _expand(buckets: list[tuple[int, int]]) -> list[int]:
    """The minute starts a cover's buckets hold, with repeats (an overlap repeats one)."""
    out: list[int] = []
    for width, start in buckets:
        assert width in (MIN, HOUR)
        assert start % width == 0, f"bucket {start} is not aligned to its width {width}"
        out.extend(range(start, start + width, MIN))
    return sorted(out)


H0 = ms("2026-11-27T08:00:00+00:00")

COVER_CASES = [
    # (start, end, expected buckets or None when only the tiling is checked)
    (H0, H0, []),
    (H0, H0 + MIN, [(MIN, H0)]),
    # inside one hour: minutes only
    (
        H0 + 10 * MIN,
        H0 + 13 * MIN,
        [(MIN, H0 + 10 * MIN), (MIN, H0 + 11 * MIN), (MIN, H0 + 12 * MIN)],
    ),
    # 07:58 .. 09:02:  |07:58|07:59|====08:00 hour====|09:00|09:01|
    (
        H0 - 2 * MIN,
        H0 + HOUR + 2 * MIN,
        [
            (MIN, H0 - 2 * MIN),
            (MIN, H0 - MIN),
            (HOUR, H0),
            (MIN, H0 + HOUR),
            (MIN, H0 + HOUR + MIN),
        ],
    ),
    # 07:58 .. 08:02 crosses an hour boundary without a whole hour: minutes only
    (H0 - 2 * MIN, H0 + 2 * MIN, [(MIN, H0 - 2 * MIN + i * MIN) for i in range(4)]),
    # whole hours only
    (H0, H0 + 3 * HOUR, [(HOUR, H0), (HOUR, H0 + HOUR), (HOUR, H0 + 2 * HOUR)]),
    # a 24 h window's range at NOW: 2026-11-26T08:31 .. 2026-11-27T09:00
    (ms("2026-11-26T08:31:00+00:00"), H0 + HOUR, None),
    # 30 days of hours
    (ms("2026-10-28T09:00:00+00:00"), H0 + HOUR, None),
    # before 1970 and across 0
    (-3 * HOUR - 7 * MIN, 2 * HOUR + 5 * MIN, None),
    (-59 * MIN, -MIN, None),
]


@pytest.mark.parametrize(("start", "end", "expected"), COVER_CASES)
def test_cover_tiles_the_range(
    start: int, end: int, expected: list[tuple[int, int]] | None
) -> None:
    buckets = cover(start, end)
    if expected is not None:
        assert buckets == expected
    # Every minute of [start, end) exactly once: the union is the range, no overlap.
    assert _expand(buckets) == list(range(start, end, MIN))
    # Few as possible: no more than 59 minute buckets on either ragged end.
    assert sum(1 for w, _ in buckets if w == MIN) <= 2 * 59


def test_cover_random_ranges_tile_exactly() -> None:
    rng = random.Random(20261127)
    for _ in range(300):
        start = rng.randrange(-100 * HOUR, 100 * HOUR, MIN)
        end = start + rng.randrange(0, 30 * HOUR, MIN)
        buckets = cover(start, end)
        assert _expand(buckets) == list(range(start, end, MIN)), (start, end)
        # the hour buckets are exactly the whole hours inside the range
        hours = [s for w, s in buckets if w == HOUR]
        first_whole = -(-start // HOUR) * HOUR
        assert hours == list(range(first_whole, end - HOUR + 1, HOUR))


@pytest.mark.parametrize(("start", "end"), [(1, MIN), (0, MIN + 1), (-30_000, MIN)])
def test_cover_refuses_unaligned_bounds(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="minute-aligned"):
        cover(start, end)


# -- window edges, through replay ------------------------------------------------------
#
# For each window, three events, each of its own user:
#
#           before   first                                    now
#   ... ------|--------[=oldest granule=][ ... whole granules ... ][partial granule]--->
#           start-1  start                                        floor(now,g)  now
#
#   before = start - 1 ms (last ms of the granule before the window): out
#   first  = start (first ms of the oldest granule):                  in
#   now    = now (last ms covered):                                   in

_ids = itertools.count()


def _line(ts: int, user: str) -> bytes:
    event: dict[str, Any] = {
        "event_id": f"e{next(_ids)}",
        "type": "click",
        "ts": ts,
        "user_id": user,
        "properties": {"element": "buy"},
    }
    return json.dumps(event).encode()


def _edges(name: str, now_ms: int) -> dict[str, int]:
    w = window(name)
    # start worked out independently of Window.start_ms: floor, minus width, plus g
    start = now_ms - now_ms % w.granularity_ms - w.width_ms + w.granularity_ms
    return {"before": start - 1, "first": start, "now": now_ms}


EDGE_CASES = [
    (name, now_ms, marks, expected)
    for name in ("5m", "1h", "24h", "7d", "30d")
    for now_ms in (NOW, NOW_ALIGNED, NOW_BEFORE_1970)
    for marks, expected in (
        (("before", "first", "now"), 2),
        (("before", "now"), 1),
        (("first",), 1),
        (("now",), 1),
    )
]


@pytest.mark.parametrize(("name", "now_ms", "marks", "expected"), EDGE_CASES)
def test_window_edges_through_replay(
    name: str, now_ms: int, marks: tuple[str, ...], expected: int
) -> None:
    edges = _edges(name, now_ms)
    lines = [_line(edges[mark], f"u-{mark}") for mark in marks]
    report = replay_lines(lines, now_ms=now_ms).report
    assert report["now"] == now_ms
    assert report["accepted"] == len(marks)
    assert report["windows"][name]["all"]["events"] == expected
    assert report["windows"][name]["all"]["active_users"] == expected


def test_edge_values() -> None:
    # At NOW = 2026-11-27T08:30:15.500Z the starts are those of test_window_start.
    assert _edges("5m", NOW)["first"] == ms("2026-11-27T08:26:00+00:00")
    assert _edges("30d", NOW)["before"] == ms("2026-10-28T08:59:59.999+00:00")
    # Before 1970: floor(23:58:58.5, 1 min) = 23:58, - 5 min + 1 min = 23:54
    assert _edges("5m", NOW_BEFORE_1970)["first"] == ms("1969-12-30T23:54:00+00:00")
    # floor(23:58:58.5, 1 h) = 23:00, - 7 d + 1 h = Dec 24 00:00
    assert _edges("7d", NOW_BEFORE_1970)["first"] == ms("1969-12-24T00:00:00+00:00")
    assert NOW_BEFORE_1970 < 0


# One event at T = 08:30:15.500 and windows evaluated later and later: they keep
# rolling with no new event.
#
#   T      T+4m   T+5m   T+59m     T+24h              T+7d           T+30d
#   |x------|------|------|----------|------ ... -------|------ ... ----|------>
#
ROLLING_CASES = [
    # now offset from T -> expected events per window (5m, 1h, 24h, 7d, 30d)
    (0, (1, 1, 1, 1, 1)),
    # T + 4 min = 08:34:15.5 -> 5m start 08:30, T's minute: in
    (4 * MIN, (1, 1, 1, 1, 1)),
    # T + 5 min = 08:35:15.5 -> 5m start 08:31: out
    (5 * MIN, (0, 1, 1, 1, 1)),
    # T + 59 min = 09:29:15.5 -> 1h start 08:30: in
    (59 * MIN, (0, 1, 1, 1, 1)),
    # T + 60 min = 09:30:15.5 -> 1h start 08:31: out
    (60 * MIN, (0, 0, 1, 1, 1)),
    # T + 23 h 59 min -> 24h start (next day) 08:30: in
    (DAY - MIN, (0, 0, 1, 1, 1)),
    (DAY, (0, 0, 0, 1, 1)),
    # 7d: floor(T + 7d - 1h, 1 h) = Dec 4 07:00 -> start Nov 27 08:00: in
    (7 * DAY - HOUR, (0, 0, 0, 1, 1)),
    # floor(T + 7d, 1 h) = Dec 4 08:00 -> start Nov 27 09:00: out
    (7 * DAY, (0, 0, 0, 0, 1)),
    (30 * DAY - HOUR, (0, 0, 0, 0, 1)),
]


@pytest.mark.parametrize(("offset", "expected"), ROLLING_CASES)
def test_windows_keep_rolling(offset: int, expected: tuple[int, ...]) -> None:
    report = replay_lines([_line(NOW, "u1")], now_ms=NOW + offset).report
    got = tuple(report["windows"][w]["all"]["events"] for w in ("5m", "1h", "24h", "7d", "30d"))
    assert got == expected


def test_event_older_than_30_days_is_in_no_window() -> None:
    # 30 d after T the hour of T is out of the 30d window: counted nowhere, and its
    # scopes (seen only more than 30 days ago) are not reported.
    report = replay_lines([_line(NOW, "u1")], now_ms=NOW + 30 * DAY).report
    assert report["accepted"] == 1
    for name in ("5m", "1h", "24h", "7d", "30d"):
        per_scope = report["windows"][name]
        assert set(per_scope) <= {"all"}
        assert all(f["events"] == 0 and f["active_users"] == 0 for f in per_scope.values())
