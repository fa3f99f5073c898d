"""The metric definitions of SPEC section 2, computed from a window's summed Bucket.

This is the only place that says what a metric means. A ratio or mean whose
denominator is zero is left out of the result (absent, not 0); counts are always
present.
"""

from __future__ import annotations

import math
from typing import Final

from cxstream.engine.aggregates import Bucket, C

__all__ = [
    "COUNT_FIELDS",
    "METRIC_FIELDS",
    "Z95",
    "compute_fields",
    "feature_usage",
    "wilson_interval",
]

Z95: Final = 1.96

COUNT_FIELDS: Final = (
    "events", "active_users", "nps_n", "nps_promoters", "nps_passives", "nps_detractors",
    "csat_n", "ces_n", "pageviews", "sessions", "impressions", "clicks", "signups",
    "subs_started", "subs_cancelled", "active_subscribers", "tickets_opened",
    "tickets_resolved", "tasks_completed", "tasks_failed",
)  # fmt: skip

METRIC_FIELDS: Final = (
    "events", "active_users",
    "nps_n", "nps_promoters", "nps_passives", "nps_detractors", "nps", "nps_ci95",
    "csat_n", "csat", "csat_ci95_low", "csat_ci95_high",
    "ces_n", "ces", "ces_easy",
    "pageviews", "sessions", "pages_per_session", "bounce_rate",
    "avg_time_on_page_s", "scroll_depth",
    "impressions", "clicks", "ctr",
    "signups", "activation_rate", "time_to_value_s", "stickiness",
    "subs_started", "subs_cancelled", "active_subscribers", "churn_rate", "retention_rate",
    "tickets_opened", "tickets_resolved", "tickets_per_user",
    "avg_first_response_s", "avg_resolution_s",
    "contacts_per_resolution", "one_contact_resolution_rate",
    "tasks_completed", "tasks_failed", "task_success_rate", "avg_task_steps",
)  # fmt: skip


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion: sound near 0 and 1, unlike the Wald one."""
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def compute_fields(
    b: Bucket,
    *,
    active_subscribers: int,
    active_users_30d: int | None = None,
) -> dict[str, int | float]:
    """Every field of SPEC section 2 for one window and scope.

    `active_users_30d` is given for the 24h window only, where it yields stickiness.
    """
    v = b.values
    active = v[C.ACTIVE]
    out: dict[str, int | float] = {"events": v[C.EVENTS], "active_users": active}

    nps_n = v[C.NPS_N]
    promoters, detractors = v[C.NPS_PROMOTERS], v[C.NPS_DETRACTORS]
    out.update(
        nps_n=nps_n,
        nps_promoters=promoters,
        nps_passives=v[C.NPS_PASSIVES],
        nps_detractors=detractors,
    )
    if nps_n:
        out["nps"] = 100 * (promoters - detractors) / nps_n
        if nps_n >= 2:
            p_p, p_d = promoters / nps_n, detractors / nps_n
            variance = max(0.0, p_p + p_d - (p_p - p_d) ** 2)
            out["nps_ci95"] = 196 * math.sqrt(variance / nps_n)

    csat_n = v[C.CSAT_N]
    out["csat_n"] = csat_n
    if csat_n:
        out["csat"] = v[C.CSAT_SATISFIED] / csat_n
        out["csat_ci95_low"], out["csat_ci95_high"] = wilson_interval(v[C.CSAT_SATISFIED], csat_n)

    ces_n = v[C.CES_N]
    out["ces_n"] = ces_n
    if ces_n:
        out["ces"] = v[C.CES_SUM2] / 2 / ces_n
        out["ces_easy"] = v[C.CES_EASY] / ces_n

    sessions = v[C.SESSIONS]
    out.update(pageviews=v[C.PAGEVIEWS], sessions=sessions)
    if sessions:
        out["pages_per_session"] = v[C.SESSION_PAGEVIEWS] / sessions
        out["bounce_rate"] = v[C.BOUNCES] / sessions
    if v[C.LEAVE_N]:
        out["avg_time_on_page_s"] = v[C.LEAVE_SUM_MS] / v[C.LEAVE_N] / 1000
    if v[C.SCROLL_N]:
        out["scroll_depth"] = v[C.SCROLL_SUM] / v[C.SCROLL_N] / 100

    impressions = v[C.IMPRESSIONS]
    out.update(impressions=impressions, clicks=v[C.CLICKS])
    if impressions:
        out["ctr"] = v[C.CLICKS] / impressions

    signups = v[C.SIGNUPS]
    out["signups"] = signups
    if signups:
        out["activation_rate"] = v[C.ACTIVATED] / signups
    if v[C.ACTIVATED]:
        out["time_to_value_s"] = v[C.TTV_SUM_MS] / v[C.ACTIVATED] / 1000
    if active_users_30d:
        out["stickiness"] = active / active_users_30d

    started, cancelled = v[C.SUBS_STARTED], v[C.SUBS_CANCELLED]
    out.update(
        subs_started=started, subs_cancelled=cancelled, active_subscribers=active_subscribers
    )
    at_start = active_subscribers - started + cancelled
    if at_start > 0:
        churn = cancelled / at_start
        out["churn_rate"] = churn
        out["retention_rate"] = 1 - churn

    out.update(tickets_opened=v[C.TICKETS_OPENED], tickets_resolved=v[C.TICKETS_RESOLVED])
    if active:
        out["tickets_per_user"] = v[C.TICKETS_OPENED] / active
    if v[C.FRT_N]:
        out["avg_first_response_s"] = v[C.FRT_SUM_MS] / v[C.FRT_N] / 1000
    if v[C.RES_N]:
        out["avg_resolution_s"] = v[C.RES_SUM_MS] / v[C.RES_N] / 1000
    if v[C.CONTACTS_N]:
        out["contacts_per_resolution"] = v[C.CONTACTS_SUM] / v[C.CONTACTS_N]
        out["one_contact_resolution_rate"] = v[C.CONTACTS_ONE] / v[C.CONTACTS_N]

    completed, failed = v[C.TASKS_COMPLETED], v[C.TASKS_FAILED]
    out.update(tasks_completed=completed, tasks_failed=failed)
    if completed + failed:
        out["task_success_rate"] = completed / (completed + failed)
    if v[C.STEPS_N]:
        out["avg_task_steps"] = v[C.STEPS_SUM] / v[C.STEPS_N]
    return out


def feature_usage(b: Bucket) -> dict[str, float]:
    """Per feature: distinct users who used it in the window / active users."""
    active = b.values[C.ACTIVE]
    if not active:
        return {}
    return {name: users / active for name, users in sorted(b.features.items()) if users > 0}
