"""The engine end to end through `replay_lines`, on small JSON-lines inputs.

Every case is written out here; expected values are worked out by hand in the
comments or, for distinct users, by a naive set computation in the test.

Times are relative to NOW = 2026-11-27T08:30:15.500Z, so the windows start at
(see tests/unit/test_windows.py):

    5m   2026-11-27T08:26:00      7d   2026-11-20T09:00:00
    1h   2026-11-27T07:31:00      30d  2026-10-28T09:00:00
    24h  2026-11-26T08:31:00
"""

from __future__ import annotations

import itertools
import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cxstream.replay import replay_lines

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SEC = 1_000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
WINDOW_NAMES = ("5m", "1h", "24h", "7d", "30d")


def ms(text: str) -> int:
    """Epoch ms of an ISO date-time with offset, in integers."""
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(milliseconds=1)


NOW = ms("2026-11-27T08:30:15.500+00:00")
assert NOW == 1_795_768_215_500

_ids = itertools.count()


def ev(
    type_: str, ts: int | str, user: str = "u1", props: dict[str, Any] | None = None, **env: Any
) -> dict[str, Any]:
    """One event dict; `event_id` is fresh unless given."""
    event: dict[str, Any] = {
        "event_id": env.pop("event_id", f"e{next(_ids)}"),
        "type": type_,
        "ts": ts,
        "user_id": user,
    }
    if props is not None:
        event["properties"] = props
    event.update(env)
    return event


def view(ts: int, user: str, session: str, page: str, **env: Any) -> dict[str, Any]:
    return ev("page_view", ts, user, {"page": page}, session_id=session, **env)


def run(items: list[Any], now_ms: int | None = NOW, **kw: Any) -> dict[str, Any]:
    """Replay one line per item (an event dict, a batch list, or raw bytes)."""
    lines = [i if isinstance(i, bytes) else json.dumps(i).encode() for i in items]
    return replay_lines(lines, now_ms=now_ms, **kw).report


def fields(report: dict[str, Any], window: str = "1h", scope: str = "all") -> dict[str, Any]:
    out: dict[str, Any] = report["windows"][window][scope]
    return out


def check(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """`got` has the `expected` values; None in `expected` means the field is absent."""
    for name, value in expected.items():
        if value is None:
            assert name not in got, name
        else:
            assert name in got, name
            assert got[name] == pytest.approx(value), name


# -- CSAT and CES on mixed scales ------------------------------------------------------

CSAT_ANSWERS = [
    # (scale, score): default thresholds 5 -> 4, 7 -> 6, 10 -> 8
    (5, 4),  # satisfied
    (5, 3),
    (7, 6),  # satisfied
    (7, 5),
    (10, 8),  # satisfied
    (10, 7),
    (None, 5),  # scale 5 by default: satisfied
    (None, 3),
]


@pytest.mark.parametrize(
    ("thresholds", "csat"),
    [
        (None, 4 / 8),  # the four marked above
        ({5: 5, 7: 7, 10: 10}, 1 / 8),  # only the default-scale 5 of 5
        ({5: 1, 7: 1, 10: 1}, 8 / 8),
        ({5: 4, 7: 7, 10: 9}, 2 / 8),  # 4 of 5 and 5 of 5
    ],
)
def test_csat_mixed_scales(thresholds: dict[int, int] | None, csat: float) -> None:
    events = []
    for i, (scale, score) in enumerate(CSAT_ANSWERS):
        props = {"score": score} if scale is None else {"score": score, "scale": scale}
        events.append(ev("csat", NOW - MIN, f"u{i}", props))
    kw: dict[str, Any] = {} if thresholds is None else {"csat_thresholds": thresholds}
    got = fields(run(events, **kw), "5m")
    check(got, {"csat_n": 8, "csat": csat})
    assert got["csat_ci95_low"] <= csat <= got["csat_ci95_high"]


@pytest.mark.parametrize(
    ("answers", "ces", "ces_easy"),
    [
        # mapped: 3 of 5 -> 1 + 2 * 6/4 = 4.0; 1 of 5 -> 1.0; 2 of 7 -> 2.0;
        # 7 (scale 7 by default) -> 7.0; 2 of 5 -> 1 + 6/4 = 2.5
        # mean (4 + 1 + 2 + 7 + 2.5) / 5 = 16.5 / 5 = 3.3; easy (<= 3): 1, 2, 2.5 -> 3/5
        ([(3, 5), (1, 5), (2, 7), (7, None), (2, 5)], 3.3, 0.6),
        # 5 of 5 -> 7.0 and 1 of 7 -> 1.0: mean 4.0, easy 1/2
        ([(5, 5), (1, 7)], 4.0, 0.5),
        # 3 of 7 -> 3.0 (easy, the bound) and 4 of 5 -> 5.5: mean 4.25, easy 1/2
        ([(3, 7), (4, 5)], 4.25, 0.5),
    ],
)
def test_ces_mixed_scales(
    answers: list[tuple[int, int | None]], ces: float, ces_easy: float
) -> None:
    events = []
    for i, (score, scale) in enumerate(answers):
        props = {"score": score} if scale is None else {"score": score, "scale": scale}
        events.append(ev("ces", NOW - MIN, f"u{i}", props))
    check(fields(run(events), "5m"), {"ces_n": len(answers), "ces": ces, "ces_easy": ces_easy})


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        # 9-10 promoters, 7-8 passives, 0-6 detractors: 2, 2, 7 of 11;
        # 100 * (2 - 7) / 11 = -45.45...
        (
            list(range(11)),
            {
                "nps_n": 11,
                "nps_promoters": 2,
                "nps_passives": 2,
                "nps_detractors": 7,
                "nps": -500 / 11,
            },
        ),
        # 9, 7, 6: one of each; 100 * (1 - 1) / 3 = 0
        ([9, 7, 6], {"nps_promoters": 1, "nps_passives": 1, "nps_detractors": 1, "nps": 0.0}),
        # one answer: no interval
        ([10], {"nps_n": 1, "nps": 100.0, "nps_ci95": None}),
    ],
)
def test_nps_classes(scores: list[int], expected: dict[str, Any]) -> None:
    events = [ev("nps", NOW - MIN, f"u{i}", {"score": s}) for i, s in enumerate(scores)]
    check(fields(run(events), "5m"), expected)


