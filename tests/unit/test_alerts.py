"""AlertEngine: conditions, min_n, for_s, significance, one message per transition, restore."""

from __future__ import annotations

import itertools
import math
from typing import Any

import orjson
import pytest
from scipy import stats as sp

from cxstream.alerts import Alert, AlertEngine, alert_key
from cxstream.config import AlertRule, load_yaml_config
from cxstream.engine import Bucket, C, compute_fields
from cxstream.errors import ConfigError
from cxstream.sinks import Published

T0 = 1_795_766_400_000 + 30 * 60_000  # half past a whole hour
SPEC_KEYS = {"alert_id", "rule", "state", "severity", "metric", "window", "scope", "value", "n"}
SPEC_KEYS |= {"at", "message"}


def engine(*rules: AlertRule) -> AlertEngine:
    ids = itertools.count(1)
    return AlertEngine(rules, new_id=lambda: f"id{next(ids)}")


def nps_rule(**kw: Any) -> AlertRule:
    base: dict[str, Any] = dict(name="nps_low", metric="nps", window="1h", below=20.0, min_n=10)
    base.update(kw)
    return AlertRule(**base)


def nps(promoters: int, passives: int, detractors: int) -> Bucket:
    b = Bucket()
    v = b.values
    v[C.NPS_N] = promoters + passives + detractors
    v[C.NPS_PROMOTERS], v[C.NPS_PASSIVES], v[C.NPS_DETRACTORS] = promoters, passives, detractors
    return b


def csat(satisfied: int, n: int) -> Bucket:
    b = Bucket()
    b.values[C.CSAT_N], b.values[C.CSAT_SATISFIED] = n, satisfied
    return b


def item(bucket: Bucket, window: str = "1h", scope: str = "all", now: int = T0) -> Published:
    return Published(
        window=window,
        scope=scope,
        fields=compute_fields(bucket, active_subscribers=0),
        features={},
        pages=[],
        exit_pages=[],
        top_features=[],
        window_end_ms=now,
        total=bucket,
    )


def plus(a: Bucket, b: Bucket) -> Bucket:
    out = a.copy()
    out.merge(b)
    return out


BAD = nps(0, 2, 10)  # NPS -83.3, n=12
GOOD = nps(30, 10, 5)  # NPS 55.6, n=45


# --- threshold rules and transitions -----------------------------------------


def test_fires_once_holds_without_repeats_then_resolves_and_refires() -> None:
    e = engine(nps_rule(scope="all"))
    [fired] = e.evaluate([item(BAD)], T0)
    assert fired.to_dict() == {
        "alert_id": "id1",
        "rule": "nps_low",
        "state": "firing",
        "severity": "warning",
        "metric": "nps",
        "window": "1h",
        "scope": "all",
        "value": pytest.approx(-250 / 3),
        "threshold": 20.0,
        "n": 12,
        "at": T0,
        "message": "NPS -83.33 (n=12) below 20 over 1h for all",
    }
    assert e.active() == {"nps_low|1h|all": fired}
    # Holds, and gets worse: no repeats.
    assert e.evaluate([item(BAD)], T0 + 1000) == []
    assert e.evaluate([item(nps(0, 0, 40))], T0 + 2000) == []
    [resolved] = e.evaluate([item(GOOD)], T0 + 3000)
    assert (resolved.state, resolved.alert_id, resolved.at, resolved.n) == (
        "resolved",
        "id1",
        T0 + 3000,
        45,
    )
    assert resolved.message == "resolved: NPS 55.56 (n=45) no longer below 20 over 1h for all"
    assert e.active() == {}
    assert e.evaluate([item(GOOD)], T0 + 4000) == []
    [again] = e.evaluate([item(BAD)], T0 + 5000)
    assert (again.state, again.alert_id) == ("firing", "id2")


def test_thresholds_compare_strictly() -> None:
    exactly = nps(2, 8, 0)  # NPS 20
    assert compute_fields(exactly, active_subscribers=0)["nps"] == 20.0
    assert engine(nps_rule(min_n=0)).evaluate([item(exactly)], T0) == []
    above = AlertRule(name="hi", metric="nps", window="1h", above=20.0)
    assert engine(above).evaluate([item(exactly)], T0) == []
    [fired] = engine(above).evaluate([item(nps(3, 7, 0))], T0)
    assert fired.message == "NPS 30 (n=10) above 20 over 1h for all"


def test_message_names_metric_value_n_threshold_window_and_scope() -> None:
    bucket = nps(20, 23, 13)  # (20 - 13) / 56 = 12.5%
    [fired] = engine(nps_rule()).evaluate([item(bucket, scope="product=web")], T0)
    assert fired.message == "NPS 12.5 (n=56) below 20 over 1h for product=web"
    assert fired.key == "nps_low|1h|product=web"


