"""The significance tests of cxstream.engine.stats against SciPy.

SciPy is a test dependency only: the engine computes its own normal and
Student-t tails, and these tables hold it to SciPy's values.
"""

from __future__ import annotations

import math

import pytest
from scipy import special
from scipy import stats as sp

from cxstream.engine import METRIC_FIELDS, Bucket, C, compute_fields
from cxstream.engine.stats import (
    METRIC_TESTS,
    TESTABLE_FIELDS,
    Sample,
    compare,
    normal_cdf,
    normal_sf,
    observations,
    proportion_z_test,
    rate_z_test,
    regularized_beta,
    student_t_cdf,
    student_t_sf,
    welch_t_test,
)

# --- distributions ----------------------------------------------------------


@pytest.mark.parametrize("z", [-35.0, -8.3, -3.0, -1.96, -0.5, 0.0, 0.1, 1.0, 2.576, 6.0, 30.0])
def test_normal_tails_match_scipy(z: float) -> None:
    assert normal_cdf(z) == pytest.approx(sp.norm.cdf(z), rel=1e-12, abs=0)
    assert normal_sf(z) == pytest.approx(sp.norm.sf(z), rel=1e-12, abs=0)


T_CASES = [
    # (t, df): small and fractional df, large df, far tails
    (0.0, 1.0),
    (1.0, 1.0),
    (-2.5, 1.0),
    (0.3, 2.5),
    (-1.7, 3.8),
    (2.2, 7.0),
    (12.0, 4.2),
    (-25.0, 30.0),
    (4.0, 63.3),
    (1.96, 1000.0),
    (-6.5, 12_345.6),
    (3.0, 2e5),
    (40.0, 80.0),
    (0.0001, 9.0),
]


@pytest.mark.parametrize(("t", "df"), T_CASES)
def test_student_t_matches_scipy(t: float, df: float) -> None:
    assert student_t_sf(t, df) == pytest.approx(sp.t.sf(t, df), rel=1e-9, abs=0)
    assert student_t_cdf(t, df) == pytest.approx(sp.t.cdf(t, df), rel=1e-9, abs=0)


@pytest.mark.parametrize("df", [1e6, 5e6, 1e8])
def test_student_t_huge_df_approaches_normal(df: float) -> None:
    # SciPy's own routines disagree at ~1e-9 here; the normal limit bounds both.
    for t in (0.5, 1.8, 3.5):
        assert student_t_sf(t, df) == pytest.approx(sp.t.sf(t, df), rel=1e-7)
        # Heavier tails than the normal's, by a relative O(t^4 / df).
        assert normal_sf(t) < student_t_sf(t, df) < normal_sf(t) * (1 + (t**4 + 1) / df)


@pytest.mark.parametrize(
    ("a", "b", "x"),
    [
        (0.5, 0.5, 0.3),
        (2.0, 3.0, 0.999),
        (10.0, 0.5, 0.01),
        (0.5, 40.0, 0.2),
        (223.2, 3.47, 0.606),
        (1009.1, 3796.6, 0.151),
        (5000.0, 0.5, 0.9999),
        (1.0, 1.0, 0.0),
        (1.0, 1.0, 1.0),
    ],
)
def test_regularized_beta_matches_scipy(a: float, b: float, x: float) -> None:
    assert regularized_beta(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-11, abs=0)


def test_regularized_beta_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="a, b > 0"):
        regularized_beta(0.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="0 <= x <= 1"):
        regularized_beta(1.0, 1.0, 1.5)


# --- tests ------------------------------------------------------------------


def pooled_reference(x1: int, n1: int, x0: int, n0: int, alternative: str) -> float:
    """The pooled two-proportion z-test, written out with SciPy's normal."""
    p = (x1 + x0) / (n1 + n0)
    z = (x1 / n1 - x0 / n0) / math.sqrt(p * (1 - p) * (1 / n1 + 1 / n0))
    return float(sp.norm.cdf(z) if alternative == "less" else sp.norm.sf(z))


@pytest.mark.parametrize(
    ("x1", "n1", "x0", "n0"),
    [
        (40, 100, 800, 1000),  # a clear drop
        (78, 100, 800, 1000),  # noise
        (95, 100, 800, 1000),  # a clear rise
        (1, 3, 2, 3),
        (12, 60, 7000, 10000),
        (500, 501, 9000, 10000),
        (0, 50, 30, 700),
    ],
)
@pytest.mark.parametrize("alternative", ["less", "greater"])
def test_proportion_z_test_matches_pooled_formula(
    x1: int, n1: int, x0: int, n0: int, alternative: str
) -> None:
    got = proportion_z_test(x1, n1, x0, n0, alternative)  # type: ignore[arg-type]
    assert got == pytest.approx(pooled_reference(x1, n1, x0, n0, alternative), rel=1e-12)