# -- sessions ------------------------------------------------------------------------

T0 = NOW - 3 * DAY  # room on both sides inside the 7d window

SESSION_CASES = [
    pytest.param(
        # 08:29:50 (/a, product p1) and 08:30:10 (/b, product p2), one session:
        #
        #        08:29            08:30        now
        #   ------|----x-----------|---x-----x------>
        #             /a               /b
        # counted once, in the 08:29 granule and in p1's scopes.
        [
            view(ms("2026-11-27T08:29:50+00:00"), "u1", "s1", "/a", product="p1"),
            view(ms("2026-11-27T08:30:10+00:00"), "u1", "s1", "/b", product="p2"),
        ],
        NOW,
        "5m",
        {
            "all": {"sessions": 1, "pageviews": 2, "pages_per_session": 2.0, "bounce_rate": 0.0},
            "product=p1": {"sessions": 1, "pageviews": 1, "pages_per_session": 2.0},
            "product=p2": {"sessions": 0, "pageviews": 1, "pages_per_session": None},
        },
        [["/b", 1]],
        id="spans-a-minute-boundary",
    ),
    pytest.param(
        # The same session at 08:34:00: the 5m window starts at 08:30, so the
        # session's granule (08:29) is out although its second view is in.
        [
            view(ms("2026-11-27T08:29:50+00:00"), "u1", "s1", "/a", product="p1"),
            view(ms("2026-11-27T08:30:10+00:00"), "u1", "s1", "/b", product="p2"),
        ],
        ms("2026-11-27T08:34:00+00:00"),
        "5m",
        {"all": {"sessions": 0, "pageviews": 1, "bounce_rate": None}},
        [],
        id="granule-of-the-first-view",
    ),
    pytest.param(
        # u1/s1: /a (bounce); u1/s2: /a /b /c (exit /c); u2/s1: /b /a (exit /a)
        # sessions 3, views 1 + 3 + 2 = 6, pages/session 6/3 = 2, bounce 1/3
        [
            view(NOW - 50 * MIN, "u1", "s1", "/a"),
            view(NOW - 40 * MIN, "u1", "s2", "/a"),
            view(NOW - 39 * MIN, "u1", "s2", "/b"),
            view(NOW - 38 * MIN, "u1", "s2", "/c"),
            view(NOW - 30 * MIN, "u2", "s1", "/b"),
            view(NOW - 29 * MIN, "u2", "s1", "/a"),
        ],
        NOW,
        "1h",
        {
            "all": {
                "sessions": 3,
                "pageviews": 6,
                "pages_per_session": 2.0,
                "bounce_rate": 1 / 3,
            }
        },
        [["/a", 2], ["/c", 1]],
        id="bounce",
    ),
    pytest.param(
        # views at t1 /a, t3 /c, t2 /b arriving in that order: exit is /c (largest ts);
        # a page_leave later than every view changes nothing
        [
            view(NOW - 10 * MIN, "u1", "s1", "/a"),
            view(NOW - 5 * MIN, "u1", "s1", "/c"),
            view(NOW - 7 * MIN, "u1", "s1", "/b"),
            ev("page_leave", NOW - MIN, "u1", {"page": "/b", "duration_ms": 1}, session_id="s1"),
        ],
        NOW,
        "1h",
        {"all": {"sessions": 1, "pageviews": 3, "bounce_rate": 0.0}},
        [["/c", 1]],
        id="exit-page-is-the-latest-view",
    ),
    pytest.param(
        # 08:29:30 /b (product p2) arrives first, then 08:20:00 /a (product p1): the
        # later-arriving view is the first view, so the session moves to p1 and to
        # the 08:20 granule (outside 5m, inside 1h).
        [
            view(ms("2026-11-27T08:29:30+00:00"), "u1", "s1", "/b", product="p2"),
            view(ms("2026-11-27T08:20:00+00:00"), "u1", "s1", "/a", product="p1"),
        ],
        NOW,
        "1h",
        {
            "all": {"sessions": 1, "pageviews": 2, "pages_per_session": 2.0},
            "product=p1": {"sessions": 1, "pageviews": 1, "bounce_rate": 0.0},
            "product=p2": {"sessions": 0, "pageviews": 1, "bounce_rate": None},
        },
        [["/b", 1]],
        id="out-of-order-first-view-moves-scope",
    ),
    pytest.param(
        [
            view(ms("2026-11-27T08:29:30+00:00"), "u1", "s1", "/b", product="p2"),
            view(ms("2026-11-27T08:20:00+00:00"), "u1", "s1", "/a", product="p1"),
        ],
        NOW,
        "5m",
        {"all": {"sessions": 0, "pageviews": 1}, "product=p2": {"sessions": 0}},
        [],
        id="out-of-order-first-view-moves-granule",
    ),
    pytest.param(
        # exactly 24 h after the previous view: the same session
        [view(T0, "u1", "s1", "/a"), view(T0 + DAY, "u1", "s1", "/b")],
        NOW,
        "7d",
        {"all": {"sessions": 1, "pageviews": 2, "bounce_rate": 0.0}},
        [["/b", 1]],
        id="gap-of-24h-same-session",
    ),
    pytest.param(
        # more than 24 h (by 1 ms): a new session with the same id
        [view(T0, "u1", "s1", "/a"), view(T0 + DAY + 1, "u1", "s1", "/b")],
        NOW,
        "7d",
        {"all": {"sessions": 2, "pageviews": 2, "pages_per_session": 1.0, "bounce_rate": 1.0}},
        [["/a", 1], ["/b", 1]],
        id="gap-over-24h-new-session",
    ),
    pytest.param(
        # an earlier view more than 24 h before the session: a session of its own
        [view(T0 + DAY + 1, "u1", "s1", "/b"), view(T0, "u1", "s1", "/a")],
        NOW,
        "7d",
        {"all": {"sessions": 2, "pageviews": 2, "bounce_rate": 1.0}},
        [["/a", 1], ["/b", 1]],
        id="earlier-view-over-24h-before",
    ),
    pytest.param(
        # T0 /a and T0+40h /c are two sessions until T0+20h /b bridges them (20 h on
        # each side): one session of 3 views, exit /c
        #
        #   T0          T0+20h        T0+40h
        #   x-----------x-------------x
        #   /a          /b (last)     /c
        [
            view(T0, "u1", "s1", "/a"),
            view(T0 + 40 * HOUR, "u1", "s1", "/c"),
            view(T0 + 20 * HOUR, "u1", "s1", "/b"),
        ],
        NOW,
        "7d",
        {"all": {"sessions": 1, "pageviews": 3, "pages_per_session": 3.0, "bounce_rate": 0.0}},
        [["/c", 1]],
        id="bridging-view-merges-two-sessions",
    ),
    pytest.param(
        # same as above but T0+20h has product p2: the merged session keeps T0's scope
        [
            view(T0, "u1", "s1", "/a", product="p1"),
            view(T0 + 40 * HOUR, "u1", "s1", "/c", product="p3"),
            view(T0 + 20 * HOUR, "u1", "s1", "/b", product="p2"),
        ],
        NOW,
        "7d",
        {
            "all": {"sessions": 1, "pageviews": 3},
            "product=p1": {"sessions": 1, "pages_per_session": 3.0},
            "product=p2": {"sessions": 0},
            "product=p3": {"sessions": 0},
        },
        [["/c", 1]],
        id="bridged-session-keeps-first-scope",
    ),
    pytest.param(
        # same (user, session id) on two users: two sessions
        [view(NOW - MIN, "u1", "s1", "/a"), view(NOW - MIN, "u2", "s1", "/a")],
        NOW,
        "5m",
        {"all": {"sessions": 2, "pageviews": 2, "bounce_rate": 1.0}},
        [["/a", 2]],
        id="session-id-is-per-user",
    ),
]


