"""The metric definitions of SPEC section 2 on hand-built Buckets.

Each Bucket holds the sums a window would hold; `compute_fields` turns them into
the SPEC fields. Expected values are worked out in the comments or, for the Wilson
interval, by an independent implementation of the textbook formula.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from cxstream.engine import (
    COUNT_FIELDS,
    METRIC_FIELDS,
    Bucket,
    BucketStore,
    C,
    DimensionCap,
    PartitionState,
    compute_fields,
    evaluate_scope,
    feature_usage,
    wilson_interval,
)
from cxstream.events import validate_event

NOW = 1_795_768_215_500  # 2026-11-27T08:30:15.500Z


def bucket(values: dict[int, int] | None = None, **dicts: dict[str, int]) -> Bucket:
    """A Bucket with the given counters (by C index) and pages/exits/features."""
    b = Bucket()
    for index, value in (values or {}).items():
        b.values[index] = value
    for name, counts in dicts.items():
        setattr(b, name, dict(counts))
    return b


def fields(values: dict[int, int], **kw: Any) -> dict[str, int | float]:
    kw.setdefault("active_subscribers", 0)
    return compute_fields(bucket(values), **kw)


# -- counts ----------------------------------------------------------------------------


def test_empty_bucket_has_every_count_and_no_ratio() -> None:
    out = fields({})
    assert set(out) == set(COUNT_FIELDS)
    assert all(out[name] == 0 for name in COUNT_FIELDS)


def test_counts_come_from_their_counters() -> None:
    counters = {
        "events": C.EVENTS,
        "active_users": C.ACTIVE,
        "nps_n": C.NPS_N,
        "nps_promoters": C.NPS_PROMOTERS,
        "nps_passives": C.NPS_PASSIVES,
        "nps_detractors": C.NPS_DETRACTORS,
        "csat_n": C.CSAT_N,
        "ces_n": C.CES_N,
        "pageviews": C.PAGEVIEWS,
        "sessions": C.SESSIONS,
        "impressions": C.IMPRESSIONS,
        "clicks": C.CLICKS,
        "signups": C.SIGNUPS,
        "subs_started": C.SUBS_STARTED,
        "subs_cancelled": C.SUBS_CANCELLED,
        "tickets_opened": C.TICKETS_OPENED,
        "tickets_resolved": C.TICKETS_RESOLVED,
        "tasks_completed": C.TASKS_COMPLETED,
        "tasks_failed": C.TASKS_FAILED,
    }
    # a distinct value per counter, so a mix-up of two indexes shows
    values = {index: 10 + i for i, index in enumerate(counters.values())}
    out = fields(values, active_subscribers=7)
    for i, name in enumerate(counters):
        assert out[name] == 10 + i, name
    assert out["active_subscribers"] == 7
    assert set(COUNT_FIELDS) <= set(out) <= set(METRIC_FIELDS)


# -- NPS -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("promoters", "passives", "detractors", "nps", "ci95"),
    [
        # n = 0: nps and its interval absent
        (0, 0, 0, None, None),
        # n = 1: nps present, interval absent below 2 answers
        (1, 0, 0, 100.0, None),
        (0, 0, 1, -100.0, None),
        (0, 1, 0, 0.0, None),
        # n = 10: 100 * (5 - 2) / 10 = 30; pP = .5, pD = .2;
        # .5 + .2 - (.5 - .2)^2 = .61; 196 * sqrt(.61 / 10) = 196 * sqrt(.061) = 48.408...
        (5, 3, 2, 30.0, 48.4084290180956),
        # n = 2: 100 * (1 - 1) / 2 = 0; pP = pD = .5; 1 - 0 = 1; 196 * sqrt(1 / 2) = 138.59...
        (1, 0, 1, 0.0, 138.59292911256333),
        # n = 4: 100 * (2 - 1) / 4 = 25; pP = .5, pD = .25;
        # .75 - .0625 = .6875; 196 * sqrt(.6875 / 4) = 196 * sqrt(.171875) = 81.257...
        (2, 1, 1, 25.0, 81.2573073637073),
        # all promoters: variance 1 - 1 = 0
        (4, 0, 0, 100.0, 0.0),
        # all passives: variance 0 - 0 = 0
        (0, 3, 0, 0.0, 0.0),
        # all detractors: 1 - (-1)^2 = 0
        (0, 0, 3, -100.0, 0.0),
    ],
)
def test_nps(
    promoters: int, passives: int, detractors: int, nps: float | None, ci95: float | None
) -> None:
    n = promoters + passives + detractors
    out = fields(
        {
            C.NPS_N: n,
            C.NPS_PROMOTERS: promoters,
            C.NPS_PASSIVES: passives,
            C.NPS_DETRACTORS: detractors,
        }
    )
    assert (out["nps_n"], out["nps_promoters"], out["nps_passives"], out["nps_detractors"]) == (
        n,
        promoters,
        passives,
        detractors,
    )
    if nps is None:
        assert "nps" not in out
    else:
        assert out["nps"] == pytest.approx(nps, abs=1e-12)
        assert -100 <= out["nps"] <= 100
    if ci95 is None:
        assert "nps_ci95" not in out
    else:
        assert out["nps_ci95"] == pytest.approx(ci95, rel=1e-12, abs=1e-9)


# -- CSAT ------------------------------------------------------------------------------


def wilson_reference(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval as usually printed:

    (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    """
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denominator = 1 + z * z / n
    return (centre - spread) / denominator, (centre + spread) / denominator


