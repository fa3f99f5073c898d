"""One-sided significance tests for `drop_vs`/`rise_vs` alert rules (SPEC section 4).

A rule compares a window (say `1h`) with a baseline: a longer window without
the overlap (`7d` minus its last `1h`). Which test fits depends on the metric:

- **proportions** (`csat`, `bounce_rate`, `ctr`, `task_success_rate`, ...):
  the pooled two-proportion z-test;
- **NPS**: the mean of +1 (promoter) / 0 (passive) / -1 (detractor) answers,
  with Welch's t-test (NPS = 100 x that mean);
- **means** (`ces`, `avg_time_on_page_s`, ...): Welch's t-test from count,
  sum and sum of squares;
- **counts** (`pageviews`, `events`, ...): events per minute, compared as two
  Poisson rates with the pooled normal approximation; `churn_rate` the same,
  as cancellations per subscriber-minute (a proportion test would compare an
  hour's churn with a week's, which always differ).

Everything here is plain arithmetic on `Bucket` sums: no SciPy, no clock. The
normal CDF comes from `math.erfc`, the Student-t CDF from the regularized
incomplete beta function (a continued fraction), both accurate far into the
tails so that tiny p-values stay exact.

`METRIC_TESTS` says for each testable field how to test it; `TESTABLE_FIELDS`
is what config.py accepts for `drop_vs`/`rise_vs`. The fields left out have
no sound test on the sums kept: distinct users are not additive over time
(`active_users`, `stickiness`, `tickets_per_user`), some means keep no sum of
squares (`pages_per_session`, `time_to_value_s`), confidence bounds are not
observations (`nps_ci95`, `csat_ci95_*`), and `active_subscribers` is an
all-time level, not a window. `observations` gives every field's denominator,
the `n` that `min_n` counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from cxstream.engine.aggregates import Bucket, C

__all__ = [
    "METRIC_TESTS",
    "TESTABLE_FIELDS",
    "Alternative",
    "Comparison",
    "MetricTest",
    "Sample",
    "TestKind",
    "compare",
    "normal_cdf",
    "normal_sf",
    "observations",
    "proportion_z_test",
    "rate_z_test",
    "regularized_beta",
    "student_t_cdf",
    "student_t_sf",
    "welch_t_test",
]

Alternative = Literal["less", "greater"]
TestKind = Literal["proportion", "nps", "mean", "rate"]

_EPS: Final = 1e-15
_TINY: Final = 1e-300
_MAX_ITERATIONS: Final = 100_000


# --- distributions ----------------------------------------------------------


def normal_cdf(z: float) -> float:
    """P(Z <= z) for a standard normal Z; exact in the lower tail (via erfc)."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z; exact in the upper tail."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b), evaluated by the modified Lentz method.

    Converges fast for x < (a + 1) / (a + b + 2); in the worst case in about
    sqrt(max(a, b)) terms.
    """
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITERATIONS + 1):
        m2 = 2 * m
        # Even step: m (b - m) x / ((a + 2m - 1)(a + 2m)).
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        # Odd step: -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)).
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        step = d * c
        h *= step
        if abs(step - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")


def _stirling_tail(z: float) -> float:
    """ln Gamma(z) - ((z - 1/2) ln z - z + ln(2 pi) / 2), for z >= 100 (error < 1e-20)."""
    z2 = z * z
    return (1.0 / 12.0 - (1.0 / 360.0 - 1.0 / (1260.0 * z2)) / z2) / z


def _log_beta(a: float, b: float) -> float:
    """ln B(a, b), without the cancellation of lgamma differences for a large argument.

    ln Gamma(big + small) - ln Gamma(big) is summed from Stirling's series
    term by term: with lgamma it loses about log10(big) digits, which matters
    for Welch's test on large samples (df / 2 in the millions).
    """
    big, small = max(a, b), min(a, b)
    if big < 100.0:
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    ratio = (
        small * math.log(big)
        + (big + small - 0.5) * math.log1p(small / big)
        - small
        + _stirling_tail(big + small)
        - _stirling_tail(big)
    )
    return math.lgamma(small) - ratio


def regularized_beta(a: float, b: float, x: float, y: float | None = None) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1.

    Pass `y` = 1 - x when it is known more exactly than `1 - x` can be
    computed (x close to 1): the Student-t tails need that.
    """
    if a <= 0 or b <= 0:
        raise ValueError(f"regularized_beta: expected a, b > 0, got a={a}, b={b}")
    if y is None:
        y = 1.0 - x
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise ValueError(f"regularized_beta: expected 0 <= x <= 1, got x={x}")
    if x == 0.0:
        return 0.0
    if y == 0.0:
        return 1.0
    # log x and log y from whichever of x, y is exact: a * log(x) is large when a is.
    log_x = math.log1p(-y) if y < 0.5 else math.log(x)
    log_y = math.log1p(-x) if x < 0.5 else math.log(y)
    log_front = a * log_x + b * log_y - _log_beta(a, b)
    # Combined in log space: the front factor alone may underflow where the result does not.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front + math.log(_beta_fraction(a, b, x) / a))
    return 1.0 - math.exp(log_front + math.log(_beta_fraction(b, a, y) / b))