def test_min_n_counts_the_denominator() -> None:
    e = engine(nps_rule(min_n=12))
    assert e.evaluate([item(nps(0, 1, 10))], T0) == []  # n = 11
    [fired] = e.evaluate([item(nps(0, 2, 10))], T0 + 1000)  # n = 12
    assert fired.n == 12
    # Bounce rate counts sessions, not page views.
    bounce = AlertRule(name="b", metric="bounce_rate", window="1h", above=0.5, min_n=20)
    b = Bucket()
    b.values[C.SESSIONS], b.values[C.BOUNCES], b.values[C.PAGEVIEWS] = 19, 15, 400
    assert engine(bounce).evaluate([item(b)], T0) == []
    b.values[C.SESSIONS] = 20
    [fired] = engine(bounce).evaluate([item(b)], T0)
    assert (fired.n, fired.value) == (20, 0.75)


def test_falling_below_min_n_resolves() -> None:
    e = engine(nps_rule(min_n=10))
    e.evaluate([item(BAD)], T0)
    [resolved] = e.evaluate([item(nps(0, 0, 5))], T0 + 60_000)  # answers rolled out
    assert resolved.state == "resolved"
    assert resolved.message == (
        "resolved: NPS -100 (n=5), fewer than min_n 10 observations, over 1h for all"
    )


def test_for_s_needs_the_condition_to_hold_that_long() -> None:
    e = engine(nps_rule(for_s=60))
    assert e.evaluate([item(BAD)], T0) == []
    assert e.evaluate([item(BAD)], T0 + 59_999) == []
    [fired] = e.evaluate([item(BAD)], T0 + 60_000)
    assert (fired.state, fired.at) == ("firing", T0 + 60_000)


def test_for_s_starts_over_when_the_condition_breaks() -> None:
    e = engine(nps_rule(for_s=60))
    assert e.evaluate([item(BAD)], T0) == []
    assert e.evaluate([item(GOOD)], T0 + 30_000) == []  # pending, never fired: no message
    assert e.evaluate([item(BAD)], T0 + 40_000) == []
    assert e.evaluate([item(BAD)], T0 + 90_000) == []
    [fired] = e.evaluate([item(BAD)], T0 + 100_000)
    assert fired.state == "firing"


def test_absent_metric_resolves() -> None:
    e = engine(nps_rule(min_n=0))
    e.evaluate([item(BAD)], T0)
    [resolved] = e.evaluate([item(Bucket())], T0 + 1000)
    assert resolved.to_dict()["value"] is None
    assert (resolved.state, resolved.n) == ("resolved", 0)
    assert resolved.message == "resolved: NPS absent (n=0) over 1h for all"


def test_a_window_missing_from_a_tick_keeps_its_state() -> None:
    e = engine(nps_rule())
    e.evaluate([item(BAD)], T0)
    assert e.evaluate([], T0 + 1000) == []
    assert e.evaluate([item(GOOD, window="24h")], T0 + 2000) == []
    assert list(e.active()) == ["nps_low|1h|all"]


def test_scope_filter_and_every_scope() -> None:
    scopes = ["all", "product=web", "product=app", "channel=ios"]
    items = [item(BAD, scope=s) for s in scopes]
    only_web = engine(nps_rule(scope="product=web")).evaluate(items, T0)
    assert [a.key for a in only_web] == ["nps_low|1h|product=web"]
    every = engine(nps_rule()).evaluate(items, T0)
    assert sorted(a.key for a in every) == sorted(f"nps_low|1h|{s}" for s in scopes)
    assert len({a.alert_id for a in every}) == len(scopes)


def test_rule_watches_only_its_window() -> None:
    assert engine(nps_rule()).evaluate([item(BAD, window="24h")], T0) == []


def test_count_metrics_use_their_own_value_as_n() -> None:
    rule = AlertRule(name="quiet", metric="pageviews", window="5m", below=10.0)
    b = Bucket()
    b.values[C.PAGEVIEWS] = 3
    [fired] = engine(rule).evaluate([item(b, window="5m")], T0)
    assert fired.message == "pageviews 3 (n=3) below 10 over 5m for all"


# --- drop_vs / rise_vs ----------------------------------------------------------


def csat_drop(**kw: Any) -> AlertRule:
    base: dict[str, Any] = dict(
        name="csat_drop", metric="csat", window="1h", drop_vs="7d", min_n=50, severity="critical"
    )
    base.update(kw)
    return AlertRule(**base)