def test_proportion_z_test_edges() -> None:
    assert proportion_z_test(10, 10, 50, 50, "less") == 1.0  # all successes: no difference
    assert proportion_z_test(0, 10, 0, 50, "greater") == 1.0
    assert proportion_z_test(5, 0, 50, 50, "less") is None  # empty sample
    assert proportion_z_test(12, 10, 50, 100, "less") is None  # more clicks than impressions


WELCH_CASES = [
    # (mean1, sd1, n1, mean0, sd0, n0)
    (3.9, 1.2, 40, 3.2, 1.1, 900),
    (3.25, 1.1, 25, 3.2, 1.1, 900),
    (41.0, 30.0, 120, 55.0, 35.0, 5000),
    (0.2, 0.9, 2, 0.4, 0.8, 3),
    (10.0, 0.001, 10, 10.1, 5.0, 10),
    (1.0, 2.0, 1_000_000, 1.003, 2.0, 5_000_000),
]


@pytest.mark.parametrize(("m1", "s1", "n1", "m0", "s0", "n0"), WELCH_CASES)
@pytest.mark.parametrize("alternative", ["less", "greater"])
def test_welch_matches_scipy(
    m1: float, s1: float, n1: int, m0: float, s0: float, n0: int, alternative: str
) -> None:
    expected = sp.ttest_ind_from_stats(
        m1, s1, n1, m0, s0, n0, equal_var=False, alternative=alternative
    ).pvalue
    got = welch_t_test(m1, s1 * s1, n1, m0, s0 * s0, n0, alternative)  # type: ignore[arg-type]
    assert got == pytest.approx(expected, rel=1e-7 if n1 > 100_000 else 1e-9)


def test_welch_edges() -> None:
    assert welch_t_test(1.0, 0.0, 5, 2.0, 0.0, 5, "less") == 0.0  # certain difference
    assert welch_t_test(1.0, 0.0, 5, 2.0, 0.0, 5, "greater") == 1.0
    assert welch_t_test(1.0, 0.0, 5, 1.0, 0.0, 5, "less") == 1.0
    assert welch_t_test(1.0, 1.0, 1, 2.0, 1.0, 5, "less") is None  # n < 2


def nps_answers(promoters: int, passives: int, detractors: int) -> list[int]:
    return [1] * promoters + [0] * passives + [-1] * detractors


@pytest.mark.parametrize(
    ("now", "before"),
    [
        ((5, 10, 45), (400, 300, 300)),  # NPS -67 vs +10: a clear drop
        ((35, 30, 35), (400, 300, 300)),
        ((60, 30, 10), (400, 300, 300)),
        ((2, 0, 1), (3, 1, 4)),
    ],
)
@pytest.mark.parametrize("alternative", ["less", "greater"])
def test_nps_is_welch_on_plus_one_zero_minus_one(
    now: tuple[int, int, int], before: tuple[int, int, int], alternative: str
) -> None:
    a, b = nps_answers(*now), nps_answers(*before)
    expected = sp.ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue
    current = METRIC_TESTS["nps"].sample(nps_bucket(*now), 0, 60.0)
    baseline = METRIC_TESTS["nps"].sample(nps_bucket(*before), 0, 10_020.0)
    assert current.value == pytest.approx(100 * (now[0] - now[2]) / sum(now))
    direction = "drop" if alternative == "less" else "rise"
    result = compare("nps", current, baseline, direction)
    assert result is not None
    assert result.p_value == pytest.approx(expected, rel=1e-9)
    assert result.baseline == pytest.approx(100 * (before[0] - before[2]) / sum(before))


def rate_reference(c1: float, e1: float, c0: float, e0: float, alternative: str) -> float:
    pooled = (c1 + c0) / (e1 + e0)
    z = (c1 / e1 - c0 / e0) / math.sqrt(pooled * (1 / e1 + 1 / e0))
    return float(sp.norm.cdf(z) if alternative == "less" else sp.norm.sf(z))


@pytest.mark.parametrize(
    ("c1", "e1", "c0", "e0"),
    [
        (120, 60, 20_000, 10_020),  # 2/min vs 2/min
        (60, 60, 20_000, 10_020),  # a halving
        (300, 60, 20_000, 10_020),
        (3, 5, 50, 55),
        (0, 60, 500, 600),
    ],
)
@pytest.mark.parametrize("alternative", ["less", "greater"])
def test_rate_z_test_matches_pooled_normal(
    c1: float, e1: float, c0: float, e0: float, alternative: str
) -> None:
    got = rate_z_test(c1, e1, c0, e0, alternative)  # type: ignore[arg-type]
    assert got == pytest.approx(rate_reference(c1, e1, c0, e0, alternative), rel=1e-12)