def student_t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` > 0 degrees of freedom (df need not be whole)."""
    if df <= 0:
        raise ValueError(f"student_t_sf: expected df > 0, got {df}")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    t2 = t * t
    # P(|T| > |t|) = I_x(df/2, 1/2) with x = df / (df + t^2); 1 - x given exactly.
    two_tailed = regularized_beta(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2))
    return 0.5 * two_tailed if t > 0 else 1.0 - 0.5 * two_tailed


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` > 0 degrees of freedom."""
    return student_t_sf(-t, df)


# --- tests ------------------------------------------------------------------


def _one_sided(z_or_t: float, alternative: Alternative, df: float | None = None) -> float:
    """P-value of a statistic: `less` tests for a smaller first sample, `greater` larger."""
    statistic = -z_or_t if alternative == "less" else z_or_t
    return normal_sf(statistic) if df is None else student_t_sf(statistic, df)


def proportion_z_test(
    successes1: float, n1: float, successes0: float, n0: float, alternative: Alternative
) -> float | None:
    """One-sided p-value of the pooled two-proportion z-test, sample 1 vs sample 0.

    `alternative="less"`: H1 is p1 < p0. Under H0 both shares are the pooled
    one, so z = (p1 - p0) / sqrt(p (1 - p) (1/n1 + 1/n0)). When every
    observation is a success (or none is) the samples cannot differ: p = 1.
    None when a sample is empty or the counts are not a proportion
    (successes outside 0..n, e.g. more clicks than impressions).
    """
    if n1 <= 0 or n0 <= 0:
        return None
    if not (0 <= successes1 <= n1 and 0 <= successes0 <= n0):
        return None
    pooled = (successes1 + successes0) / (n1 + n0)
    variance = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n0)
    if variance <= 0.0:
        return 1.0
    z = (successes1 / n1 - successes0 / n0) / math.sqrt(variance)
    return _one_sided(z, alternative)


def welch_t_test(
    mean1: float,
    var1: float,
    n1: float,
    mean0: float,
    var0: float,
    n0: float,
    alternative: Alternative,
) -> float | None:
    """One-sided p-value of Welch's t-test, sample 1 vs sample 0.

    `var1`, `var0` are sample variances (n - 1 in the denominator); degrees of
    freedom by Welch-Satterthwaite. None below 2 observations in either
    sample. When both variances are 0 the difference is certain: p is 0 if
    the means differ in the tested direction, else 1 (SciPy gives NaN there).
    """
    if n1 < 2 or n0 < 2:
        return None
    se1, se0 = max(var1, 0.0) / n1, max(var0, 0.0) / n0
    se2 = se1 + se0
    diff = mean1 - mean0
    if se2 <= 0.0:
        toward = diff < 0 if alternative == "less" else diff > 0
        return 0.0 if toward else 1.0
    df = se2 * se2 / (se1 * se1 / (n1 - 1) + se0 * se0 / (n0 - 1))
    return _one_sided(diff / math.sqrt(se2), alternative, df)


def rate_z_test(
    count1: float, exposure1: float, count0: float, exposure0: float, alternative: Alternative
) -> float | None:
    """One-sided p-value comparing two Poisson rates, count per unit of exposure.

    The pooled normal approximation: under H0 both rates are
    (count1 + count0) / (exposure1 + exposure0) = r, and
    z = (count1/exposure1 - count0/exposure0) / sqrt(r (1/exposure1 + 1/exposure0)).
    With no events at all the rates cannot differ: p = 1. None when an
    exposure is not positive or a count is negative.
    """
    if exposure1 <= 0 or exposure0 <= 0 or count1 < 0 or count0 < 0:
        return None
    pooled = (count1 + count0) / (exposure1 + exposure0)
    if pooled <= 0.0:
        return 1.0
    variance = pooled * (1.0 / exposure1 + 1.0 / exposure0)
    z = (count1 / exposure1 - count0 / exposure0) / math.sqrt(variance)
    return _one_sided(z, alternative)


# --- metrics ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """What one window says about one metric, ready for a test.

    `n` counts the observations behind `value` (what `min_n` applies to);
    `value` is the field of SPEC section 2 (None when absent). The rest is
    on the test's scale: for proportions `x` successes of `n`; for means and
    NPS `x` the mean of one observation and `var` its sample variance; for
    rates `x` events over `exposure` (minutes, or subscriber-minutes for
    churn) and `per` such that value = x / exposure * per.
    """

    kind: TestKind
    n: int
    value: float | None
    x: float = 0.0
    var: float = 0.0
    exposure: float = 0.0
    per: float = 1.0


# A sample from a window's summed bucket, the active subscribers at the
# window's end, and the window's length in minutes.
SampleFn = Callable[[Bucket, int, float], Sample]


@dataclass(frozen=True, slots=True)
class MetricTest:
    """How to test one field: its test, and how to read a `Sample` from a bucket.

    `inverted`: the field is 1 - the tested quantity (retention is 1 - churn),
    so a drop of the field is a rise of what is tested.
    """

    kind: TestKind
    sample: SampleFn
    inverted: bool = False


def _int(value: float) -> int:
    # Bucket sums are ints, except sums of fractional values (scroll_pct).
    return round(value)


def _proportion(success_i: int, n_fn: Callable[[list[float]], float]) -> SampleFn:
    def sample(bucket: Bucket, active_subscribers: int, minutes: float) -> Sample:
        v = bucket.values
        n = _int(n_fn(v))
        successes = v[success_i]
        return Sample("proportion", n, successes / n if n > 0 else None, x=successes)

    return sample


def _mean(n_i: int, sum_i: int, sumsq_i: int, unit: float) -> SampleFn:
    """Mean of values kept as count, sum and sum of squares; `unit` rescales (ms -> s)."""

    def sample(bucket: Bucket, active_subscribers: int, minutes: float) -> Sample:
        v = bucket.values
        n, total, squares = _int(v[n_i]), v[sum_i], v[sumsq_i]
        if n <= 0:
            return Sample("mean", 0, None)
        mean = total / n / unit
        var = 0.0
        if n >= 2:
            # (n sumsq - sum^2) is exact for integer sums; clamp float rounding.
            var = max(0.0, (n * squares - total * total) / (n * (n - 1))) / (unit * unit)
        return Sample("mean", n, mean, x=mean, var=var)

    return sample


def _nps(bucket: Bucket, active_subscribers: int, minutes: float) -> Sample:
    v = bucket.values
    n, promoters, detractors = v[C.NPS_N], v[C.NPS_PROMOTERS], v[C.NPS_DETRACTORS]
    if n <= 0:
        return Sample("nps", 0, None)
    diff = promoters - detractors
    mean = diff / n
    # Answers are +1, 0, -1: sum of squares = promoters + detractors.
    var = max(0.0, ((promoters + detractors) * n - diff * diff) / (n * (n - 1))) if n >= 2 else 0.0
    return Sample("nps", n, 100 * mean, x=mean, var=var)


def _count(index: int) -> SampleFn:
    def sample(bucket: Bucket, active_subscribers: int, minutes: float) -> Sample:
        count = bucket.values[index]
        return Sample("rate", _int(count), count, x=count, exposure=minutes, per=minutes)

    return sample


def _churn(bucket: Bucket, active_subscribers: int, minutes: float) -> Sample:
    """Cancellations per subscriber-minute; the subscribers at the window's start are n."""
    v = bucket.values
    cancelled = v[C.SUBS_CANCELLED]
    at_start = active_subscribers - v[C.SUBS_STARTED] + cancelled
    if at_start <= 0:
        return Sample("rate", 0, None)
    return Sample(
        "rate",
        at_start,
        cancelled / at_start,
        x=cancelled,
        exposure=at_start * minutes,
        per=minutes,
    )