@pytest.mark.parametrize(("events", "now_ms", "window", "expected", "exits"), SESSION_CASES)
def test_sessions(
    events: list[dict[str, Any]],
    now_ms: int,
    window: str,
    expected: dict[str, dict[str, Any]],
    exits: list[list[Any]],
) -> None:
    report = run(events, now_ms)
    for scope, values in expected.items():
        check(fields(report, window, scope), values)
    assert report["top"][window]["all"]["exit_pages"] == exits


def test_bridged_sessions_do_not_depend_on_arrival_order() -> None:
    views = [
        view(T0, "u1", "s1", "/a"),
        view(T0 + 20 * HOUR, "u1", "s1", "/b"),
        view(T0 + 40 * HOUR, "u1", "s1", "/c"),
        view(T0 + 70 * HOUR, "u1", "s1", "/d"),  # 30 h later: a second session
    ]
    reports = [run(list(order)) for order in itertools.permutations(views)]
    first = reports[0]
    check(fields(first, "7d"), {"sessions": 2, "pageviews": 4, "bounce_rate": 0.5})
    assert first["top"]["7d"]["all"]["exit_pages"] == [["/c", 1], ["/d", 1]]
    for report in reports[1:]:
        assert report["windows"] == first["windows"]
        assert report["top"] == first["top"]