def pooled_p(x1: int, n1: int, x0: int, n0: int) -> float:
    p = (x1 + x0) / (n1 + n0)
    z = (x1 / n1 - x0 / n0) / math.sqrt(p * (1 - p) * (1 / n1 + 1 / n0))
    return float(sp.norm.cdf(z))


def comparison_items(hour: Bucket, rest: Bucket, scope: str = "all") -> list[Published]:
    """The 1h window, and the 7d window that contains it plus the baseline `rest`."""
    return [item(hour, "1h", scope), item(plus(hour, rest), "7d", scope)]


@pytest.mark.parametrize(
    ("satisfied", "fires"),
    [(60, True), (70, True), (76, False), (80, False), (95, False)],
)
def test_drop_vs_fires_only_when_significant(satisfied: int, fires: bool) -> None:
    rest = csat(800, 1000)  # 80% over the rest of the week
    expected_p = pooled_p(satisfied, 100, 800, 1000)
    assert (expected_p < 0.01) == fires
    changes = engine(csat_drop()).evaluate(comparison_items(csat(satisfied, 100), rest), T0)
    assert len(changes) == int(fires)
    if fires:
        [fired] = changes
        assert set(fired.to_dict()) == SPEC_KEYS | {"baseline", "p_value"}
        assert fired.baseline == pytest.approx(0.8)
        assert fired.p_value == pytest.approx(expected_p, rel=1e-9)
        assert (fired.value, fired.n, fired.severity) == (satisfied / 100, 100, "critical")
        assert fired.message == (
            f"CSAT {satisfied / 100:g} (n=100) significantly below the 7d baseline 0.8 "
            f"(p={expected_p:.2g}) over 1h for all"
        )


def test_drop_vs_needs_min_n_in_both_windows() -> None:
    significant_hour = csat(40, 100)
    small_rest = csat(40, 49)
    assert engine(csat_drop()).evaluate(comparison_items(significant_hour, small_rest), T0) == []
    assert engine(csat_drop()).evaluate(comparison_items(csat(20, 49), csat(800, 1000)), T0) == []
    [fired] = engine(csat_drop()).evaluate(comparison_items(csat(20, 50), csat(800, 1000)), T0)
    assert fired.n == 50


def test_rise_vs_is_the_mirror_and_resolves_when_no_longer_significant() -> None:
    rule = csat_drop(name="csat_rise", drop_vs=None, rise_vs="7d")
    e = engine(rule)
    assert e.evaluate(comparison_items(csat(40, 100), csat(800, 1000)), T0) == []
    [fired] = e.evaluate(comparison_items(csat(99, 100), csat(800, 1000)), T0 + 1000)
    assert "significantly above the 7d baseline 0.8" in fired.message
    [resolved] = e.evaluate(comparison_items(csat(81, 100), csat(800, 1000)), T0 + 2000)
    assert resolved.state == "resolved"
    assert resolved.alert_id == fired.alert_id
    assert resolved.message.startswith(
        "resolved: CSAT 0.81 (n=100) no longer significantly above the 7d baseline 0.8 (p="
    )


def test_count_drop_compares_rates_per_minute() -> None:
    # now = 08:30:00: the 1h window covers 07:31:00..now (59 minutes), the 24h window
    # 08:31 the day before..now, so the baseline is 1380 minutes long.
    rule = AlertRule(name="traffic", metric="pageviews", window="1h", drop_vs="24h", min_n=10)
    hour, rest = Bucket(), Bucket()
    hour.values[C.PAGEVIEWS], rest.values[C.PAGEVIEWS] = 60, 2760  # 1.0/min vs 2.0/min
    items = [item(hour, "1h"), item(plus(hour, rest), "24h")]
    [fired] = engine(rule).evaluate(items, T0)
    assert fired.baseline == pytest.approx(2.0 * 59)
    rate0, rate1, pooled = 2760 / 1380, 60 / 59, (60 + 2760) / (59 + 1380)
    z = (rate1 - rate0) / math.sqrt(pooled * (1 / 59 + 1 / 1380))
    assert fired.p_value == pytest.approx(sp.norm.cdf(z), rel=1e-9)


def test_nps_drop_uses_welch_on_answers() -> None:
    rule = AlertRule(name="nps_drop", metric="nps", window="1h", drop_vs="7d", min_n=30)
    hour, rest = nps(10, 10, 20), nps(400, 300, 300)
    [fired] = engine(rule).evaluate(comparison_items(hour, rest), T0)
    a = [1] * 10 + [0] * 10 + [-1] * 20
    b = [1] * 400 + [0] * 300 + [-1] * 300
    expected = sp.ttest_ind(a, b, equal_var=False, alternative="less").pvalue
    assert fired.p_value == pytest.approx(expected, rel=1e-9)
    assert (fired.value, fired.baseline) == (pytest.approx(-25.0), pytest.approx(10.0))