@pytest.mark.parametrize(
    ("satisfied", "n", "hand"),
    [
        # 8 of 10: p = .8, z²/n = .38416;
        # (.8 + .19208 ∓ 1.96 * sqrt(.016 + .009604)) / 1.38416 = (.49016, .94332)
        (8, 10, (0.4901568, 0.9433191)),
        # 1 of 1: (1 + 1.9208 ∓ 1.96 * sqrt(0 + .9604)) / 4.8416 = (.20654, 1.0)
        (1, 1, (0.2065433, 1.0)),
        # 0 of 1: (0 + 1.9208 ∓ 1.9208) / 4.8416 = (0, .79346)
        (0, 1, (0.0, 0.7934567)),
        (3, 4, None),
        (50, 100, None),
        (99, 100, None),
        (0, 250, None),
        (1000, 1000, None),
    ],
)
def test_csat_and_wilson_interval(satisfied: int, n: int, hand: tuple[float, float] | None) -> None:
    out = fields({C.CSAT_N: n, C.CSAT_SATISFIED: satisfied})
    low, high = wilson_reference(satisfied, n)
    assert out["csat_n"] == n
    assert out["csat"] == satisfied / n
    assert out["csat_ci95_low"] == pytest.approx(max(0.0, low), abs=1e-12)
    assert out["csat_ci95_high"] == pytest.approx(min(1.0, high), abs=1e-12)
    assert out["csat_ci95_low"] <= out["csat"] <= out["csat_ci95_high"]
    assert out["csat_ci95_low"] >= 0.0
    assert out["csat_ci95_high"] <= 1.0
    assert wilson_interval(satisfied, n) == (out["csat_ci95_low"], out["csat_ci95_high"])
    if hand is not None:
        assert out["csat_ci95_low"] == pytest.approx(hand[0], abs=1e-6)
        assert out["csat_ci95_high"] == pytest.approx(hand[1], abs=1e-6)


def test_csat_absent_without_answers() -> None:
    out = fields({C.CSAT_SATISFIED: 0})
    assert out["csat_n"] == 0
    assert not {"csat", "csat_ci95_low", "csat_ci95_high"} & set(out)


# -- CES -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sum2", "n", "easy", "ces", "ces_easy"),
    [
        # answers mapped 4.0, 1.0, 2.5 -> doubled 8 + 2 + 5 = 15; 15 / 2 / 3 = 2.5;
        # easy (mapped <= 3): 1.0 and 2.5 -> 2 / 3
        (15, 3, 2, 2.5, 2 / 3),
        # one answer of 7 -> doubled 14; 14 / 2 / 1 = 7.0; not easy
        (14, 1, 0, 7.0, 0.0),
        # four answers of 1 -> doubled 4 * 2 = 8; 8 / 2 / 4 = 1.0; all easy
        (8, 4, 4, 1.0, 1.0),
    ],
)
def test_ces_from_sums(sum2: int, n: int, easy: int, ces: float, ces_easy: float) -> None:
    out = fields({C.CES_N: n, C.CES_SUM2: sum2, C.CES_EASY: easy})
    assert out["ces_n"] == n
    assert out["ces"] == pytest.approx(ces)
    assert out["ces_easy"] == pytest.approx(ces_easy)