# -- duplicates ------------------------------------------------------------------------

DUPLICATE_CASES = [
    pytest.param(
        # the second copy has another score: ignored, the first wins
        [
            ev("nps", NOW - MIN, "u1", {"score": 10}, event_id="x"),
            ev("nps", NOW - MIN, "u1", {"score": 0}, event_id="x"),
        ],
        {"accepted": 1, "duplicates": 1, "rejected": {}},
        {"events": 1, "nps_n": 1, "nps_promoters": 1, "nps_detractors": 0},
        id="first-copy-wins",
    ),
    pytest.param(
        # another type and time, same identity: still a duplicate
        [
            ev("nps", NOW - MIN, "u1", {"score": 10}, event_id="x"),
            ev("click", NOW - 2 * MIN, "u1", {"element": "b"}, event_id="x"),
        ],
        {"accepted": 1, "duplicates": 1},
        {"events": 1, "clicks": 0, "nps_n": 1},
        id="content-ignored",
    ),
    pytest.param(
        # identity is (user_id, event_id): same id on two users is two events
        [
            ev("nps", NOW - MIN, "u1", {"score": 10}, event_id="x"),
            ev("nps", NOW - MIN, "u2", {"score": 0}, event_id="x"),
        ],
        {"accepted": 2, "duplicates": 0},
        {"events": 2, "nps_n": 2, "nps": 0.0, "active_users": 2},
        id="same-id-other-user",
    ),
    pytest.param(
        # a rejected copy (score 11) is not seen: the next valid copy is accepted,
        # the one after it is a duplicate
        [
            ev("nps", NOW - MIN, "u1", {"score": 11}, event_id="x"),
            ev("nps", NOW - MIN, "u1", {"score": 0}, event_id="x"),
            ev("nps", NOW - MIN, "u1", {"score": 10}, event_id="x"),
        ],
        {"accepted": 1, "duplicates": 1, "rejected": {"out_of_range": 1}},
        {"events": 1, "nps_n": 1, "nps_detractors": 1, "nps_promoters": 0},
        id="rejected-copy-not-seen",
    ),
    pytest.param(
        # a copy too far in the future is rejected and not seen
        [
            ev("nps", NOW + 10 * MIN, "u1", {"score": 10}, event_id="x"),
            ev("nps", NOW - MIN, "u1", {"score": 0}, event_id="x"),
        ],
        {"accepted": 1, "duplicates": 0, "rejected": {"future_timestamp": 1}},
        {"events": 1, "nps_n": 1, "nps_detractors": 1},
        id="future-copy-not-seen",
    ),
    pytest.param(
        # copies inside one batch and across a batch and a single line
        [
            [
                ev("click", NOW - MIN, "u1", {"element": "b"}, event_id="x"),
                ev("click", NOW - MIN, "u1", {"element": "b"}, event_id="x"),
            ],
            ev("click", NOW - MIN, "u1", {"element": "b"}, event_id="x"),
            [ev("click", NOW - MIN, "u1", {"element": "b"}, event_id="y")],
        ],
        {"accepted": 2, "duplicates": 2},
        {"events": 2, "clicks": 2},
        id="in-and-across-batches",
    ),
]


@pytest.mark.parametrize(("items", "totals", "expected"), DUPLICATE_CASES)
def test_duplicates(items: list[Any], totals: dict[str, Any], expected: dict[str, Any]) -> None:
    report = run(items)
    for name, value in totals.items():
        assert report[name] == value, name
    check(fields(report, "5m"), expected)


# -- batches ---------------------------------------------------------------------------


def _mixed_events() -> list[dict[str, Any]]:
    return [
        view(NOW - 30 * MIN, "u1", "s1", "/a", product="web"),
        view(NOW - 29 * MIN, "u1", "s1", "/b", product="web"),
        ev("click", NOW - 29 * MIN, "u1", {"element": "buy"}, channel="web"),
        ev("impression", NOW - 29 * MIN, "u1", {"element": "buy"}, channel="web"),
        ev("nps", NOW - 3 * MIN, "u2", {"score": 9}, touchpoint="checkout"),
        ev("csat", NOW - 3 * MIN, "u2", {"score": 6, "scale": 7}),
        ev("feature_used", NOW - 2 * DAY, "u3", {"feature": "export"}),
        ev("signup", NOW - 2 * DAY - HOUR, "u3"),
        ev("subscription_started", NOW - 5 * DAY, "u3", {"mrr": 9.5}),
        ev("support_ticket_resolved", NOW - HOUR, "u2", {"ticket_id": "T1", "contacts": 2}),
        ev("nps", NOW - 3 * MIN, "u2", {"score": 12}),  # rejected
    ]