def test_drop_vs_without_the_baseline_window_this_tick_is_no_news() -> None:
    e = engine(csat_drop())
    e.evaluate(comparison_items(csat(40, 100), csat(800, 1000)), T0)
    assert e.evaluate([item(csat(90, 100))], T0 + 1000) == []
    assert list(e.active()) == ["csat_drop|1h|all"]


# --- restore --------------------------------------------------------------------


def test_restore_does_not_refire_and_resolves_with_the_old_id() -> None:
    first = engine(nps_rule())
    [fired] = first.evaluate([item(BAD)], T0)
    restarted = engine(nps_rule())
    assert restarted.restore([b"not json", b"[1]", fired.to_json()]) == 1
    assert restarted.active() == {fired.key: fired}
    assert restarted.evaluate([item(BAD)], T0 + 5000) == []
    [resolved] = restarted.evaluate([item(GOOD)], T0 + 6000)
    assert (resolved.state, resolved.alert_id) == ("resolved", fired.alert_id)


def test_restore_takes_the_last_message_of_each_key() -> None:
    e = engine(nps_rule())
    [fired] = e.evaluate([item(BAD)], T0)
    [resolved] = e.evaluate([item(GOOD)], T0 + 1000)
    restarted = engine(nps_rule())
    assert restarted.restore([fired.to_json(), resolved.to_json()]) == 0
    [again] = restarted.evaluate([item(BAD)], T0 + 2000)
    assert (again.state, again.at) == ("firing", T0 + 2000)


def test_restored_alert_of_a_removed_rule_resolves() -> None:
    old = engine(nps_rule(name="gone"))
    [fired] = old.evaluate([item(BAD)], T0)
    e = engine(nps_rule())
    e.restore([orjson.dumps(fired.to_dict())])
    [resolved] = e.evaluate([], T0 + 1000)
    assert (resolved.key, resolved.state, resolved.alert_id) == (
        "gone|1h|all",
        "resolved",
        fired.alert_id,
    )
    assert resolved.message == "resolved: rule gone no longer watches nps over 1h for all"
    assert e.active() == {}


def test_scopes_are_owned_while_seen_and_forgotten_when_idle() -> None:
    e = engine(nps_rule())
    items = [item(BAD, scope="all"), item(BAD, scope="product=web")]
    assert e.unseen_scopes(items) == {"all", "product=web"}
    assert len(e.evaluate(items, T0)) == 2
    assert e.unseen_scopes(items) == set()
    assert e.evaluate([item(BAD, scope="all")], T0 + 100_000) == []
    # product=web moved to another worker: its state goes, without a message.
    assert e.forget_idle(T0 + 160_000, idle_ms=150_000) == {"product=web"}
    assert e.owned_scopes() == {"all"}
    assert list(e.active()) == ["nps_low|1h|all"]
    assert e.unseen_scopes(items) == {"product=web"}


def test_restore_can_be_limited_to_scopes() -> None:
    old = engine(nps_rule())
    fired = old.evaluate([item(BAD, scope="all"), item(BAD, scope="product=web")], T0)
    e = engine(nps_rule())
    assert e.restore([a.to_json() for a in fired], scopes={"product=web"}) == 1
    assert list(e.active()) == ["nps_low|1h|product=web"]


def test_alert_json_round_trips() -> None:
    [fired] = engine(csat_drop()).evaluate(comparison_items(csat(40, 100), csat(800, 1000)), T0)
    assert Alert.from_json(fired.to_json()) == fired
    [below] = engine(nps_rule()).evaluate([item(BAD)], T0)
    assert set(below.to_dict()) == SPEC_KEYS | {"threshold"}
    assert Alert.from_json(below.to_json()) == below
    with pytest.raises(ValueError, match="missing field state"):
        Alert.from_json(b'{"rule": "x"}')
    assert alert_key("r", "1h", "channel=web") == "r|1h|channel=web"


# --- rules ----------------------------------------------------------------------


def test_untestable_metrics_are_refused_for_comparisons() -> None:
    text = "alerts:\n  - {name: p, metric: pages_per_session, window: 1h, drop_vs: 7d}\n"
    with pytest.raises(ConfigError, match=r"alerts\[0\]\.metric: pages_per_session has no"):
        load_yaml_config(text)
    load_yaml_config(text.replace("drop_vs: 7d", "below: 2"))  # thresholds are fine
    rule = AlertRule(name="s", metric="stickiness", window="24h", rise_vs="30d")
    with pytest.raises(ValueError, match="no significance test"):
        AlertEngine([rule])