def _one_answer(props: dict[str, Any]) -> dict[str, int | float]:
    """The 5m fields of scope `all` after one ces answer at NOW."""
    state = PartitionState(cap=DimensionCap(), store=BucketStore())
    state.advance(NOW)
    event = {"event_id": "e1", "type": "ces", "ts": NOW, "user_id": "u1", "properties": props}
    state.offer(validate_event(event, NOW))
    return evaluate_scope(state.store, "all", NOW, 20)["5m"].fields


@pytest.mark.parametrize(
    ("score", "scale", "mapped", "easy"),
    [
        # 1 + (score - 1) * 6 / (5 - 1) = 1 + 1.5 (score - 1)
        (1, 5, 1.0, True),
        (2, 5, 2.5, True),
        (3, 5, 4.0, False),  # 1 + 2 * 1.5
        (4, 5, 5.5, False),
        (5, 5, 7.0, False),
        # scale 7: 1 + (score - 1) * 6 / 6 = score
        (1, 7, 1.0, True),
        (3, 7, 3.0, True),  # 3 <= 3: still easy
        (4, 7, 4.0, False),
        (7, 7, 7.0, False),
        # no scale: 7 by default
        (3, None, 3.0, True),
        (5, None, 5.0, False),
    ],
)
def test_ces_mapping_onto_1_to_7(score: int, scale: int | None, mapped: float, easy: bool) -> None:
    props: dict[str, Any] = {"score": score}
    if scale is not None:
        props["scale"] = scale
    out = _one_answer(props)
    assert out["ces_n"] == 1
    assert out["ces"] == mapped
    assert out["ces_easy"] == (1.0 if easy else 0.0)


# -- churn and retention ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("active", "started", "cancelled", "churn"),
    [
        # at start = active - started + cancelled
        (10, 2, 1, 1 / 9),  # 10 - 2 + 1 = 9; 1 / 9
        (2, 0, 0, 0.0),  # 2 - 0 + 0 = 2; 0 / 2
        (1, 0, 3, 0.75),  # 1 - 0 + 3 = 4; 3 / 4
        (0, 0, 4, 1.0),  # 0 - 0 + 4 = 4; 4 / 4
        # not clamped: 1 - 3 + 3 = 1; 3 / 1 = 3, retention 1 - 3 = -2
        (1, 3, 3, 3.0),
        # denominator <= 0: absent
        (0, 0, 0, None),  # 0
        (1, 3, 2, None),  # 1 - 3 + 2 = 0
        (2, 5, 0, None),  # 2 - 5 + 0 = -3
        (-1, 0, 0, None),  # more cancelled than started all-time: -1
    ],
)
def test_churn_and_retention(
    active: int, started: int, cancelled: int, churn: float | None
) -> None:
    out = fields({C.SUBS_STARTED: started, C.SUBS_CANCELLED: cancelled}, active_subscribers=active)
    assert (out["subs_started"], out["subs_cancelled"], out["active_subscribers"]) == (
        started,
        cancelled,
        active,
    )
    if churn is None:
        assert "churn_rate" not in out
        assert "retention_rate" not in out
    else:
        assert out["churn_rate"] == pytest.approx(churn)
        assert out["retention_rate"] == pytest.approx(1 - churn)


# -- every other ratio and mean -------------------------------------------------------