@pytest.mark.parametrize("now_ms", [NOW, None])
def test_batches_equal_single_lines(now_ms: int | None) -> None:
    events = _mixed_events()
    singles = run(events, now_ms)
    # one batch per user, as the emitter sends them, plus blank lines and []
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_user[e["user_id"]].append(e)
    batched = run([b"", *by_user.values(), b"[]", b"   "], now_ms)
    # everything in one batch
    one = run([events], now_ms)
    assert singles["accepted"] == 10
    assert singles["rejected"] == {"out_of_range": 1}
    for report in (batched, one):
        assert report == singles


# -- activation ------------------------------------------------------------------------

S = NOW - 8 * DAY  # a signup inside 30d, outside 7d, with 7 days after it before now

ACTIVATION_CASES = [
    # (events, activation_rate, time_to_value_s)
    pytest.param(
        # signup ts + 7 d is still in: 7 * 86_400 s = 604_800 s
        [ev("feature_used", S + 7 * DAY, "u1", {"feature": "f"})],
        1.0,
        604_800.0,
        id="at-7d-in",
    ),
    pytest.param(
        [ev("feature_used", S + 7 * DAY + 1, "u1", {"feature": "f"})],
        0.0,
        None,
        id="7d-plus-1ms-out",
    ),
    pytest.param(
        [ev("feature_used", S - 1, "u1", {"feature": "f"})], 0.0, None, id="before-signup-out"
    ),
    pytest.param([ev("feature_used", S, "u1", {"feature": "f"})], 1.0, 0.0, id="same-ms-in"),
    pytest.param(
        # the first use counts, whatever the arrival order: 10 s
        [
            ev("feature_used", S + 30 * SEC, "u1", {"feature": "f"}),
            ev("feature_used", S + 10 * SEC, "u1", {"feature": "g"}),
        ],
        1.0,
        10.0,
        id="first-use-counts",
    ),
    pytest.param(
        # only uses within 7 d: S + 8 d is out, S + 1 h is in -> 3600 s
        [
            ev("feature_used", S + 8 * DAY, "u1", {"feature": "f"}),
            ev("feature_used", S + HOUR, "u1", {"feature": "f"}),
        ],
        1.0,
        3600.0,
        id="first-use-within-7d",
    ),
    pytest.param([ev("feature_used", S + MIN, "u2", {"feature": "f"})], 0.0, None, id="other-user"),
]


@pytest.mark.parametrize(("features", "rate", "ttv"), ACTIVATION_CASES)
def test_activation(features: list[dict[str, Any]], rate: float, ttv: float | None) -> None:
    report = run([ev("signup", S, "u1"), *features])
    check(
        fields(report, "30d"),
        {"signups": 1, "activation_rate": rate, "time_to_value_s": ttv},
    )
    # the signup is 8 days old: not in 7d, nor its activation
    check(fields(report, "7d"), {"signups": 0, "activation_rate": None, "time_to_value_s": None})


def test_activation_over_several_users_and_late_signup() -> None:
    events = [
        # u1: activated after 60 s
        ev("signup", S, "u1"),
        ev("feature_used", S + 60 * SEC, "u1", {"feature": "f"}),
        # u2: the feature use arrives before its signup (out of order): 180 s
        ev("feature_used", S + 180 * SEC, "u2", {"feature": "f"}),
        ev("signup", S, "u2"),
        # u3: never activated
        ev("signup", S, "u3"),
    ]
    # rate 2 / 3; time to value (60 + 180) / 2 = 120 s
    check(
        fields(run(events), "30d"),
        {"signups": 3, "activation_rate": 2 / 3, "time_to_value_s": 120.0},
    )


def test_activation_counts_in_the_signups_window() -> None:
    # signup 10 min ago, use 2 min ago: in 5m only the use, so no signup there
    events = [
        ev("signup", NOW - 10 * MIN, "u1"),
        ev("feature_used", NOW - 2 * MIN, "u1", {"feature": "f"}),
    ]
    report = run(events)
    check(fields(report, "5m"), {"signups": 0, "activation_rate": None})
    check(fields(report, "1h"), {"signups": 1, "activation_rate": 1.0, "time_to_value_s": 480.0})


# -- subscriptions -------------------------------------------------------------------