def _retention(bucket: Bucket, active_subscribers: int, minutes: float) -> Sample:
    churn = _churn(bucket, active_subscribers, minutes)
    if churn.value is None:
        return churn
    return Sample(
        "rate",
        churn.n,
        1.0 - churn.value,
        x=churn.x,
        exposure=churn.exposure,
        per=churn.per,
    )


METRIC_TESTS: Final[Mapping[str, MetricTest]] = {
    # ratios: two-proportion z-test
    "csat": MetricTest("proportion", _proportion(C.CSAT_SATISFIED, lambda v: v[C.CSAT_N])),
    "ces_easy": MetricTest("proportion", _proportion(C.CES_EASY, lambda v: v[C.CES_N])),
    "bounce_rate": MetricTest("proportion", _proportion(C.BOUNCES, lambda v: v[C.SESSIONS])),
    "ctr": MetricTest("proportion", _proportion(C.CLICKS, lambda v: v[C.IMPRESSIONS])),
    "activation_rate": MetricTest("proportion", _proportion(C.ACTIVATED, lambda v: v[C.SIGNUPS])),
    "one_contact_resolution_rate": MetricTest(
        "proportion", _proportion(C.CONTACTS_ONE, lambda v: v[C.CONTACTS_N])
    ),
    "task_success_rate": MetricTest(
        "proportion",
        _proportion(C.TASKS_COMPLETED, lambda v: v[C.TASKS_COMPLETED] + v[C.TASKS_FAILED]),
    ),
    # NPS: mean of +1/0/-1, Welch
    "nps": MetricTest("nps", _nps),
    # means: Welch
    "ces": MetricTest("mean", _mean(C.CES_N, C.CES_SUM2, C.CES_SUMSQ4, 2.0)),
    "avg_time_on_page_s": MetricTest(
        "mean", _mean(C.LEAVE_N, C.LEAVE_SUM_MS, C.LEAVE_SUMSQ_MS, 1000.0)
    ),
    "scroll_depth": MetricTest("mean", _mean(C.SCROLL_N, C.SCROLL_SUM, C.SCROLL_SUMSQ, 100.0)),
    "avg_first_response_s": MetricTest(
        "mean", _mean(C.FRT_N, C.FRT_SUM_MS, C.FRT_SUMSQ_MS, 1000.0)
    ),
    "avg_resolution_s": MetricTest("mean", _mean(C.RES_N, C.RES_SUM_MS, C.RES_SUMSQ_MS, 1000.0)),
    "contacts_per_resolution": MetricTest(
        "mean", _mean(C.CONTACTS_N, C.CONTACTS_SUM, C.CONTACTS_SUMSQ, 1.0)
    ),
    "avg_task_steps": MetricTest("mean", _mean(C.STEPS_N, C.STEPS_SUM, C.STEPS_SUMSQ, 1.0)),
    # counts: events per minute, Poisson rates
    "events": MetricTest("rate", _count(C.EVENTS)),
    "nps_n": MetricTest("rate", _count(C.NPS_N)),
    "nps_promoters": MetricTest("rate", _count(C.NPS_PROMOTERS)),
    "nps_passives": MetricTest("rate", _count(C.NPS_PASSIVES)),
    "nps_detractors": MetricTest("rate", _count(C.NPS_DETRACTORS)),
    "csat_n": MetricTest("rate", _count(C.CSAT_N)),
    "ces_n": MetricTest("rate", _count(C.CES_N)),
    "pageviews": MetricTest("rate", _count(C.PAGEVIEWS)),
    "sessions": MetricTest("rate", _count(C.SESSIONS)),
    "impressions": MetricTest("rate", _count(C.IMPRESSIONS)),
    "clicks": MetricTest("rate", _count(C.CLICKS)),
    "signups": MetricTest("rate", _count(C.SIGNUPS)),
    "subs_started": MetricTest("rate", _count(C.SUBS_STARTED)),
    "subs_cancelled": MetricTest("rate", _count(C.SUBS_CANCELLED)),
    "tickets_opened": MetricTest("rate", _count(C.TICKETS_OPENED)),
    "tickets_resolved": MetricTest("rate", _count(C.TICKETS_RESOLVED)),
    "tasks_completed": MetricTest("rate", _count(C.TASKS_COMPLETED)),
    "tasks_failed": MetricTest("rate", _count(C.TASKS_FAILED)),
    # churn: cancellations per subscriber-minute; retention is 1 - churn
    "churn_rate": MetricTest("rate", _churn),
    "retention_rate": MetricTest("rate", _retention, inverted=True),
}

