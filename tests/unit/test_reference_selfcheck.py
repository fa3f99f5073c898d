"""Checks of tests/reference.py itself, on small cases worked out by hand.

The reference is what other tests hold the real engine to, so it gets its own
table of cases whose expected values are derived in the comments, not by
running code.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reference import parse_rfc3339_ms, reference_replay

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR


def ms(text: str) -> int:
    """Epoch ms of an ISO date-time, in integers (no float rounding)."""
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(milliseconds=1)


NOW = ms("2026-11-27T08:00:30.000+00:00")
_ids = itertools.count()


def ev(
    type_: str, ts: Any, user: str = "u1", props: dict[str, Any] | None = None, **env: Any
) -> dict[str, Any]:
    """One event; page views/leaves get session `s1` unless told otherwise."""
    obj: dict[str, Any] = {
        "event_id": env.pop("event_id", f"e{next(_ids)}"),
        "type": type_,
        "ts": ts,
        "user_id": user,
    }
    if type_ in ("page_view", "page_leave"):
        obj["session_id"] = env.pop("session_id", "s1")
    obj.update(env)
    if props is not None:
        obj["properties"] = props
    return obj


def replay(*events: dict[str, Any] | list[Any], now: int | None = NOW, **kw: Any) -> dict[str, Any]:
    return reference_replay([json.dumps(e) for e in events], now, **kw)


def win(result: dict[str, Any], window: str, scope: str = "all") -> dict[str, Any]:
    return result["windows"][window][scope]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- NPS


def test_nps_with_confidence_interval() -> None:
    # Scores 10, 9, 8, 3, 0: promoters 2 (10, 9), passives 1 (8), detractors 2 (3, 0).
    # nps = 100 × (2 − 2) / 5 = 0.
    # pP = pD = 0.4: variance term = 0.4 + 0.4 − 0² = 0.8; /5 = 0.16; sqrt = 0.4;
    # nps_ci95 = 196 × 0.4 = 78.4.
    r = replay(*(ev("nps", NOW - MIN, f"u{s}", {"score": s}) for s in (10, 9, 8, 3, 0)))
    f = win(r, "1h")
    assert (f["nps_n"], f["nps_promoters"], f["nps_passives"], f["nps_detractors"]) == (5, 2, 1, 2)
    assert f["nps"] == pytest.approx(0.0)
    assert f["nps_ci95"] == pytest.approx(78.4)


def test_nps_skewed_and_single_answer() -> None:
    # Scores 10, 10, 10, 6: P 3, D 1 → nps = 100 × 2 / 4 = 50.
    # pP = .75, pD = .25: .75 + .25 − .5² = .75; /4 = .1875; sqrt = .4330127;
    # × 196 = 84.87049.
    r = replay(*(ev("nps", NOW, f"u{i}", {"score": s}) for i, s in enumerate((10, 10, 10, 6))))
    assert win(r, "5m")["nps"] == pytest.approx(50.0)
    assert win(r, "5m")["nps_ci95"] == pytest.approx(84.87049, abs=1e-4)
    # One answer: nps 100, no interval (below 2 answers); score 7.0 is the int 7 → passive.
    r = replay(ev("nps", NOW, props={"score": 9}), ev("nps", NOW - 10 * MIN, props={"score": 7.0}))
    assert win(r, "5m")["nps"] == pytest.approx(100.0)
    assert "nps_ci95" not in win(r, "5m")
    assert win(r, "1h")["nps_passives"] == 1
    # No answers: count fields 0, ratio fields absent.
    r = replay(ev("signup", NOW))
    assert win(r, "1h")["nps_n"] == 0 and "nps" not in win(r, "1h")


# --------------------------------------------------------------------------- CSAT

CSAT_ANSWERS = [
    {"score": 4},  # scale defaults to 5; 4 ≥ 4 → satisfied
    {"score": 3, "scale": 5},  # 3 < 4 → not
    {"score": 6, "scale": 7},  # 6 ≥ 6 → satisfied
    {"score": 7, "scale": 10},  # 7 < 8 → not
    {"score": 8, "scale": 10},  # 8 ≥ 8 → satisfied
]


def test_csat_mixed_scales_with_wilson_bounds() -> None:
    # 3 of 5 satisfied: csat = 0.6.  Wilson, z = 1.96, z² = 3.8416, n = 5:
    #   d = 1 + z²/n = 1.76832
    #   center = (0.6 + z²/(2n)) / d = (0.6 + 0.38416) / 1.76832 = 0.556551
    #   half = (z/d) × sqrt(0.6·0.4/5 + z²/(4n²)) = 1.108396 × sqrt(0.048 + 0.038416)
    #        = 1.108396 × 0.293966 = 0.325831
    #   low = 0.230720, high = 0.882382
    r = replay(*(ev("csat", NOW, f"u{i}", p) for i, p in enumerate(CSAT_ANSWERS)))
    f = win(r, "5m")
    assert f["csat_n"] == 5
    assert f["csat"] == pytest.approx(0.6)
    assert f["csat_ci95_low"] == pytest.approx(0.230720, abs=1e-5)
    assert f["csat_ci95_high"] == pytest.approx(0.882382, abs=1e-5)


def test_csat_thresholds_are_configurable() -> None:
    # Thresholds at the top of every scale: nobody is satisfied, csat = 0.
    # Wilson with p = 0: center = half = (z²/2n)/d, so low = 0 and
    # high = (z²/n)/(1 + z²/n) = 0.76832 / 1.76832 = 0.434492.
    r = replay(
        *(ev("csat", NOW, f"u{i}", p) for i, p in enumerate(CSAT_ANSWERS)),
        csat_thresholds={5: 5, 7: 7, 10: 10},
    )
    f = win(r, "5m")
    assert f["csat"] == 0.0
    assert f["csat_ci95_low"] == pytest.approx(0.0, abs=1e-12)
    assert f["csat_ci95_high"] == pytest.approx(0.434492, abs=1e-5)
    # Only scale 10 changed (to 7): the 7-of-10 answer becomes satisfied too → 4/5.
    r = replay(
        *(ev("csat", NOW, f"u{i}", p) for i, p in enumerate(CSAT_ANSWERS)),
        csat_thresholds={10: 7},
    )
    assert win(r, "5m")["csat"] == pytest.approx(0.8)


def test_csat_single_answer_interval() -> None:
    # 1 of 1: d = 1 + 3.8416 = 4.8416, center = (1 + 1.9208)/4.8416 = 0.603272,
    # half = (1.96/4.8416) × sqrt(0 + 3.8416/4) = 0.404825 × 0.98 = 0.396728.
    # low = 0.206543, high = 1.0
    f = win(replay(ev("csat", NOW, props={"score": 5})), "5m")
    assert f["csat"] == 1.0
    assert f["csat_ci95_low"] == pytest.approx(0.206543, abs=1e-5)
    assert f["csat_ci95_high"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- CES


def test_ces_mapping_onto_one_to_seven() -> None:
    # mapped = 1 + (score − 1) × 6 / (scale − 1):
    #   1 of 7 → 1;  2 of 5 → 1 + 6/4 = 2.5;  3 of 5 → 1 + 12/4 = 4;
    #   7 of 7 → 7;  3 with the default scale 7 → 3.
    # mean = (1 + 2.5 + 4 + 7 + 3) / 5 = 17.5 / 5 = 3.5; easy (≤ 3): 1, 2.5, 3 → 3/5.
    answers = [
        {"score": 1, "scale": 7},
        {"score": 2, "scale": 5},
        {"score": 3, "scale": 5},
        {"score": 7, "scale": 7},
        {"score": 3},
    ]
    f = win(replay(*(ev("ces", NOW, f"u{i}", p) for i, p in enumerate(answers))), "5m")
    assert f["ces_n"] == 5
    assert f["ces"] == pytest.approx(3.5)
    assert f["ces_easy"] == pytest.approx(0.6)


# --------------------------------------------------------------------------- sessions


def test_session_across_a_minute_boundary_and_a_bounce() -> None:
    now = ms("2026-11-27T10:05:00.000+00:00")
    events = [
        # s1 of u1: two views either side of 10:01:00, first one in product A.
        ev("page_view", ms("2026-11-27T10:00:59.900+00:00"), "u1", {"page": "/home"}, product="A"),
        ev("page_view", ms("2026-11-27T10:01:00.100+00:00"), "u1", {"page": "/pricing"},
           product="B"),
        # s1 of u2 (another user, so another session): one view → a bounce.
        ev("page_view", ms("2026-11-27T10:01:30.000+00:00"), "u2", {"page": "/home"}, product="A"),
        # leaves: 42 s with scroll 75 %, 18 s without scroll.
        ev("page_leave", ms("2026-11-27T10:01:00.000+00:00"), "u1",
           {"page": "/home", "duration_ms": 42000, "scroll_pct": 75}),
        ev("page_leave", ms("2026-11-27T10:02:00.000+00:00"), "u1",
           {"page": "/pricing", "duration_ms": 18000}),
    ]  # fmt: skip
    r = replay(*events, now=now)
    # 1h: 3 page views, 2 sessions → 1.5 pages/session; one of two bounces → 0.5.
    f = win(r, "1h")
    assert (f["pageviews"], f["sessions"]) == (3, 2)
    assert f["pages_per_session"] == pytest.approx(1.5)
    assert f["bounce_rate"] == pytest.approx(0.5)
    assert f["avg_time_on_page_s"] == pytest.approx((42 + 18) / 2)  # 30 s
    assert f["scroll_depth"] == pytest.approx(0.75)  # only the leave that carries it
    top = r["top"]["1h"]["all"]
    assert top["pages"] == [["/home", 2], ["/pricing", 1]]
    assert top["exit_pages"] == [["/home", 1], ["/pricing", 1]]  # tie → by name
    # 5m starts at floor(10:05, 1 min) − 5 min + 1 min = 10:01:00.000: u1's first view
    # (10:00:59.900) is out, so its session is not in 5m, but its second view is a page
    # view of 5m; u2's bounce is in.
    f = win(r, "5m")
    assert (f["pageviews"], f["sessions"]) == (2, 1)
    assert f["pages_per_session"] == pytest.approx(1.0)
    assert f["bounce_rate"] == pytest.approx(1.0)
    assert r["top"]["5m"]["all"]["exit_pages"] == [["/home", 1]]
    # A session lives in its first view's scopes: both sessions are product=a, with
    # 2 + 1 views; product=b has a page view but no session (so no per-session ratios).
    a, b = win(r, "1h", "product=a"), win(r, "1h", "product=b")
    assert (a["sessions"], a["pageviews"]) == (2, 2)
    assert a["pages_per_session"] == pytest.approx(1.5)
    assert (b["sessions"], b["pageviews"]) == (0, 1)
    assert "pages_per_session" not in b and "bounce_rate" not in b
    assert r["top"]["1h"]["product=a"]["exit_pages"] == [["/home", 1], ["/pricing", 1]]


def test_session_splits_after_more_than_24h() -> None:
    t0 = ms("2026-11-20T00:00:00.000+00:00")
    now = t0 + 2 * DAY + MIN + 1
    r = replay(
        ev("page_view", t0, props={"page": "/a"}),
        ev("page_view", t0 + DAY, props={"page": "/b"}),  # exactly 24 h later: same session
        ev("page_view", t0 + 2 * DAY + 1, props={"page": "/c"}),  # 24 h + 1 ms: new session
        now=now,
    )
    # 7d: 2 sessions (views 2 and 1), exits /b and /c.
    f = win(r, "7d")
    assert (f["pageviews"], f["sessions"]) == (3, 2)
    assert f["bounce_rate"] == pytest.approx(0.5)
    assert r["top"]["7d"]["all"]["exit_pages"] == [["/b", 1], ["/c", 1]]
    # 24h starts at floor(now, 1 min) − 24 h + 1 min = t0 + 24 h + 2 min: only /c.
    assert (win(r, "24h")["pageviews"], win(r, "24h")["sessions"]) == (1, 1)


# --------------------------------------------------------------------------- windows


def test_window_edges() -> None:
    # now = 2026-11-27T08:00:30.000Z.
    #   5m  (g = 1 min): 08:00 − 5 min + 1 min = 07:56:00.000
    #   1h  (g = 1 min): 08:00 − 60 min + 1 min = 07:01:00.000
    #   24h (g = 1 min): 08:00 − 24 h + 1 min = 11-26T08:01:00.000
    #   7d  (g = 1 h):   08:00 − 7 d + 1 h = 11-20T09:00:00.000
    #   30d (g = 1 h):   08:00 − 30 d + 1 h = 10-28T09:00:00.000
    at = {
        "now": NOW,
        "5m_first": ms("2026-11-27T07:56:00.000+00:00"),
        "5m_before": ms("2026-11-27T07:55:59.999+00:00"),
        "24h_first": ms("2026-11-26T08:01:00.000+00:00"),
        "24h_before": ms("2026-11-26T08:00:59.999+00:00"),
        "7d_first": ms("2026-11-20T09:00:00.000+00:00"),
        "7d_before": ms("2026-11-20T08:59:59.999+00:00"),
    }
    events = [ev("signup", ts, f"u{i}") for i, ts in enumerate(at.values())]
    events.append(ev("signup", ms("2026-10-28T09:00:00.000+00:00"), "u30", product="edge30"))
    events.append(ev("signup", ms("2026-10-28T08:59:59.999+00:00"), "u31", product="ancient"))
    r = replay(*events)
    counts = {w: win(r, w)["events"] for w in ("5m", "1h", "24h", "7d", "30d")}
    # 5m: now, 5m_first; 1h adds 5m_before; 24h adds 24h_first; 7d adds 24h_before and
    # 7d_first; 30d adds 7d_before and the 10-28T09:00 one; the ms before is in none.
    assert counts == {"5m": 2, "1h": 3, "24h": 4, "7d": 6, "30d": 8}
    # A scope seen only before the 30d window does not appear; one seen at its first ms does.
    assert "product=edge30" in r["windows"]["5m"]
    assert "product=ancient" not in r["windows"]["30d"]


def test_future_tolerance_with_explicit_now() -> None:
    r = replay(
        ev("signup", NOW, "u1"),
        ev("signup", NOW + 1, "u2", event_id="f1", product="future"),  # accepted, no metric
        ev("signup", NOW + 5 * MIN, "u3"),  # exactly now + 5 min: accepted
        ev("signup", NOW + 5 * MIN + 1, "u4"),  # rejected
        ev("signup", NOW + 1, "u2", event_id="f1"),  # a duplicate of an accepted future event
    )
    assert r["rejected"] == {"future_timestamp": 1}
    assert r["duplicates"] == 1
    assert win(r, "5m")["events"] == 1 and win(r, "5m")["signups"] == 1
    assert "product=future" not in r["windows"]["5m"]


def test_default_now_is_the_largest_valid_ts() -> None:
    r = replay(
        ev("signup", NOW - HOUR, "u1"),
        ev("signup", NOW, "u2"),
        {"event_id": "x", "type": "signup", "ts": NOW + DAY},  # no user_id: rejected
        now=None,
    )
    assert r["now"] == NOW
    assert r["rejected"] == {"missing_field": 1}
    assert win(r, "5m")["events"] == 1


def test_default_now_without_valid_events_is_the_clock() -> None:
    before = int(time.time() * 1000)
    r = reference_replay(["{", ""], None)
    assert before <= r["now"] <= int(time.time() * 1000)
    assert r["rejected"] == {"malformed_json": 1}
    assert win(r, "30d")["events"] == 0  # `all` is always there


def test_timestamp_forms() -> None:
    # +09:00 at 08:05 local is 23:05 UTC the day before; fractions are truncated.
    assert parse_rfc3339_ms("2026-11-27T08:05:00+09:00") == ms("2026-11-26T23:05:00+00:00")
    assert parse_rfc3339_ms("2026-11-27T08:00:00.9999Z") == ms("2026-11-27T08:00:00.999+00:00")
    assert parse_rfc3339_ms("2026-11-27t08:00:00.5z") == ms("2026-11-27T08:00:00.500+00:00")
    assert parse_rfc3339_ms("2026-11-27T08:00:00-00:00") == ms("2026-11-27T08:00:00+00:00")
    assert parse_rfc3339_ms("2024-02-29T00:00:00Z") == ms("2024-02-29T00:00:00+00:00")
    assert parse_rfc3339_ms("1969-12-31T23:59:59.999Z") == -1
    for bad in (
        "2026-11-27T08:00:00",  # no offset
        "2026-11-27T23:59:60Z",  # leap second
        "2026-02-29T00:00:00Z",  # not a leap year
        "2026-11-27 08:00:00Z",  # space instead of T
        "2026-11-27T08:00Z",  # no seconds
        "2026-11-27T08:00:00+24:00",
        "2026-11-27T08:00:00.Z",
        "",
    ):
        assert parse_rfc3339_ms(bad) is None, bad
    # An integral float is an integer ts; string and integer forms agree.
    r = replay(
        ev("signup", "2026-11-27T08:00:30.000Z", "u1"),
        ev("signup", float(NOW), "u2"),
        ev("signup", "2026-11-27T17:30:30+09:30", "u3"),
    )
    assert r["rejected"] == {} and win(r, "5m")["signups"] == 3


# --------------------------------------------------------------------------- churn, activation


def test_churn_and_retention() -> None:
    old, recent = NOW - 60 * DAY, NOW - 10 * MIN
    events = [
        *(ev("subscription_started", old, u, product="legacy") for u in ("u1", "u2", "u3")),
        ev("subscription_started", recent, "u4", product="legacy"),
        ev("subscription_cancelled", recent, "u1", product="legacy"),
        ev("subscription_started", old, "u5", product="gone"),
        ev("subscription_cancelled", recent, "u6", product="odd"),
    ]
    r = replay(*events)
    # legacy: all time 4 started − 1 cancelled = 3 active in every window.
    # 1h: 1 started, 1 cancelled → at start 3 − 1 + 1 = 3 → churn 1/3, retention 2/3.
    f = win(r, "1h", "product=legacy")
    assert (f["subs_started"], f["subs_cancelled"], f["active_subscribers"]) == (1, 1, 3)
    assert f["churn_rate"] == pytest.approx(1 / 3)
    assert f["retention_rate"] == pytest.approx(2 / 3)
    # 5m: nothing moved → at start 3 → churn 0, retention 1.
    f = win(r, "5m", "product=legacy")
    assert f["active_subscribers"] == 3
    assert f["churn_rate"] == 0.0 and f["retention_rate"] == 1.0
    # gone: only a 60-day-old start, still a scope (subscription events at any time).
    f = win(r, "30d", "product=gone")
    assert (f["events"], f["active_subscribers"], f["churn_rate"]) == (0, 1, 0.0)
    # odd: a cancellation with no start: −1 active; 1h at start −1 − 0 + 1 = 0 → absent.
    f = win(r, "1h", "product=odd")
    assert f["active_subscribers"] == -1
    assert "churn_rate" not in f and "retention_rate" not in f
    # all: 5 started − 2 cancelled = 3; 1h: 1 started, 2 cancelled → 3 − 1 + 2 = 4 → 0.5.
    f = win(r, "1h")
    assert f["active_subscribers"] == 3 and f["churn_rate"] == pytest.approx(0.5)


def test_activation_and_feature_usage() -> None:
    now = ms("2026-11-27T08:00:00.000+00:00")
    t = ms("2026-11-17T08:00:00.000+00:00")  # signups, 10 days before now
    events = [
        *(ev("signup", t, u) for u in ("u1", "u2", "u3", "u4")),
        ev("feature_used", t + HOUR, "u1", {"feature": "export"}),  # activated, 3600 s
        ev("feature_used", t + 7 * DAY + 1, "u2", {"feature": "export"}),  # 1 ms too late
        ev("feature_used", t - 1, "u3", {"feature": "export"}),  # before the signup
        ev("feature_used", t + 7 * DAY, "u4", {"feature": "import"}),  # last ms: 604800 s
        ev("feature_used", t + 8 * DAY, "u4", {"feature": "export"}),  # not the first
    ]
    r = replay(*events, now=now)
    # 30d: 4 signups, 2 activated → 0.5; time to value (3600 + 604800) / 2 = 304200 s.
    f = win(r, "30d")
    assert f["signups"] == 4
    assert f["activation_rate"] == pytest.approx(0.5)
    assert f["time_to_value_s"] == pytest.approx(304200.0)
    # 7d starts at 11-20T09:00 = t + 3 d + 1 h: no signup → no activation fields.
    assert win(r, "7d")["signups"] == 0 and "activation_rate" not in win(r, "7d")
    # Feature usage, 30d: active users u1..u4; export used by all four, import by u4.
    assert r["features"]["30d"]["all"] == pytest.approx({"export": 1.0, "import": 0.25})
    assert r["top"]["30d"]["all"]["features"] == [["export", 4], ["import", 1]]
    # 7d: only u2 (export) and u4 (import, export) are active → 2/2 and 1/2.
    assert r["features"]["7d"]["all"] == pytest.approx({"export": 1.0, "import": 0.5})


def test_stickiness_only_in_24h() -> None:
    r = replay(
        ev("signup", NOW - 10 * DAY, "u1"),
        ev("signup", NOW - 10 * DAY, "u2"),
        ev("click", NOW, "u1", {"element": "buy"}),
        ev("impression", NOW, "u1", {"element": "buy"}),
        ev("impression", NOW, "u2", {"element": "buy"}),
    )
    # 24h: u1, u2 active; 30d: u1, u2 → 1.0.  CTR 1 click / 2 impressions.
    assert win(r, "24h")["stickiness"] == pytest.approx(1.0)
    assert all("stickiness" not in win(r, w) for w in ("5m", "1h", "7d", "30d"))
    assert win(r, "5m")["ctr"] == pytest.approx(0.5)
    r = replay(ev("signup", NOW - 10 * DAY, "u1"), ev("signup", NOW - 10 * DAY, "u2"),
               ev("signup", NOW, "u1"))  # fmt: skip
    assert win(r, "24h")["stickiness"] == pytest.approx(0.5)  # 1 of 2


def test_support_and_tasks() -> None:
    r = replay(
        ev("support_ticket_opened", NOW, "u1", {"ticket_id": "T1"}),
        ev("support_ticket_opened", NOW, "u1", {"ticket_id": "T2"}),
        ev("support_ticket_resolved", NOW, "u2",
           {"ticket_id": "T1", "first_response_ms": 60000, "resolution_ms": 600000, "contacts": 1}),
        ev("support_ticket_resolved", NOW, "u2",
           {"ticket_id": "T2", "first_response_ms": 120000, "contacts": 3}),
        ev("task_completed", NOW, "u1", {"task": "pay", "steps": 4}),
        ev("task_completed", NOW, "u1", {"task": "pay"}),
        ev("task_failed", NOW, "u2", {"task": "pay"}),
    )  # fmt: skip
    f = win(r, "5m")
    assert (f["tickets_opened"], f["tickets_resolved"]) == (2, 2)
    assert f["tickets_per_user"] == pytest.approx(1.0)  # 2 opened / 2 active users
    assert f["avg_first_response_s"] == pytest.approx(90.0)  # (60 + 120) / 2
    assert f["avg_resolution_s"] == pytest.approx(600.0)  # only T1 carries it
    assert f["contacts_per_resolution"] == pytest.approx(2.0)  # (1 + 3) / 2
    assert f["one_contact_resolution_rate"] == pytest.approx(0.5)
    assert f["task_success_rate"] == pytest.approx(2 / 3)
    assert f["avg_task_steps"] == pytest.approx(4.0)  # only one carries steps


# --------------------------------------------------------------------------- duplicates


def test_duplicates() -> None:
    r = replay(
        ev("nps", NOW, "u1", {"score": 10}, event_id="a"),
        ev("nps", NOW, "u1", {"score": 0}, event_id="a"),  # duplicate: first copy wins
        ev("nps", NOW, "u2", {"score": 0}, event_id="a"),  # other user: not a duplicate
        ev("nps", NOW, "u3", {"score": 11}, event_id="b"),  # rejected copy ...
        ev("nps", NOW, "u3", {"score": 9}, event_id="b"),  # ... so this one is accepted
        [ev("nps", NOW, "u1", {"score": 0}, event_id="a")],  # duplicate inside a batch
    )
    assert r["duplicates"] == 2
    assert r["rejected"] == {"out_of_range": 1}
    f = win(r, "5m")
    assert (f["nps_n"], f["nps_promoters"], f["nps_detractors"]) == (3, 2, 1)


# --------------------------------------------------------------------------- normalization, caps


def test_dimension_normalization() -> None:
    r = replay(
        ev("signup", NOW, "u1", product="Web App"),
        ev("signup", NOW, "u2", product="web_app"),
        ev("signup", NOW, "u3", product="ALL", channel="", touchpoint="Über Check-out!"),
        ev("signup", NOW, "u4", product="x" * 70, channel=None),
    )
    scopes = set(r["windows"]["5m"])
    assert win(r, "5m", "product=web_app")["events"] == 2
    assert "product=_all" in scopes and "product=all" not in scopes
    assert win(r, "5m", "channel=unknown")["events"] == 4
    assert "touchpoint=_ber_check-out_" in scopes
    assert f"product={'x' * 64}" in scopes


def test_value_caps() -> None:
    # Cap 2 per dimension: a, b take the slots (unknown is free), c becomes other.
    events = [
        ev("signup", NOW, "u1", product="a"),
        ev("signup", NOW, "u2"),  # unknown
        ev("signup", NOW, "u3", product="b"),
        ev("signup", NOW, "u4", product="c"),
        ev("signup", NOW, "u5", product="a"),
        # Pages and features: names kept as given, capped the same way.
        ev("page_view", NOW, "u1", {"page": "/One"}, session_id="p1"),
        ev("page_view", NOW, "u2", {"page": "/Two"}, session_id="p2"),
        ev("page_view", NOW, "u3", {"page": "/Three"}, session_id="p3"),
        ev("page_view", NOW, "u4", {"page": "/One"}, session_id="p4"),
        ev("feature_used", NOW, "u1", {"feature": "f1"}),
        ev("feature_used", NOW, "u1", {"feature": "f2"}),
        ev("feature_used", NOW, "u2", {"feature": "f3"}),
    ]
    r = replay(*events, max_dimension_values=2)
    scopes = set(r["windows"]["5m"])
    products = {s for s in scopes if s.startswith("product=")}
    assert products == {"product=a", "product=b", "product=other", "product=unknown"}
    assert win(r, "5m", "product=a")["events"] == 2  # the signups of u1 and u5
    assert win(r, "5m", "product=other")["events"] == 1  # u4's signup in c
    top = r["top"]["5m"]["all"]
    assert top["pages"] == [["/One", 2], ["/Two", 1], ["other", 1]]
    assert top["features"] == [["f1", 1], ["f2", 1], ["other", 1]]
    assert r["features"]["5m"]["all"] == pytest.approx({"f1": 0.2, "f2": 0.2, "other": 0.2})


def test_top_n_ties_by_name() -> None:
    views = [("/b", "u1"), ("/a", "u2"), ("/b", "u3"), ("/a", "u4"), ("/c", "u5")]
    r = replay(*(ev("page_view", NOW, u, {"page": p}) for p, u in views), top_n=2)
    assert r["top"]["5m"]["all"]["pages"] == [["/a", 2], ["/b", 2]]


# --------------------------------------------------------------------------- rejects

BIG = "x" * (64 * 1024)


def _line(obj: Any) -> str:
    return json.dumps(obj)


def _valid(**overrides: Any) -> dict[str, Any]:
    obj = ev("nps", NOW, "u1", {"score": 9})
    obj.update(overrides)
    return {k: v for k, v in obj.items() if v is not ...}


REJECT_CASES: list[tuple[str, str, str]] = [
    # too_large
    ("single event over 64 KiB", "too_large", _line(_valid(pad=BIG))),
    ("non-JSON over 64 KiB", "too_large", "{" + BIG),
    ("batch element over 64 KiB", "too_large", _line([_valid(pad=BIG)])),
    ("non-object batch element over 64 KiB", "too_large", _line([BIG])),
    # malformed_json
    ("truncated", "malformed_json", '{"event_id": "a"'),
    ("NaN", "malformed_json", _line(_valid()).replace('"score": 9', '"score": NaN')),
    ("Infinity in a batch", "malformed_json", "[" + _line(_valid()) + ", Infinity]"),
    ("trailing garbage", "malformed_json", _line(_valid()) + " x"),
    ("single quotes", "malformed_json", "{'event_id': 'a'}"),
    # not_an_object
    ("number", "not_an_object", "5"),
    ("string", "not_an_object", '"event"'),
    ("null", "not_an_object", "null"),
    ("batch element number", "not_an_object", "[1]"),
    ("nested array", "not_an_object", "[[]]"),
    # missing_field
    ("no event_id", "missing_field", _line(_valid(event_id=...))),
    ("null user_id", "missing_field", _line(_valid(user_id=None))),
    ("no ts", "missing_field", _line(_valid(ts=...))),
    ("no type", "missing_field", _line(_valid(type=...))),
    ("page_view without session_id", "missing_field",
     _line(_valid(type="page_view", properties={"page": "/"}))),
    ("page_view without properties", "missing_field",
     _line(_valid(type="page_view", session_id="s", properties=...))),
    ("nps without score", "missing_field", _line(_valid(properties={"comment": "hi"}))),
    ("page_leave without duration", "missing_field",
     _line(_valid(type="page_leave", session_id="s", properties={"page": "/"}))),
    # bad_type
    ("event_id number", "bad_type", _line(_valid(event_id=5))),
    ("ts boolean", "bad_type", _line(_valid(ts=True))),
    ("ts fractional", "bad_type", _line(_valid(ts=1.5))),
    ("ts object", "bad_type", _line(_valid(ts={"ms": 1}))),
    ("user_id number", "bad_type", _line(_valid(user_id=7))),
    ("product number", "bad_type", _line(_valid(product=7))),
    ("journey_stage number", "bad_type", _line(_valid(journey_stage=1))),
    ("properties string", "bad_type", _line(_valid(properties="score=9"))),
    ("score fractional", "bad_type", _line(_valid(properties={"score": 7.5}))),
    ("score string", "bad_type", _line(_valid(properties={"score": "7"}))),
    ("score boolean", "bad_type", _line(_valid(properties={"score": True}))),
    ("session_id number", "bad_type",
     _line(_valid(type="page_view", session_id=1, properties={"page": "/"}))),
    ("scroll_pct string", "bad_type",
     _line(_valid(type="page_leave", session_id="s",
                  properties={"page": "/", "duration_ms": 1, "scroll_pct": "50"}))),
    ("csat scale fractional", "bad_type",
     _line(_valid(type="csat", properties={"score": 3, "scale": 7.5}))),
    ("ticket_id number", "bad_type",
     _line(_valid(type="support_ticket_opened", properties={"ticket_id": 9}))),
    # out_of_range
    ("empty event_id", "out_of_range", _line(_valid(event_id=""))),
    ("event_id of 129", "out_of_range", _line(_valid(event_id="e" * 129))),
    ("user_id of 257", "out_of_range", _line(_valid(user_id="u" * 257))),
    ("empty account_id", "out_of_range", _line(_valid(account_id=""))),
    ("journey_stage unknown", "out_of_range", _line(_valid(journey_stage="ignorance"))),
    ("nps 11", "out_of_range", _line(_valid(properties={"score": 11}))),
    ("nps -1", "out_of_range", _line(_valid(properties={"score": -1}))),
    ("csat 6 of 5", "out_of_range", _line(_valid(type="csat", properties={"score": 6}))),
    ("csat scale 6", "out_of_range",
     _line(_valid(type="csat", properties={"score": 3, "scale": 6}))),
    ("ces scale 10", "out_of_range",
     _line(_valid(type="ces", properties={"score": 3, "scale": 10}))),
    ("ces 0", "out_of_range", _line(_valid(type="ces", properties={"score": 0}))),
    ("comment of 5001", "out_of_range",
     _line(_valid(properties={"score": 9, "comment": "c" * 5001}))),
    ("empty page", "out_of_range",
     _line(_valid(type="page_view", session_id="s", properties={"page": ""}))),
    ("empty session_id", "out_of_range",
     _line(_valid(type="page_view", session_id="", properties={"page": "/"}))),
    ("negative duration", "out_of_range",
     _line(_valid(type="page_leave", session_id="s", properties={"page": "/", "duration_ms": -1}))),
    ("scroll over 100", "out_of_range",
     _line(_valid(type="page_leave", session_id="s",
                  properties={"page": "/", "duration_ms": 1, "scroll_pct": 100.5}))),
    ("contacts 0", "out_of_range",
     _line(_valid(type="support_ticket_resolved", properties={"ticket_id": "T", "contacts": 0}))),
    ("steps 0", "out_of_range",
     _line(_valid(type="task_completed", properties={"task": "t", "steps": 0}))),
    ("negative mrr", "out_of_range",
     _line(_valid(type="subscription_started", properties={"mrr": -1}))),
    # unknown_type
    ("unknown type", "unknown_type", _line(_valid(type="pageview"))),
    ("empty type", "unknown_type", _line(_valid(type=""))),
    # bad_timestamp
    ("no offset", "bad_timestamp", _line(_valid(ts="2026-11-27T08:00:00"))),
    ("leap second", "bad_timestamp", _line(_valid(ts="2016-12-31T23:59:60Z"))),
    ("no such day", "bad_timestamp", _line(_valid(ts="2026-02-30T08:00:00Z"))),
    ("epoch as string", "bad_timestamp", _line(_valid(ts=str(NOW)))),
    # future_timestamp
    ("5 min + 1 ms ahead", "future_timestamp", _line(_valid(ts=NOW + 5 * MIN + 1))),
]  # fmt: skip


@pytest.mark.parametrize(
    ("reason", "line"),
    [(reason, line) for _, reason, line in REJECT_CASES],
    ids=[c[0] for c in REJECT_CASES],
)
def test_each_reject_reason(reason: str, line: str) -> None:
    r = reference_replay([line], NOW)
    assert r["rejected"] == {reason: 1}
    assert r["duplicates"] == 0
    assert win(r, "30d")["events"] == 0
    assert list(r["windows"]["30d"]) == ["all"]  # a rejected event makes no scope


def test_every_reason_is_covered() -> None:
    from reference import REASONS

    assert {reason for _, reason, _ in REJECT_CASES} == set(REASONS)


PRECEDENCE_CASES: list[tuple[str, str, dict[str, Any]]] = [
    # stage 4 in table order: event_id before user_id
    ("event_id before user_id", "bad_type", _valid(event_id=5, user_id=...)),
    ("ts before user_id", "bad_type", _valid(ts=True, user_id=None)),
    # stage 4 before stage 5
    ("missing user_id before unknown type", "missing_field", _valid(type="nope", user_id=...)),
    ("journey_stage before unknown type", "out_of_range", _valid(type="nope", journey_stage="x")),
    ("properties type before unknown type", "bad_type", _valid(type="nope", properties=[])),
    # stage 5 before stage 6 and 7
    ("unknown type before bad ts", "unknown_type", _valid(type="nope", ts="yesterday")),
    ("unknown type before bad property", "unknown_type",
     _valid(type="nope", properties={"score": "x"})),
    # stage 6: session_id before properties, properties before the ts format
    ("session_id before page", "missing_field",
     _valid(type="page_view", properties={"page": 5}, ts="bad")),
    ("property before bad ts", "out_of_range", _valid(properties={"score": 12}, ts="bad")),
    ("page before duration", "bad_type",
     _valid(type="page_leave", session_id="s", properties={"page": 1, "duration_ms": -1})),
    ("score type before scale", "bad_type",
     _valid(type="csat", properties={"score": "9", "scale": 6})),
    ("scale type before score range", "bad_type",
     _valid(type="csat", properties={"score": 0, "scale": "7"})),
    ("scale value before score range", "out_of_range",
     _valid(type="csat", properties={"score": 0, "scale": 6})),
    # stage 7: a bad format is not in the future; a good one can be
    ("bad format", "bad_timestamp", _valid(ts="2999-01-01T00:00:00")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("reason", "obj"),
    [(r, o) for _, r, o in PRECEDENCE_CASES],
    ids=[c[0] for c in PRECEDENCE_CASES],
)
def test_reason_precedence(reason: str, obj: dict[str, Any]) -> None:
    assert reference_replay([json.dumps(obj)], NOW)["rejected"] == {reason: 1}


def test_batches_are_accounted_per_event() -> None:
    first = _valid()
    lines = [
        json.dumps([first, 3, [], _valid(event_id="z", properties={"score": 99})]),
        "[]",
        "   ",
        "",
        json.dumps([first]),  # same identity as the first element: duplicate
        json.dumps([{"pad": BIG} for _ in range(17)]),  # > 1 MiB: one rejected event
    ]
    r = reference_replay(lines, NOW)
    assert r["rejected"] == {"not_an_object": 2, "out_of_range": 1, "too_large": 1}
    assert r["duplicates"] == 1
    assert win(r, "5m")["events"] == 1


def test_scopes_have_every_window() -> None:
    r = replay(ev("signup", NOW - 20 * DAY, "u1", channel="Email"), ev("signup", NOW, "u2"))
    scopes = [set(r["windows"][w]) for w in ("5m", "1h", "24h", "7d", "30d")]
    assert all(s == scopes[0] for s in scopes)
    assert "channel=email" in scopes[0]
    assert win(r, "5m", "channel=email")["events"] == 0
    assert set(r["features"]["5m"]) == scopes[0] == set(r["top"]["5m"])