SUBSCRIPTION_EVENTS = [
    # older than 30 days: in no window, but in the all-time count (and its own scope)
    ev("subscription_started", NOW - 40 * DAY, "u1", product="legacy"),
    ev("subscription_started", NOW - 30 * MIN, "u2", product="app"),
    ev("subscription_started", NOW - 2 * DAY, "u3", product="app"),
    ev("subscription_cancelled", NOW - 10 * MIN, "u3", {"reason": "price"}, product="app"),
]


@pytest.mark.parametrize(
    ("window", "scope", "expected"),
    [
        # all: active = 3 started - 1 cancelled = 2 in every window
        # churn = cancelled / (active - started + cancelled)
        ("5m", "all", {"events": 0, "subs_started": 0, "subs_cancelled": 0, "churn_rate": 0.0}),
        # 2 - 1 + 1 = 2 -> 1/2
        ("1h", "all", {"events": 2, "subs_started": 1, "subs_cancelled": 1, "churn_rate": 0.5}),
        ("24h", "all", {"events": 2, "subs_started": 1, "subs_cancelled": 1, "churn_rate": 0.5}),
        # 2 - 2 + 1 = 1 -> 1/1
        ("7d", "all", {"events": 3, "subs_started": 2, "subs_cancelled": 1, "churn_rate": 1.0}),
        ("30d", "all", {"events": 3, "subs_started": 2, "subs_cancelled": 1, "churn_rate": 1.0}),
        # product=app: active 2 - 1 = 1; 1h: 1 - 1 + 1 = 1 -> 1/1
        ("1h", "product=app", {"active_subscribers": 1, "churn_rate": 1.0}),
        # 7d: 1 - 2 + 1 = 0 -> absent
        ("7d", "product=app", {"active_subscribers": 1, "churn_rate": None}),
        # product=legacy: only an event older than 30 days, still in every window
        ("5m", "product=legacy", {"events": 0, "active_subscribers": 1, "churn_rate": 0.0}),
        ("30d", "product=legacy", {"events": 0, "active_subscribers": 1, "churn_rate": 0.0}),
    ],
)
def test_subscriptions(window: str, scope: str, expected: dict[str, Any]) -> None:
    report = run(SUBSCRIPTION_EVENTS)
    got = fields(report, window, scope)
    check(got, expected)
    if scope == "all":
        assert got["active_subscribers"] == 2
    if "churn_rate" in got:
        assert got["retention_rate"] == pytest.approx(1 - got["churn_rate"])


def test_every_window_of_a_subscription_only_scope() -> None:
    report = run(SUBSCRIPTION_EVENTS[:1])
    for name in WINDOW_NAMES:
        assert set(report["windows"][name]) == {
            "all",
            "product=legacy",
            "channel=unknown",
            "touchpoint=unknown",
        }
        assert fields(report, name)["active_subscribers"] == 1


# -- stickiness ------------------------------------------------------------------------


def test_stickiness_only_in_24h() -> None:
    events = [
        ev("click", NOW - HOUR, "u1", {"element": "b"}),
        ev("click", NOW - 5 * DAY, "u1", {"element": "b"}),
        ev("click", NOW - 3 * DAY, "u2", {"element": "b"}),
        ev("click", NOW - 10 * DAY, "u3", {"element": "b"}),
        ev("click", NOW - 20 * MIN, "u4", {"element": "b"}),
    ]
    report = run(events)
    # 24h: u1, u4 -> 2; 30d: u1..u4 -> 4; 2 / 4
    check(fields(report, "24h"), {"active_users": 2, "stickiness": 0.5})
    check(fields(report, "1h"), {"active_users": 1, "stickiness": None})  # u4
    for name in ("5m", "1h", "7d", "30d"):
        assert "stickiness" not in fields(report, name)
    check(fields(report, "7d"), {"active_users": 3})  # u1, u2, u4
    check(fields(report, "30d"), {"active_users": 4})


# -- features and top lists ------------------------------------------------------------


def _feature_events() -> list[dict[str, Any]]:
    def use(minutes: int, user: str, feature: str) -> dict[str, Any]:
        return ev("feature_used", NOW - minutes * MIN, user, {"feature": feature})

    return [
        use(50, "u1", "export"),
        use(40, "u1", "export"),
        use(30, "u1", "beta"),
        use(45, "u2", "export"),
        use(44, "u2", "beta"),
        use(20, "u3", "search"),
        view(NOW - 10 * MIN, "u4", "s1", "/a"),
        view(NOW - 9 * MIN, "u4", "s1", "/b"),  # exit /b
        view(NOW - 8 * MIN, "u1", "s9", "/b"),
        view(NOW - 7 * MIN, "u1", "s9", "/a"),  # exit /a
        view(NOW - 6 * MIN, "u2", "s2", "/c"),  # exit /c
    ]