#: The fields a `drop_vs`/`rise_vs` rule may watch (config.py checks rules against it).
TESTABLE_FIELDS: Final = frozenset(METRIC_TESTS)


def _subscribers_at_start(v: list[float], active_subscribers: int) -> int:
    return _int(active_subscribers - v[C.SUBS_STARTED] + v[C.SUBS_CANCELLED])


# The denominator of each field of SPEC section 2: the observations behind its
# value. For a count it is the count itself.
_OBSERVATIONS: Final[Mapping[str, Callable[[list[float], int], float]]] = {
    "events": lambda v, s: v[C.EVENTS],
    "active_users": lambda v, s: v[C.ACTIVE],
    "nps_n": lambda v, s: v[C.NPS_N],
    "nps_promoters": lambda v, s: v[C.NPS_PROMOTERS],
    "nps_passives": lambda v, s: v[C.NPS_PASSIVES],
    "nps_detractors": lambda v, s: v[C.NPS_DETRACTORS],
    "nps": lambda v, s: v[C.NPS_N],
    "nps_ci95": lambda v, s: v[C.NPS_N],
    "csat_n": lambda v, s: v[C.CSAT_N],
    "csat": lambda v, s: v[C.CSAT_N],
    "csat_ci95_low": lambda v, s: v[C.CSAT_N],
    "csat_ci95_high": lambda v, s: v[C.CSAT_N],
    "ces_n": lambda v, s: v[C.CES_N],
    "ces": lambda v, s: v[C.CES_N],
    "ces_easy": lambda v, s: v[C.CES_N],
    "pageviews": lambda v, s: v[C.PAGEVIEWS],
    "sessions": lambda v, s: v[C.SESSIONS],
    "pages_per_session": lambda v, s: v[C.SESSIONS],
    "bounce_rate": lambda v, s: v[C.SESSIONS],
    "avg_time_on_page_s": lambda v, s: v[C.LEAVE_N],
    "scroll_depth": lambda v, s: v[C.SCROLL_N],
    "impressions": lambda v, s: v[C.IMPRESSIONS],
    "clicks": lambda v, s: v[C.CLICKS],
    "ctr": lambda v, s: v[C.IMPRESSIONS],
    "signups": lambda v, s: v[C.SIGNUPS],
    "activation_rate": lambda v, s: v[C.SIGNUPS],
    "time_to_value_s": lambda v, s: v[C.ACTIVATED],
    "stickiness": lambda v, s: v[C.ACTIVE],
    "subs_started": lambda v, s: v[C.SUBS_STARTED],
    "subs_cancelled": lambda v, s: v[C.SUBS_CANCELLED],
    "active_subscribers": lambda v, s: s,
    "churn_rate": _subscribers_at_start,
    "retention_rate": _subscribers_at_start,
    "tickets_opened": lambda v, s: v[C.TICKETS_OPENED],
    "tickets_resolved": lambda v, s: v[C.TICKETS_RESOLVED],
    "tickets_per_user": lambda v, s: v[C.ACTIVE],
    "avg_first_response_s": lambda v, s: v[C.FRT_N],
    "avg_resolution_s": lambda v, s: v[C.RES_N],
    "contacts_per_resolution": lambda v, s: v[C.CONTACTS_N],
    "one_contact_resolution_rate": lambda v, s: v[C.CONTACTS_N],
    "tasks_completed": lambda v, s: v[C.TASKS_COMPLETED],
    "tasks_failed": lambda v, s: v[C.TASKS_FAILED],
    "task_success_rate": lambda v, s: v[C.TASKS_COMPLETED] + v[C.TASKS_FAILED],
    "avg_task_steps": lambda v, s: v[C.STEPS_N],
}