RATIO_CASES = [
    # (field, counters, expected; None = absent)
    ("pages_per_session", {C.SESSIONS: 4, C.SESSION_PAGEVIEWS: 10}, 2.5),  # 10 / 4
    ("pages_per_session", {C.SESSIONS: 0, C.SESSION_PAGEVIEWS: 3}, None),
    ("bounce_rate", {C.SESSIONS: 4, C.BOUNCES: 1}, 0.25),  # 1 / 4
    ("bounce_rate", {C.SESSIONS: 4, C.BOUNCES: 0}, 0.0),
    ("bounce_rate", {C.SESSIONS: 0, C.BOUNCES: 0}, None),
    ("avg_time_on_page_s", {C.LEAVE_N: 2, C.LEAVE_SUM_MS: 3_000}, 1.5),  # 3000 / 2 / 1000
    ("avg_time_on_page_s", {C.LEAVE_N: 0}, None),
    ("scroll_depth", {C.SCROLL_N: 4, C.SCROLL_SUM: 200}, 0.5),  # 200 / 4 / 100
    ("scroll_depth", {C.LEAVE_N: 3, C.SCROLL_N: 0}, None),
    ("ctr", {C.IMPRESSIONS: 8, C.CLICKS: 2}, 0.25),  # 2 / 8
    ("ctr", {C.IMPRESSIONS: 0, C.CLICKS: 5}, None),
    ("activation_rate", {C.SIGNUPS: 4, C.ACTIVATED: 3}, 0.75),  # 3 / 4
    ("activation_rate", {C.SIGNUPS: 4, C.ACTIVATED: 0}, 0.0),
    ("activation_rate", {C.SIGNUPS: 0}, None),
    ("time_to_value_s", {C.SIGNUPS: 4, C.ACTIVATED: 3, C.TTV_SUM_MS: 90_000}, 30.0),
    ("time_to_value_s", {C.SIGNUPS: 4, C.ACTIVATED: 0}, None),
    ("tickets_per_user", {C.ACTIVE: 2, C.TICKETS_OPENED: 3}, 1.5),  # 3 / 2
    ("tickets_per_user", {C.ACTIVE: 2, C.TICKETS_OPENED: 0}, 0.0),
    ("tickets_per_user", {C.ACTIVE: 0, C.TICKETS_OPENED: 3}, None),
    ("avg_first_response_s", {C.FRT_N: 2, C.FRT_SUM_MS: 240_000}, 120.0),  # 240000 / 2 / 1000
    ("avg_first_response_s", {C.TICKETS_RESOLVED: 2, C.FRT_N: 0}, None),
    ("avg_resolution_s", {C.RES_N: 4, C.RES_SUM_MS: 3_600_000}, 900.0),  # 3.6e6 / 4 / 1000
    ("avg_resolution_s", {C.TICKETS_RESOLVED: 2, C.RES_N: 0}, None),
    ("contacts_per_resolution", {C.CONTACTS_N: 4, C.CONTACTS_SUM: 6}, 1.5),  # 6 / 4
    ("contacts_per_resolution", {C.TICKETS_RESOLVED: 1, C.CONTACTS_N: 0}, None),
    ("one_contact_resolution_rate", {C.CONTACTS_N: 4, C.CONTACTS_ONE: 3}, 0.75),
    ("one_contact_resolution_rate", {C.CONTACTS_N: 0}, None),
    ("task_success_rate", {C.TASKS_COMPLETED: 3, C.TASKS_FAILED: 1}, 0.75),  # 3 / (3 + 1)
    ("task_success_rate", {C.TASKS_COMPLETED: 0, C.TASKS_FAILED: 2}, 0.0),
    ("task_success_rate", {C.TASKS_COMPLETED: 0, C.TASKS_FAILED: 0}, None),
    ("avg_task_steps", {C.STEPS_N: 2, C.STEPS_SUM: 7}, 3.5),  # 7 / 2
    ("avg_task_steps", {C.TASKS_COMPLETED: 2, C.STEPS_N: 0}, None),
    ("ces", {C.CES_N: 0, C.CES_SUM2: 0}, None),
    ("ces_easy", {C.CES_N: 0}, None),
    ("nps", {C.NPS_N: 0}, None),
    ("csat", {C.CSAT_N: 0}, None),
]


@pytest.mark.parametrize(("name", "counters", "expected"), RATIO_CASES)
def test_ratio_or_absent(name: str, counters: dict[int, int], expected: float | None) -> None:
    out = fields(counters)
    if expected is None:
        assert name not in out
    else:
        assert out[name] == pytest.approx(expected)
    # counts are there whatever the ratios do
    assert set(COUNT_FIELDS) <= set(out)


@pytest.mark.parametrize(
    ("active_24h", "active_30d", "expected"),
    [
        (3, 12, 0.25),  # 3 / 12
        (5, 5, 1.0),
        (0, 4, 0.0),
        (0, 0, None),  # no user in 30 d: absent
        (3, None, None),  # not the 24h window: absent
    ],
)
def test_stickiness(active_24h: int, active_30d: int | None, expected: float | None) -> None:
    out = fields({C.ACTIVE: active_24h}, active_users_30d=active_30d)
    if expected is None:
        assert "stickiness" not in out
    else:
        assert out["stickiness"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("active", "features", "expected"),
    [
        # 2 / 4 and 1 / 4
        (4, {"export": 2, "search": 1}, {"export": 0.5, "search": 0.25}),
        (1, {"a": 1}, {"a": 1.0}),
        (0, {"a": 1}, {}),  # no active user: nothing
        (3, {}, {}),
    ],
)
def test_feature_usage(active: int, features: dict[str, int], expected: dict[str, float]) -> None:
    assert feature_usage(bucket({C.ACTIVE: active}, features=features)) == pytest.approx(expected)