@pytest.mark.parametrize(
    ("top_n", "features", "pages", "exits"),
    [
        # distinct users: export {u1, u2}, beta {u1, u2}, search {u3}; ties by name
        (
            20,
            [["beta", 2], ["export", 2], ["search", 1]],
            [["/a", 2], ["/b", 2], ["/c", 1]],
            [["/a", 1], ["/b", 1], ["/c", 1]],
        ),
        (2, [["beta", 2], ["export", 2]], [["/a", 2], ["/b", 2]], [["/a", 1], ["/b", 1]]),
        (1, [["beta", 2]], [["/a", 2]], [["/a", 1]]),
    ],
)
def test_feature_usage_and_top_lists(
    top_n: int, features: list[Any], pages: list[Any], exits: list[Any]
) -> None:
    report = run(_feature_events(), top_n=top_n)
    # active users u1..u4 = 4: export 2/4, beta 2/4, search 1/4 (whatever top_n)
    assert report["features"]["1h"]["all"] == {"beta": 0.5, "export": 0.5, "search": 0.25}
    assert fields(report)["active_users"] == 4
    top = report["top"]["1h"]["all"]
    assert top == {"features": features, "pages": pages, "exit_pages": exits}


def test_feature_usage_follows_the_window() -> None:
    report = run(_feature_events())
    # 5m (from 08:26): every event is 6 min old or more, so no usage in any scope
    assert report["features"]["5m"]["all"] == {}
    assert all(usage == {} for usage in report["features"]["5m"].values())
    check(fields(report, "5m"), {"events": 0, "active_users": 0})
    # u1's uses are 30..50 min ago, the last one (beta) in 1h; nothing out of 1h
    assert report["features"]["24h"]["all"] == report["features"]["1h"]["all"]


# -- dimension cap ---------------------------------------------------------------------


def test_dimension_cap_products() -> None:
    products = [None, "A", "B", "C", "C", "A", "unknown", "other"]
    events = []
    for i, product in enumerate(products):
        env = {} if product is None else {"product": product}
        events.append(ev("click", NOW - MIN, f"u{i}", {"element": "b"}, **env))
    report = run(events, max_dimension_values=2)
    # unknown does not take a slot: a and b are admitted, c is counted as other;
    # a producer's own "other" lands there too
    scopes = {
        s: f["events"] for s, f in report["windows"]["5m"].items() if s.startswith("product=")
    }
    assert scopes == {"product=unknown": 2, "product=a": 2, "product=b": 1, "product=other": 3}


@pytest.mark.parametrize(
    ("dimension", "expected"),
    [
        # channel x, y admitted; z is other; the product cap is separate
        ("channel", {"channel=x": 1, "channel=y": 1, "channel=other": 2}),
        ("touchpoint", {"touchpoint=x": 1, "touchpoint=y": 1, "touchpoint=other": 2}),
    ],
)
def test_dimension_cap_per_dimension(dimension: str, expected: dict[str, int]) -> None:
    events = [
        ev("click", NOW - MIN, f"u{i}", {"element": "b"}, product=f"p{i}", **{dimension: v})
        for i, v in enumerate(["x", "y", "z", "z"])
    ]
    report = run(events, max_dimension_values=2)
    scopes = report["windows"]["5m"]
    got = {s: f["events"] for s, f in scopes.items() if s.startswith(dimension + "=")}
    assert got == expected
    # the products p0, p1 in, p2 and p3 other
    assert {s for s in scopes if s.startswith("product=")} == {
        "product=p0",
        "product=p1",
        "product=other",
    }


def test_dimension_cap_pages_and_features() -> None:
    events = [
        view(NOW - 4 * MIN, "u1", "s1", "/1"),
        view(NOW - 3 * MIN, "u2", "s1", "/2"),
        view(NOW - 2 * MIN, "u3", "s1", "/3"),
        ev("feature_used", NOW - MIN, "u1", {"feature": "f1"}),
        ev("feature_used", NOW - MIN, "u2", {"feature": "f2"}),
        ev("feature_used", NOW - MIN, "u3", {"feature": "f3"}),
        ev("feature_used", NOW - MIN, "u4", {"feature": "f4"}),
    ]
    report = run(events, max_dimension_values=2)
    top = report["top"]["5m"]["all"]
    assert top["pages"] == [["/1", 1], ["/2", 1], ["other", 1]]
    assert top["exit_pages"] == [["/1", 1], ["/2", 1], ["other", 1]]
    # f3 and f4 are other: 2 distinct users; 4 active users
    assert top["features"] == [["other", 2], ["f1", 1], ["f2", 1]]
    assert report["features"]["5m"]["all"] == {"f1": 0.25, "f2": 0.25, "other": 0.5}


# -- scopes ------------------------------------------------------------------------------