def observations(metric: str, bucket: Bucket, active_subscribers: int = 0) -> int:
    """The observations behind `metric` in a window's bucket: what `min_n` counts.

    Answers for nps/csat/ces, sessions for bounce_rate and pages_per_session,
    impressions for ctr, `page_leave` events for avg_time_on_page_s, the
    subscribers at the window's start for churn; a count is its own n.
    Raises KeyError for a name that is not a field of SPEC section 2.
    """
    return max(0, _int(_OBSERVATIONS[metric](bucket.values, active_subscribers)))


@dataclass(frozen=True, slots=True)
class Comparison:
    """The outcome of testing a window against its baseline.

    `baseline` is on the scale of the window's value: the baseline's
    proportion or mean, and for counts (and churn) the baseline's rate times
    the window's length, i.e. what the window would show at the baseline rate.
    """

    p_value: float
    baseline: float


def compare(
    metric: str, current: Sample, baseline: Sample, direction: Literal["drop", "rise"]
) -> Comparison | None:
    """Test whether `current` is significantly below (`drop`) or above (`rise`) `baseline`.

    Returns None when the test cannot be made: a sample without observations,
    Welch's test with fewer than 2 in a sample, counts that are not a
    proportion. Raises KeyError for a metric outside `TESTABLE_FIELDS`.
    """
    test = METRIC_TESTS[metric]
    if current.value is None or baseline.value is None:
        return None
    rising = direction == "rise"
    if test.inverted:
        rising = not rising
    alternative: Alternative = "greater" if rising else "less"
    p: float | None
    if test.kind == "proportion":
        p = proportion_z_test(current.x, current.n, baseline.x, baseline.n, alternative)
        reference = baseline.value
    elif test.kind in ("nps", "mean"):
        p = welch_t_test(
            current.x, current.var, current.n, baseline.x, baseline.var, baseline.n, alternative
        )
        reference = baseline.value
    else:
        p = rate_z_test(current.x, current.exposure, baseline.x, baseline.exposure, alternative)
        reference = baseline.x / baseline.exposure * current.per if baseline.exposure else 0.0
        if test.inverted:
            reference = 1.0 - reference
    if p is None:
        return None
    return Comparison(p_value=min(1.0, max(0.0, p)), baseline=reference)