def test_rate_z_test_edges() -> None:
    assert rate_z_test(0, 60, 0, 600, "less") == 1.0
    assert rate_z_test(1, 0, 5, 600, "less") is None


# --- metrics ----------------------------------------------------------------


def nps_bucket(promoters: int, passives: int, detractors: int) -> Bucket:
    b = Bucket()
    b.values[C.NPS_N] = promoters + passives + detractors
    b.values[C.NPS_PROMOTERS] = promoters
    b.values[C.NPS_PASSIVES] = passives
    b.values[C.NPS_DETRACTORS] = detractors
    return b


def moments_bucket(n_i: int, sum_i: int, sumsq_i: int, xs: list[float]) -> Bucket:
    b = Bucket()
    b.values[n_i] = len(xs)
    b.values[sum_i] = sum(xs)
    b.values[sumsq_i] = sum(x * x for x in xs)
    return b


@pytest.mark.parametrize(
    ("metric", "n_i", "sum_i", "sumsq_i", "unit", "now", "before"),
    [
        ("ces", C.CES_N, C.CES_SUM2, C.CES_SUMSQ4, 2, [8, 10, 12, 9, 14, 6], [4, 6, 2, 8, 5, 4, 3]),
        (
            "avg_time_on_page_s",
            C.LEAVE_N,
            C.LEAVE_SUM_MS,
            C.LEAVE_SUMSQ_MS,
            1000,
            [12_000, 4_000, 9_500, 3_000],
            [42_000, 30_000, 65_000, 51_000, 22_000],
        ),
        (
            "scroll_depth",
            C.SCROLL_N,
            C.SCROLL_SUM,
            C.SCROLL_SUMSQ,
            100,
            [10.5, 30.0, 22.25],
            [75.0, 60.5, 90.0, 80.0],
        ),
        ("avg_task_steps", C.STEPS_N, C.STEPS_SUM, C.STEPS_SUMSQ, 1, [7, 9, 8, 12], [3, 4, 3, 5]),
    ],
)
def test_mean_metrics_are_welch_on_their_own_units(
    metric: str,
    n_i: int,
    sum_i: int,
    sumsq_i: int,
    unit: float,
    now: list[float],
    before: list[float],
) -> None:
    current = METRIC_TESTS[metric].sample(moments_bucket(n_i, sum_i, sumsq_i, now), 0, 60.0)
    baseline = METRIC_TESTS[metric].sample(moments_bucket(n_i, sum_i, sumsq_i, before), 0, 600.0)
    a, b = [x / unit for x in now], [x / unit for x in before]
    assert current.value == pytest.approx(sum(a) / len(a))
    for direction, alternative in (("drop", "less"), ("rise", "greater")):
        result = compare(metric, current, baseline, direction)  # type: ignore[arg-type]
        assert result is not None
        expected = sp.ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue
        assert result.p_value == pytest.approx(expected, rel=1e-9)
        assert result.baseline == pytest.approx(sum(b) / len(b))


def test_counts_compare_rates_per_minute_and_scale_the_baseline() -> None:
    now, before = Bucket(), Bucket()
    now.values[C.PAGEVIEWS], before.values[C.PAGEVIEWS] = 30, 20_000
    current = METRIC_TESTS["pageviews"].sample(now, 0, 60.0)
    baseline = METRIC_TESTS["pageviews"].sample(before, 0, 10_000.0)
    result = compare("pageviews", current, baseline, "drop")
    assert result is not None
    assert result.baseline == pytest.approx(120.0)  # 2/min over the window's 60 minutes
    assert result.p_value == pytest.approx(rate_reference(30, 60, 20_000, 10_000, "less"))