def test_scopes() -> None:
    events = [
        ev(
            "click",
            NOW - MIN,
            "u1",
            {"element": "b"},
            product="Web App",
            channel="WEB",
            touchpoint="checkout",
        ),
        ev("click", NOW - MIN, "u2", {"element": "b"}, product="web_app"),
        ev("click", NOW - MIN, "u2", {"element": "b"}, product="ALL", channel=""),
    ]
    report = run(events)
    got = {s: (f["events"], f["active_users"]) for s, f in report["windows"]["5m"].items()}
    # "Web App" and "web_app" are one product; "ALL" becomes "_all"; "" is unknown;
    # one scope per dimension value, no cross products
    assert got == {
        "all": (3, 2),
        "product=web_app": (2, 2),
        "product=_all": (1, 1),
        "channel=web": (1, 1),
        "channel=unknown": (2, 1),
        "touchpoint=checkout": (1, 1),
        "touchpoint=unknown": (2, 1),
    }
    for name in WINDOW_NAMES:
        assert set(report["windows"][name]) == set(got)


# -- now -------------------------------------------------------------------------------


def test_explicit_now_and_events_just_after_it() -> None:
    events = [
        ev("click", NOW, "u1", {"element": "b"}),  # ts == now: in
        ev("click", NOW + 1, "u9", {"element": "b"}, product="future"),  # accepted, nowhere
        ev("click", NOW + 5 * MIN, "u9", {"element": "b"}, product="future"),  # same
        ev("click", NOW + 5 * MIN + 1, "u9", {"element": "b"}, product="future"),  # rejected
        view(NOW - MIN, "u1", "s1", "/a"),
        view(NOW + MIN, "u1", "s1", "/b", product="future"),  # not part of the session (yet)
        ev("feature_used", NOW + MIN, "u1", {"feature": "late"}),
    ]
    report = run(events)
    assert report["now"] == NOW
    assert report["accepted"] == 6
    assert report["rejected"] == {"future_timestamp": 1}
    for name in WINDOW_NAMES:
        assert "product=future" not in report["windows"][name]
        check(
            fields(report, name),
            {
                "events": 2,
                "active_users": 1,
                "clicks": 1,
                "pageviews": 1,
                "sessions": 1,
                "bounce_rate": 1.0,
            },
        )
        assert report["features"][name]["all"] == {}
        assert report["top"][name]["all"]["exit_pages"] == [["/a", 1]]


def test_default_now_is_the_largest_valid_ts() -> None:
    events = [
        ev("click", NOW - 3 * MIN, "u1", {"element": "b"}),
        ev("click", NOW, "u2", {"element": "b"}),
        ev("click", NOW - 20 * MIN, "u3", {"element": "b"}),
        ev("nps", NOW + DAY, "u3", {"score": 99}),  # invalid: does not move now
    ]
    report = run(events, None)
    assert report["now"] == NOW
    assert report["rejected"] == {"out_of_range": 1}
    check(fields(report, "5m"), {"events": 2, "active_users": 2})
    check(fields(report, "1h"), {"events": 3, "active_users": 3})


# -- distinct users against a naive count ---------------------------------------------


def _window_start(name: str, now_ms: int) -> int:
    width, granularity = {
        "5m": (5 * MIN, MIN),
        "1h": (HOUR, MIN),
        "24h": (DAY, MIN),
        "7d": (7 * DAY, HOUR),
        "30d": (30 * DAY, HOUR),
    }[name]
    return now_ms - now_ms % granularity - width + granularity


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_active_users_against_sets(seed: int) -> None:
    rng = random.Random(seed)
    users = [f"user-{i}" for i in range(70)]
    events = []
    for _ in range(400):
        # half the events in the last 2 hours, so the short windows have users too
        span = rng.choice([2 * HOUR, 35 * DAY])
        ts = NOW - rng.randrange(0, span)
        kind = rng.choice(["click", "nps", "feature_used", "page_view"])
        props_of: dict[str, dict[str, Any]] = {
            "click": {"element": "b"},
            "nps": {"score": rng.randrange(11)},
            "feature_used": {"feature": rng.choice(["f1", "f2"])},
            "page_view": {"page": "/p"},
        }
        props = props_of[kind]
        env = {"product": rng.choice(["p0", "p1", "p2"]), "channel": rng.choice(["web", "ios"])}
        if kind == "page_view":
            env["session_id"] = rng.choice(["s1", "s2"])
        events.append(ev(kind, ts, rng.choice(users), props, **env))
    report = run(events)
    for name in WINDOW_NAMES:
        start = _window_start(name, NOW)
        users_of: dict[str, set[str]] = defaultdict(set)
        events_of: dict[str, int] = defaultdict(int)
        for e in events:
            if start <= e["ts"] <= NOW:
                for scope in (
                    "all",
                    "product=" + e["product"],
                    "channel=" + e["channel"],
                    "touchpoint=unknown",
                ):
                    users_of[scope].add(e["user_id"])
                    events_of[scope] += 1
        got = {s: (f["active_users"], f["events"]) for s, f in report["windows"][name].items()}
        expected = {s: (len(users_of[s]), events_of[s]) for s in users_of}
        # a scope with no event in this window but some in 30d still has the window
        for scope in set(got) - set(expected):
            expected[scope] = (0, 0)
        assert got == expected, name