def test_churn_is_a_rate_per_subscriber_minute_and_retention_its_mirror() -> None:
    now, before = Bucket(), Bucket()
    now.values[C.SUBS_CANCELLED] = 30  # of 1000 subscribers in 60 minutes
    before.values[C.SUBS_CANCELLED] = 100  # of 1030 subscribers in 10,000 minutes
    churn_now = METRIC_TESTS["churn_rate"].sample(now, 970, 60.0)
    churn_before = METRIC_TESTS["churn_rate"].sample(before, 1000, 10_000.0)
    assert (churn_now.n, churn_now.value) == (1000, 0.03)
    assert compute_fields(now, active_subscribers=970)["churn_rate"] == churn_now.value
    rise = compare("churn_rate", churn_now, churn_before, "rise")
    assert rise is not None
    assert rise.baseline == pytest.approx(100 / (1100 * 10_000) * 60)
    expected = rate_reference(30, 1000 * 60, 100, 1100 * 10_000, "greater")
    assert rise.p_value == pytest.approx(expected)
    kept_now = METRIC_TESTS["retention_rate"].sample(now, 970, 60.0)
    kept_before = METRIC_TESTS["retention_rate"].sample(before, 1000, 10_000.0)
    drop = compare("retention_rate", kept_now, kept_before, "drop")
    assert drop is not None
    assert drop.p_value == pytest.approx(expected)  # a retention drop is a churn rise
    assert drop.baseline == pytest.approx(1 - rise.baseline)


def full_bucket() -> Bucket:
    """A window where every field is present, with counts as events would make them."""
    b = Bucket()
    v = b.values
    v[C.EVENTS], v[C.ACTIVE] = 900, 120
    v[C.NPS_N], v[C.NPS_PROMOTERS], v[C.NPS_PASSIVES], v[C.NPS_DETRACTORS] = 50, 20, 12, 18
    v[C.CSAT_N], v[C.CSAT_SATISFIED] = 40, 31
    v[C.CES_N], v[C.CES_SUM2], v[C.CES_SUMSQ4], v[C.CES_EASY] = 3, 2 + 6 + 14, 4 + 36 + 196, 2
    v[C.PAGEVIEWS], v[C.SESSIONS], v[C.SESSION_PAGEVIEWS], v[C.BOUNCES] = 300, 80, 290, 30
    v[C.LEAVE_N], v[C.LEAVE_SUM_MS], v[C.LEAVE_SUMSQ_MS] = 2, 3000 + 5000, 3000**2 + 5000**2
    v[C.SCROLL_N], v[C.SCROLL_SUM], v[C.SCROLL_SUMSQ] = 2, 20.5 + 80.0, 20.5**2 + 80.0**2
    v[C.IMPRESSIONS], v[C.CLICKS] = 400, 37
    v[C.SIGNUPS], v[C.ACTIVATED], v[C.TTV_SUM_MS] = 9, 4, 4 * 3_600_000
    v[C.SUBS_STARTED], v[C.SUBS_CANCELLED] = 7, 5
    v[C.TICKETS_OPENED], v[C.TICKETS_RESOLVED] = 11, 10
    v[C.FRT_N], v[C.FRT_SUM_MS], v[C.FRT_SUMSQ_MS] = 2, 60_000 + 120_000, 60_000**2 + 120_000**2
    v[C.RES_N], v[C.RES_SUM_MS], v[C.RES_SUMSQ_MS] = 1, 3_600_000, 3_600_000**2
    v[C.CONTACTS_N], v[C.CONTACTS_SUM], v[C.CONTACTS_SUMSQ], v[C.CONTACTS_ONE] = 3, 5, 9, 2
    v[C.TASKS_COMPLETED], v[C.TASKS_FAILED] = 17, 3
    v[C.STEPS_N], v[C.STEPS_SUM], v[C.STEPS_SUMSQ] = 2, 7, 25
    return b


@pytest.mark.parametrize("metric", sorted(TESTABLE_FIELDS))
def test_samples_agree_with_the_published_fields(metric: str) -> None:
    """Each testable field's Sample value is the SPEC value compute_fields gives."""
    b = full_bucket()
    fields = compute_fields(b, active_subscribers=500)
    sample = METRIC_TESTS[metric].sample(b, 500, 60.0)
    assert isinstance(sample, Sample)
    assert sample.value == pytest.approx(fields[metric])
    assert sample.n == observations(metric, b, 500)


def test_every_field_has_a_denominator_and_testable_fields_are_fields() -> None:
    b = full_bucket()
    for metric in METRIC_FIELDS:
        assert observations(metric, b, 10) >= 0
    assert set(METRIC_FIELDS) >= TESTABLE_FIELDS
    assert not {"active_users", "stickiness", "pages_per_session", "nps_ci95"} & TESTABLE_FIELDS


def test_compare_without_observations_is_no_test() -> None:
    empty = METRIC_TESTS["csat"].sample(Bucket(), 0, 60.0)
    assert empty.value is None
    full = Bucket()
    full.values[C.CSAT_N], full.values[C.CSAT_SATISFIED] = 100, 80
    other = METRIC_TESTS["csat"].sample(full, 0, 600.0)
    assert compare("csat", empty, other, "drop") is None
