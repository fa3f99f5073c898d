"""Synthetic customer-experience traffic: users, sessions, surveys and incidents.

Demos, load tests and replay fixtures need traffic that behaves like a real
product's, or the metrics on the dashboard say nothing: a skewed user
population, multi-page sessions with bounces, clicks on some impressions,
support tickets that are resolved minutes or hours after they are opened,
surveys whose answers lean the way real ones do. `generate_events` produces
such a stream as SPEC section 1 event dicts.

Everything is drawn from one `random.Random(seed)` and the start time is an
argument (nothing here reads the clock or does I/O), so the same arguments give
the same events, byte for byte: a failing test or a demo can be replayed
exactly. An `Incident` bends one metric in one scope for a while, which is how
alert rules are exercised end to end. `generate_bad_lines` gives raw lines that
are rejected for each reason of SPEC section 5.
"""

from __future__ import annotations

__all__ = [
    "CHANNELS",
    "FEATURES",
    "INCIDENT_METRICS",
    "PRODUCTS",
    "REJECT_REASONS",
    "TOUCHPOINTS",
    "Incident",
    "TrafficModel",
    "generate_bad_lines",
    "generate_events",
    "rfc3339",
]

import copy
import heapq
import json
import math
import random
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from cxstream.events import REJECT_REASONS

PRODUCTS: tuple[str, ...] = ("web_app", "mobile_app", "api")
"""Products a user can prefer; also the values an incident's `product=` scope may name."""

CHANNELS: tuple[str, ...] = ("web", "ios", "android", "email", "chat")
"""Channels events arrive through: devices for browsing, email and chat for contact."""

TOUCHPOINTS: tuple[str, ...] = ("checkout", "support", "onboarding", "product")
"""Touchpoints that events and surveys are tagged with."""

FEATURES: tuple[str, ...] = (
    "dashboard",
    "search",
    "reports",
    "export",
    "alerts",
    "sharing",
    "integrations",
    "api_keys",
    "billing",
    "collaboration",
)
"""The features `feature_used` reports, in no particular order."""

INCIDENT_METRICS: tuple[str, ...] = ("csat", "nps", "ces", "bounce", "task_success")
"""Metrics an `Incident` can shift."""


_Event = dict[str, object]

_MINUTE_MS = 60_000
_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_IST = timezone(timedelta(hours=5, minutes=30))
_DEVICE_CHANNELS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "web_app": (("web", "ios", "android"), (88, 6, 6)),
    "mobile_app": (("ios", "android"), (55, 45)),
    "api": (("web",), (1,)),
}
_SCOPE_VALUES: dict[str, tuple[str, ...]] = {
    "product": PRODUCTS,
    "channel": CHANNELS,
    "touchpoint": TOUCHPOINTS,
}


# --- incidents ---------------------------------------------------------------

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_CHANGE_RE = re.compile(r"(drop|rise)=([^@+]*)(?:@([^+]*))?(?:\+(.*))?")
_SCOPE_VALUE_RE = re.compile(r"[a-z0-9_.-]{1,64}")
_INCIDENT_FORM = (
    "METRIC:SCOPE:drop|rise=AMOUNT[@START][+DURATION], e.g. csat:product=web_app:drop=0.3@5m+10m"
)


def _parse_duration_s(text: str, what: str) -> float:
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{what} {text!r} is not a duration; expected a number with a unit ms, s, m, h or d, "
            "e.g. 5m"
        )
    return float(match[1]) * _DURATION_UNIT_S[match[2]]


def _format_duration_s(seconds: float) -> str:
    for unit in ("d", "h", "m", "s"):
        count = seconds / _DURATION_UNIT_S[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Incident:
    """A stretch of time in which one metric moves in one scope.

    `direction` is the way the metric itself moves, as SPEC section 2 defines it:
    `csat:all:drop=0.3` lowers the satisfied share, `ces:all:rise=0.3` raises the
    effort score (makes things harder), `bounce:channel=ios:rise=0.2` raises the
    bounce rate. `amount` (0–1) is the shift of the answer distribution:

    - csat: the satisfied share moves by `amount` (0.8 → 0.5 for `drop=0.3`);
    - nps: amount / 2 of the answers move from promoters to detractors (the
      reverse for a rise), so the NPS moves by 100 × amount points;
    - ces: the share of easy answers (mapped score ≤ 3) moves by `amount`,
      against the direction of the score;
    - bounce, task_success: the bounce and task success probabilities move by
      `amount`.

    Shares are clamped to 0–1 and overlapping incidents add up. The incident
    covers the events whose `ts` lies in [start + `start_s`, start + `start_s` +
    `duration_s`) of the run; `duration_s` None means until the end. Its scope
    matches an event by the canonical value of the dimension (`all` matches all).
    """

    metric: str
    scope: str
    direction: str
    amount: float
    start_s: float = 0.0
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.metric not in INCIDENT_METRICS:
            raise ValueError(f"metric {self.metric!r} is not one of {', '.join(INCIDENT_METRICS)}")
        if self.scope != "all":
            dimension, eq, value = self.scope.partition("=")
            if not eq or dimension not in _SCOPE_VALUES:
                raise ValueError(
                    f"scope {self.scope!r} is neither 'all' nor product=V, channel=V or "
                    "touchpoint=V"
                )
            if _SCOPE_VALUE_RE.fullmatch(value) is None or value == "all":
                raise ValueError(
                    f"scope value {value!r} is not a normalized dimension value "
                    "(1-64 characters of a-z, 0-9, _, . and -, not 'all'), e.g. web_app"
                )
        if self.direction not in ("drop", "rise"):
            raise ValueError(f"direction {self.direction!r} is neither 'drop' nor 'rise'")
        if not 0 < self.amount <= 1:
            raise ValueError(f"amount {self.amount!r} is not in (0, 1]: it shifts a share")
        if not 0 <= self.start_s < math.inf:
            raise ValueError(f"start {self.start_s!r} s is not a finite offset >= 0")
        if self.duration_s is not None and not 0 < self.duration_s < math.inf:
            raise ValueError(f"duration {self.duration_s!r} s is not a finite length > 0")

    @classmethod
    def parse(cls, text: str) -> Incident:
        """Read `METRIC:SCOPE:drop|rise=AMOUNT[@START][+DURATION]`.

        `csat:product=web_app:drop=0.3@5m` starts 5 minutes into the run and lasts
        to its end; `nps:all:drop=0.5@2m+10m` lasts 10 minutes. START defaults to
        0 (the start of the run); durations take a unit: ms, s, m, h or d.
        Raises ValueError naming the part that is wrong.
        """
        parts = text.strip().split(":")
        if len(parts) != 3:
            raise ValueError(
                f"incident {text!r}: expected {_INCIDENT_FORM}; "
                f"got {len(parts)} ':'-separated part(s) instead of 3"
            )
        metric, scope, change = parts
        match = _CHANGE_RE.fullmatch(change)
        if match is None:
            raise ValueError(
                f"incident {text!r}: change {change!r} is not drop=AMOUNT or rise=AMOUNT "
                "with an optional @START and +DURATION"
            )
        direction, amount_text, start_text, duration_text = match.groups()
        try:
            amount = float(amount_text)
        except ValueError:
            raise ValueError(f"incident {text!r}: amount {amount_text!r} is not a number") from None
        try:
            start_s = 0.0 if start_text is None else _parse_duration_s(start_text, "start")
            duration_s = (
                None if duration_text is None else _parse_duration_s(duration_text, "duration")
            )
            return cls(metric, scope, direction, amount, start_s, duration_s)
        except ValueError as exc:
            raise ValueError(f"incident {text!r}: {exc}") from None

    def __str__(self) -> str:
        text = f"{self.metric}:{self.scope}:{self.direction}={self.amount:g}"
        text += f"@{_format_duration_s(self.start_s)}" if self.start_s else ""
        if self.duration_s is not None:
            text += f"+{_format_duration_s(self.duration_s)}"
        return text

    @property
    def shift(self) -> float:
        """The signed change of the metric: negative for a drop."""
        return -self.amount if self.direction == "drop" else self.amount

    def active_at(self, offset_ms: int) -> bool:
        """Whether an event `offset_ms` after the start of the run is in the span."""
        start_ms = self.start_s * 1000
        if offset_ms < start_ms:
            return False
        return self.duration_s is None or offset_ms < start_ms + self.duration_s * 1000

    def applies_to(self, dimensions: Mapping[str, str | None]) -> bool:
        """Whether an event with these canonical dimension values is in the scope."""
        if self.scope == "all":
            return True
        dimension, _, value = self.scope.partition("=")
        return dimensions.get(dimension) == value


# --- the traffic model -------------------------------------------------------

# The run starts early so that sessions are already under way at its start.
# Every event of the pre-roll is generated and dropped, so at high rates it is
# cut short to bound the time before the first event (a dip in the first
# minute at thousands of events per second, instead of a long wait).
_PREROLL_MAX_MS = 15 * _MINUTE_MS
_PREROLL_MAX_EVENTS = 300_000
_DIURNAL_AMPLITUDE = 0.5
_DIURNAL_PEAK_HOUR_UTC = 15.0
_PRIOR_SESSIONS = 50.0  # weight of the guess below before real sessions are counted
_PRIOR_EVENTS_PER_SESSION = 14.0
_NEW_VISITOR_SHARE = 0.12


def _diurnal(t_ms: float) -> float:
    """Relative traffic at an instant: a day-long wave peaking mid-afternoon UTC."""
    phase = 2 * math.pi * (t_ms / _DAY_MS - _DIURNAL_PEAK_HOUR_UTC / 24)
    return 1 + _DIURNAL_AMPLITUDE * math.cos(phase)


def _diurnal_mean(a_ms: float, b_ms: float) -> float:
    """Mean of `_diurnal` over [a, b], in closed form (1 over whole days)."""
    if not math.isfinite(b_ms):
        return 1.0
    if b_ms - a_ms < 1:
        return _diurnal(a_ms)
    omega = 2 * math.pi / _DAY_MS
    shift = 2 * math.pi * _DIURNAL_PEAK_HOUR_UTC / 24
    sines = math.sin(omega * b_ms - shift) - math.sin(omega * a_ms - shift)
    return 1 + _DIURNAL_AMPLITUDE * sines / (omega * (b_ms - a_ms))


@dataclass(frozen=True, kw_only=True)
class TrafficModel:
    """What to generate: a seeded population, a span of event time and a rate.

    The model is a value; `events()` simulates it from scratch each time it is
    called, so two calls (or two models with equal fields) give identical
    output. `rate` is the mean number of events per second over the whole span;
    within it the rate follows a diurnal wave (±50 %, peak at 15:00 UTC), so a
    run over a day has quiet nights and busy afternoons while any run averages
    `rate`. `users` is the starting population; new visitors arrive and some
    sign up and stay. `duration_s` may be `math.inf` for an endless stream.

    Sessions already under way at `start_ms` are simulated from up to 15
    minutes before it. Above about 330 events/s that warm-up is shortened (to
    300,000 events) so that the first event comes within seconds; the first
    minutes then run below `rate` (about 0.5 × `rate` at 5,000/s, recovering
    over a few minutes).
    """

    seed: int
    start_ms: int
    duration_s: float
    rate: float
    users: int
    incidents: Sequence[Incident] = ()
    messy: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed: expected an int, got {self.seed!r}")
        if isinstance(self.start_ms, bool) or not isinstance(self.start_ms, int):
            raise ValueError(
                f"start_ms: expected an int of epoch milliseconds, got {self.start_ms!r}"
            )
        if self.start_ms < 0:
            raise ValueError(f"start_ms: expected epoch milliseconds >= 0, got {self.start_ms}")
        if not self.duration_s >= 0:
            raise ValueError(f"duration_s: expected a number >= 0, got {self.duration_s!r}")
        if not 0 < self.rate < math.inf:
            raise ValueError(f"rate: expected events per second > 0, got {self.rate!r}")
        if isinstance(self.users, bool) or not isinstance(self.users, int) or self.users < 1:
            raise ValueError(f"users: expected an int >= 1, got {self.users!r}")
        incidents = tuple(self.incidents)
        for incident in incidents:
            if not isinstance(incident, Incident):
                raise ValueError(f"incidents: expected Incident values, got {incident!r}")
            dimension, _, value = incident.scope.partition("=")
            known = _SCOPE_VALUES.get(dimension)
            if known is not None and value not in known:
                raise ValueError(
                    f"incident {incident}: no generated event has {dimension} {value!r}; "
                    f"the {dimension} values are {', '.join(known)}"
                )
        object.__setattr__(self, "incidents", incidents)

    def events(self) -> Iterator[_Event]:
        """Yield the events in non-decreasing `ts` order, from start to start + duration."""
        return _Simulation(self).run()


def generate_events(
    *,
    seed: int,
    start_ms: int,
    duration_s: float,
    rate: float,
    users: int,
    incidents: Sequence[Incident] = (),
    messy: bool = False,
) -> Iterator[_Event]:
    """Yield synthetic CX events; shorthand for `TrafficModel(...).events()`.

    Events are SPEC section 1 dicts with `ts` in [start_ms, start_ms +
    duration_s × 1000], non-decreasing, about `rate` per second of event time.
    Most `ts` are integer epoch ms, some RFC 3339 strings (`Z` or `+05:30`).
    With `messy=True` the same stream (same events, same ids) also carries what
    real producers send and the worker must cope with, all of it valid:
    dimension values to normalize (`"Web App"`, `" WEB "`, `"all"`, non-ASCII,
    over 64 characters), `null` and absent optional fields, unknown extra
    fields, integral floats (`7.0`) for ints, and a few exact duplicates (same
    `user_id` and `event_id`) right after their original.
    """
    model = TrafficModel(
        seed=seed,
        start_ms=start_ms,
        duration_s=duration_s,
        rate=rate,
        users=users,
        incidents=incidents,
        messy=messy,
    )
    return model.events()


# Page flow: where a visitor goes from each page, with weights. "/blog/" stands
# for any blog post.
_FLOW: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "/": (
        ("/pricing", "/features", "/docs", "/blog/", "/account", "/support"),
        (25, 20, 20, 15, 15, 5),
    ),
    "/features": (("/pricing", "/docs", "/", "/blog/"), (40, 25, 25, 10)),
    "/pricing": (("/checkout", "/features", "/docs", "/", "/support"), (18, 22, 15, 35, 10)),
    "/docs": (
        ("/docs/quickstart", "/docs/api", "/docs/webhooks", "/pricing", "/support"),
        (35, 30, 15, 10, 10),
    ),
    "/docs/quickstart": (("/docs/api", "/docs", "/pricing", "/account"), (40, 30, 15, 15)),
    "/docs/api": (("/docs/webhooks", "/docs", "/support", "/account"), (35, 35, 15, 15)),
    "/docs/webhooks": (("/docs/api", "/docs", "/support"), (45, 40, 15)),
    "/blog/": (("/blog/", "/", "/pricing", "/features"), (40, 30, 20, 10)),
    "/account": (("/account/billing", "/", "/support", "/pricing", "/docs"), (30, 25, 15, 15, 15)),
    "/account/billing": (("/account", "/pricing", "/support"), (50, 30, 20)),
    "/checkout": (("/account", "/", "/support"), (60, 30, 10)),
    "/support": (("/docs", "/account", "/"), (40, 35, 25)),
    "/signup": (("/docs/quickstart", "/account", "/"), (45, 40, 15)),
}
_ENTRY_USER = (
    ("/", "/account", "/docs", "/blog/", "/pricing", "/support"),
    (35, 20, 15, 15, 10, 5),
)
_ENTRY_VISITOR = (("/", "/blog/", "/pricing", "/docs", "/features"), (40, 30, 15, 10, 5))
_BLOG_POSTS = (
    "/blog/5-ways-to-cut-churn",
    "/blog/nps-vs-csat",
    "/blog/release-notes-2026-11",
    "/blog/customer-story-acme",
    "/blog/measuring-customer-effort",
    "/blog/onboarding-checklist",
)
_REFERRERS = (
    (
        "https://www.google.com/",
        "https://news.ycombinator.com/",
        "https://t.co/x7Kq2",
        "https://www.linkedin.com/",
        "email:newsletter",
        None,
    ),
    (35, 8, 7, 10, 10, 30),
)
_PAGE_TOUCHPOINT = {
    "/checkout": "checkout",
    "/signup": "onboarding",
    "/support": "support",
    "/account": "product",
    "/account/billing": "product",
}
_PAGE_STAGE = {
    "/": "awareness",
    "/features": "consideration",
    "/pricing": "consideration",
    "/docs": "consideration",
    "/docs/quickstart": "consideration",
    "/docs/api": "consideration",
    "/docs/webhooks": "consideration",
    "/signup": "decision",
    "/checkout": "decision",
    "/account": "retention",
    "/account/billing": "retention",
    "/support": "retention",
}
# Elements shown on a page and how often they are clicked (CTR).
_ELEMENTS: dict[str, tuple[tuple[str, float], ...]] = {
    "/": (("hero_cta", 0.14), ("pricing_banner", 0.07), ("feature_carousel", 0.05)),
    "/features": (("feature_card", 0.09), ("start_trial_cta", 0.12)),
    "/pricing": (("plan_card_pro", 0.15), ("plan_card_team", 0.11), ("annual_toggle", 0.08)),
    "/docs": (("quickstart_card", 0.16), ("search_box", 0.12)),
    "/blog/": (("related_post", 0.06), ("newsletter_signup", 0.04)),
    "/account": (("upgrade_banner", 0.05), ("referral_card", 0.04)),
    "/support": (("contact_form", 0.13), ("help_article", 0.10)),
}
_BOUNCE_BASE = {"web": 0.34, "ios": 0.24, "android": 0.27}
_FEATURE_WEIGHTS: dict[str, tuple[float, ...]] = {
    # in the order of FEATURES
    "web_app": (30, 18, 14, 9, 6, 6, 5, 2, 4, 6),
    "mobile_app": (35, 25, 6, 3, 12, 10, 1, 1, 2, 5),
    "api": (8, 5, 6, 15, 8, 2, 25, 25, 3, 3),
}
_TASKS: dict[str, tuple[tuple[str, float], ...]] = {
    # task and its success probability
    "web_app": (
        ("create_report", 0.88),
        ("invite_teammate", 0.93),
        ("export_data", 0.82),
        ("set_up_alert", 0.85),
        ("update_billing", 0.9),
    ),
    "mobile_app": (
        ("upload_photo", 0.9),
        ("share_item", 0.94),
        ("sync_data", 0.8),
        ("update_profile", 0.92),
    ),
    "api": (("create_api_key", 0.95), ("configure_webhook", 0.78), ("rotate_credentials", 0.86)),
}
_PLANS_MRR = (19.0, 49.0, 99.0, 249.0)
_CANCEL_REASONS = (
    "too_expensive",
    "missing_features",
    "switched_to_competitor",
    "not_using_enough",
    "technical_issues",
    "budget_cuts",
)
_COMMENTS_GOOD = (
    "fast checkout",
    "love the new dashboard",
    "support was quick and friendly",
    "easy to set up",
    "très bien 👍",
    "works great on my phone",
    "saves me hours every week",
)
_COMMENTS_MEH = (
    "does the job",
    "pricing page is confusing",
    "docs could be clearer",
    "a few bugs but fine",
)
_COMMENTS_BAD = (
    "app keeps crashing",
    "checkout failed twice",
    "took three emails to get an answer",
    "too expensive for what it does",
    "export is broken again",
    "muy lento 😞",
    "can't find the settings",
)
_NPS_DETRACTOR_SCORES = ((0, 1, 2, 3, 4, 5, 6), (12, 4, 5, 7, 10, 22, 40))
# Messy spellings a producer might send for each canonical value.
_MESSY: dict[str, tuple[str, ...]] = {
    "web_app": ("Web App", "WEB_APP", " web app ", "web-app", "Wéb App", "all"),
    "mobile_app": ("Mobile App", "MOBILE_APP", "mobile app", "モバイル"),
    "api": ("API", " api", "Api v2"),
    "web": (" WEB ", "Web", "WWW", "all"),
    "ios": ("iOS", "IOS ", "iPhone"),
    "android": ("Android", "ANDROID", "android "),
    "email": ("E-Mail", "Email", "e-mail"),
    "chat": ("Chat", "live chat", "💬 chat"),
    "checkout": ("Checkout", "check-out", "Kasse"),
    "support": ("Support", "SUPPORT ", "Kundendienst"),
    "onboarding": ("Onboarding", "on-boarding"),
    "product": ("Product", "in-app"),
}
_MESSY_LONG = "campaign_2026_q4_black_friday_cyber_monday_retargeting_lookalike_audience_v3"


def _clamp01(x: float) -> float:
    return 0.0 if x < 0 else 1.0 if x > 1 else x


@dataclass(slots=True)
class _User:
    user_id: str
    account_id: str | None
    product: str
    device: str  # channel for browsing: web, ios or android
    contact: str  # channel for support and surveys: email or chat
    subscribed: bool
    subscribed_ms: int | None = None  # when a subscription of this run started
    subscribed_in: tuple[str, str] = ("", "")  # that subscription's product and channel


@dataclass(slots=True)
class _Pending:
    """An event decided but not emitted yet; its id and `ts` form are drawn on emission."""

    type: str
    user: _User
    product: str
    channel: str
    touchpoint: str | None
    stage: str | None
    session_id: str | None
    properties: dict[str, object] | None


@dataclass(slots=True)
class _Visit:
    """The setting one session's events share."""

    user: _User
    product: str
    channel: str
    session_id: str
    tag_stages: bool


class _Simulation:
    """The state of one run of a `TrafficModel`: population, clock, pending events.

    Sessions are generated whole when they start and their events (some of them
    hours later: ticket resolutions, email survey answers) wait in a heap until
    event time reaches them, which keeps the output sorted by `ts`. Sessions
    arrive at a rate of `rate` / (events per session so far), so the event
    rate follows `rate` without a closed form for the session mix. The run
    starts up to 15 minutes early and drops what falls before the start, so the
    first minutes already have sessions under way, as a real stream would.
    """

    def __init__(self, model: TrafficModel) -> None:
        self.model = model
        self.rng = random.Random(model.seed)
        # Messiness has its own stream so that messy=True changes the form of
        # the events, never which events there are.
        self.mess = random.Random(f"cxstream-messy-{model.seed}")
        self.end_ms = model.start_ms + model.duration_s * 1000
        self.users: list[_User] = []
        self.cum_weights: list[float] = []
        self.joining: list[tuple[int, int, _User, float]] = []  # signed up, not yet back
        self.heap: list[tuple[int, int, _Pending]] = []
        self.seq = 0
        self.next_user = 0
        self.next_ticket = 0
        self.sessions = 0
        self.pushed = 0
        self._populate()

    # -- population ------------------------------------------------------

    def _populate(self) -> None:
        rng = self.rng
        n_accounts = max(1, self.model.users // 12)
        account_weights = [1 / (i + 1) ** 0.9 for i in range(n_accounts)]
        accounts = [f"acct_{i:05d}" for i in range(n_accounts)]
        for _ in range(self.model.users):
            account = rng.choices(accounts, account_weights)[0] if rng.random() < 0.4 else None
            user = self._new_user(account)
            user.subscribed = rng.random() < (0.5 if account else 0.25)
            self._join(user, rng.lognormvariate(0, 1))

    def _new_user(self, account_id: str | None) -> _User:
        rng = self.rng
        product = rng.choices(PRODUCTS, (55, 30, 15))[0]
        devices, weights = _DEVICE_CHANNELS[product]
        user = _User(
            user_id=f"u{self.next_user:06d}",
            account_id=account_id,
            product=product,
            device=rng.choices(devices, weights)[0],
            contact="chat" if rng.random() < 0.4 else "email",
            subscribed=False,
        )
        self.next_user += 1
        return user

    def _join(self, user: _User, weight: float) -> None:
        self.users.append(user)
        self.cum_weights.append((self.cum_weights[-1] if self.cum_weights else 0.0) + weight)

    def _pick_user(self, now_ms: int) -> _User:
        # Users who signed up join the returning population once their signup
        # has happened, not when it was decided.
        while self.joining and self.joining[0][0] <= now_ms:
            _, _, user, weight = heapq.heappop(self.joining)
            self._join(user, weight)
        return self.rng.choices(self.users, cum_weights=self.cum_weights)[0]

    # -- the event loop --------------------------------------------------

    def run(self) -> Iterator[_Event]:
        model = self.model
        rng = self.rng
        start_ms = model.start_ms
        norm = _diurnal_mean(start_ms, self.end_ms)
        rate_per_ms = model.rate / 1000 / norm
        preroll_ms = min(_PREROLL_MAX_MS, _PREROLL_MAX_EVENTS / model.rate * 1000)
        t = start_ms - preroll_ms
        while True:
            if t <= self.end_ms and (not self.heap or t <= self.heap[0][0]):
                self._session(math.ceil(t))
                per_session = (self.pushed + _PRIOR_EVENTS_PER_SESSION * _PRIOR_SESSIONS) / (
                    self.sessions + _PRIOR_SESSIONS
                )
                t += rng.expovariate(rate_per_ms * _diurnal(t) / per_session)
                continue
            if not self.heap:
                return
            ts, _, pending = heapq.heappop(self.heap)
            if ts > self.end_ms:
                return
            if ts < start_ms:
                continue
            event = self._build(ts, pending)
            if model.messy:
                yield from self._mess_up(event)
            else:
                yield event

    def _push(
        self,
        ts: float,
        type_: str,
        visit: _Visit,
        properties: dict[str, object] | None = None,
        *,
        touchpoint: str | None = None,
        channel: str | None = None,
        product: str | None = None,
        stage: str | None = None,
        in_session: bool = True,
    ) -> None:
        pending = _Pending(
            type=type_,
            user=visit.user,
            product=product or visit.product,
            channel=channel or visit.channel,
            touchpoint=touchpoint,
            stage=stage if visit.tag_stages else None,
            session_id=visit.session_id if in_session else None,
            properties=properties,
        )
        self.seq += 1
        self.pushed += 1
        heapq.heappush(self.heap, (math.ceil(ts), self.seq, pending))

    def _shift(
        self, metric: str, ts: float, product: str, channel: str, touchpoint: str | None
    ) -> float:
        """The summed shift of the incidents on `metric` covering this event."""
        if not self.model.incidents:
            return 0.0
        total = 0.0
        offset_ms = math.ceil(ts) - self.model.start_ms
        dimensions = {"product": product, "channel": channel, "touchpoint": touchpoint}
        for incident in self.model.incidents:
            if (
                incident.metric == metric
                and incident.active_at(offset_ms)
                and incident.applies_to(dimensions)
            ):
                total += incident.shift
        return total

    # -- sessions --------------------------------------------------------

    def _session(self, t: int) -> None:
        self.sessions += 1
        rng = self.rng
        if rng.random() < _NEW_VISITOR_SHARE:
            self._visitor_session(t)
            return
        user = self._pick_user(t)
        product = user.product if rng.random() < 0.95 else rng.choice(PRODUCTS)
        devices, weights = _DEVICE_CHANNELS[product]
        channel = (
            user.device
            if user.device in devices and rng.random() < 0.9
            else rng.choices(devices, weights)[0]
        )
        visit = _Visit(user, product, channel, self._session_id(), rng.random() < 0.6)
        pages = self._pages(visit, t, _ENTRY_USER, bounce_base=_BOUNCE_BASE[channel])
        leaves, end = self._browse(visit, t, pages)
        if len(pages) > 1:
            self._use_product(visit, t, end)
        for page, leave in zip(pages, leaves, strict=True):
            if page == "/checkout":
                self._checkout(visit, leave)
            elif page.startswith("/account") and user.subscribed and rng.random() < 0.004:
                self._cancel(visit, t, leave)
            elif page == "/support" and rng.random() < 0.35:
                self._ticket(visit, leave)
        if rng.random() < 0.004:  # tickets from outside the site: an email or chat
            self._ticket(visit, end + rng.uniform(0, 2 * _HOUR_MS))
        if rng.random() < 0.05:
            self._nps(visit, end)

    def _visitor_session(self, t: int) -> None:
        """A first visit from someone new; some sign up, most of those activate."""
        rng = self.rng
        account = (
            f"acct_{rng.randrange(max(1, self.model.users // 12)):05d}"
            if rng.random() < 0.2
            else None
        )
        user = self._new_user(account)
        devices, weights = _DEVICE_CHANNELS[user.product]
        channel = rng.choices(devices, weights)[0]
        visit = _Visit(user, user.product, channel, self._session_id(), rng.random() < 0.6)
        pages = self._pages(visit, t, _ENTRY_VISITOR, bounce_base=0.45, visitor=True)
        leaves, _ = self._browse(visit, t, pages)
        if "/signup" not in pages or rng.random() >= 0.6:
            return
        signup_ms = leaves[pages.index("/signup")] - rng.uniform(1000, 5000)
        self._push(signup_ms, "signup", visit, None, touchpoint="onboarding", stage="decision")
        heapq.heappush(
            self.joining, (math.ceil(signup_ms), self.seq, user, rng.lognormvariate(-0.5, 1))
        )
        if rng.random() < 0.75:  # activation: first value within minutes, sometimes hours
            first = signup_ms + min(rng.lognormvariate(math.log(120_000), 1.2), 3 * _DAY_MS)
            weights_ = _FEATURE_WEIGHTS[user.product]
            self._push(
                first,
                "feature_used",
                visit,
                {"feature": rng.choices(FEATURES, weights_)[0]},
                touchpoint="onboarding",
            )
            for _ in range(rng.randrange(3)):
                first += rng.lognormvariate(math.log(30_000), 0.8)
                self._push(
                    first,
                    "feature_used",
                    visit,
                    {"feature": rng.choices(FEATURES, weights_)[0]},
                    touchpoint="onboarding",
                )
            self._task(visit, first + 5000, "complete_onboarding", "onboarding", 0.88)
            if rng.random() < 0.3:
                self._csat(
                    visit,
                    first + rng.lognormvariate(math.log(60_000), 0.7),
                    "onboarding",
                    visit.channel,
                    0.8,
                )
        elif rng.random() < 0.3:  # tried, got stuck
            self._task(visit, signup_ms + 60_000, "complete_onboarding", "onboarding", 0.3)

    def _pages(
        self,
        visit: _Visit,
        t: int,
        entries: tuple[tuple[str, ...], tuple[float, ...]],
        *,
        bounce_base: float,
        visitor: bool = False,
    ) -> list[str]:
        """The page flow of a session: one page for a bounce, else a Markov walk."""
        rng = self.rng
        pages = [self._page(rng.choices(*entries)[0])]
        shift = self._shift(
            "bounce", t, visit.product, visit.channel, _PAGE_TOUCHPOINT.get(pages[0])
        )
        if rng.random() < _clamp01(bounce_base + shift):
            return pages
        length = 2 + min(int(rng.expovariate(1 / 3.0)), 14)
        while len(pages) < length:
            page = pages[-1]
            if visitor and "/signup" not in pages and rng.random() < 0.25:
                pages.append("/signup")
                continue
            targets, weights = _FLOW["/blog/" if page.startswith("/blog/") else page]
            nxt = self._page(rng.choices(targets, weights)[0])
            if visitor and nxt in ("/account", "/account/billing", "/checkout"):
                nxt = "/signup" if "/signup" not in pages else "/docs"
            pages.append(nxt)
        return pages

    def _page(self, page: str) -> str:
        return self.rng.choice(_BLOG_POSTS) if page == "/blog/" else page

    def _browse(self, visit: _Visit, t: int, pages: list[str]) -> tuple[list[float], float]:
        """Emit view, leave, impressions and clicks of each page.

        Returns when each page was left and when the session ended.
        """
        rng = self.rng
        leaves: list[float] = []
        cursor = float(t)
        referrer = rng.choices(*_REFERRERS)[0]
        for page in pages:
            props: dict[str, object] = {"page": page}
            if referrer is not None:
                props["referrer"] = referrer
            touchpoint = _PAGE_TOUCHPOINT.get(page)
            stage = _PAGE_STAGE.get(page, "awareness")
            self._push(cursor, "page_view", visit, props, touchpoint=touchpoint, stage=stage)
            median_s = 45 if page.startswith(("/docs", "/blog/")) else 20
            dwell = min(rng.lognormvariate(math.log(median_s * 1000), 0.9), 30 * _MINUTE_MS)
            leave = cursor + dwell
            for element, ctr in _ELEMENTS.get("/blog/" if page.startswith("/blog/") else page, ()):
                if rng.random() < 0.6:
                    shown = cursor + rng.uniform(200, min(3000.0, dwell))
                    self._push(
                        shown, "impression", visit, {"element": element}, touchpoint=touchpoint
                    )
                    if rng.random() < ctr:
                        clicked = min(shown + rng.lognormvariate(math.log(4000), 0.8), leave)
                        self._push(
                            clicked, "click", visit, {"element": element}, touchpoint=touchpoint
                        )
            leave_props: dict[str, object] = {"page": page, "duration_ms": round(dwell)}
            if rng.random() < 0.8:
                depth = 100 * min(1.0, rng.betavariate(2, 1.6) * (0.6 + dwell / 120_000))
                leave_props["scroll_pct"] = round(depth) if rng.random() < 0.5 else round(depth, 1)
            self._push(leave, "page_leave", visit, leave_props, touchpoint=touchpoint)
            leaves.append(leave)
            referrer = page
            cursor = leave + rng.uniform(150, 3000)
        return leaves, cursor

    def _use_product(self, visit: _Visit, t: int, end: float) -> None:
        rng = self.rng
        weights = _FEATURE_WEIGHTS[visit.product]
        for _ in range(rng.choices((0, 1, 2, 3, 4, 5), (20, 30, 22, 14, 9, 5))[0]):
            feature = rng.choices(FEATURES, weights)[0]
            self._push(
                rng.uniform(t, end),
                "feature_used",
                visit,
                {"feature": feature},
                touchpoint="product",
            )
        if rng.random() < 0.35:
            task, success = rng.choice(_TASKS[visit.product])
            self._task(visit, rng.uniform(t, end), task, "product", success)
        if rng.random() < 0.04:  # an in-app "how was it?" prompt
            self._csat(visit, end + rng.uniform(1000, 20_000), "product", visit.channel, 0.82)

    def _task(self, visit: _Visit, ts: float, task: str, touchpoint: str, success: float) -> bool:
        rng = self.rng
        shift = self._shift("task_success", ts, visit.product, visit.channel, touchpoint)
        ok = rng.random() < _clamp01(success + shift)
        props: dict[str, object] = {"task": task}
        if ok:
            if rng.random() < 0.85:
                props["steps"] = 1 + min(int(rng.expovariate(1 / 3.5)), 20)
            if rng.random() < 0.85:
                props["duration_ms"] = round(rng.lognormvariate(math.log(40_000), 0.9))
        self._push(
            ts, "task_completed" if ok else "task_failed", visit, props, touchpoint=touchpoint
        )
        if rng.random() < 0.2:
            answered = ts + rng.lognormvariate(math.log(15_000), 0.6)
            self._ces(visit, answered, touchpoint, visit.channel, 0.74 if ok else 0.3)
        return ok

    def _checkout(self, visit: _Visit, ts: float) -> None:
        rng = self.rng
        user = visit.user
        ok = self._task(visit, ts - rng.uniform(500, 3000), "checkout", "checkout", 0.86)
        if ok and not user.subscribed:
            started = math.ceil(ts + rng.uniform(200, 2000))
            props: dict[str, object] = {}
            if rng.random() < 0.9:
                seats = 1 if user.account_id is None else rng.choice((1, 3, 5, 10, 25))
                props["mrr"] = rng.choice(_PLANS_MRR) * seats
            self._push(
                started,
                "subscription_started",
                visit,
                props,
                touchpoint="checkout",
                stage="decision",
            )
            user.subscribed = True
            # A start before the run (in its warm-up) is not in the output: like the
            # subscribers from before the run, that subscription is not cancelled.
            user.subscribed_ms = started if started >= self.model.start_ms else None
            user.subscribed_in = (visit.product, visit.channel)
        if rng.random() < 0.3:
            answered = ts + rng.lognormvariate(math.log(40_000), 0.7)
            self._csat(visit, answered, "checkout", visit.channel, 0.87 if ok else 0.35)

    def _cancel(self, visit: _Visit, t: int, ts: float) -> None:
        """Cancel a subscription that started in this run's output.

        Active subscribers and churn are computed from the output alone, so a
        cancellation of a subscription whose start is not in it (one from before the
        run) would be churn of subscribers nobody counted: a short run would show
        more cancellations than subscribers. Subscribers from before the run stay.

        The billing system sends the cancellation, outside any session, with the
        product, channel and touchpoint of the subscription it ends: a subscription
        counts in the scopes of its own events, so a cancellation tagged with the
        page where the user clicked would take that scope's active subscribers
        below zero.
        """
        user = visit.user
        if user.subscribed_ms is None or user.subscribed_ms >= t:
            return  # no start in the output, or one in a session still under way
        props: dict[str, object] = {}
        if self.rng.random() < 0.8:
            props["reason"] = self.rng.choice(_CANCEL_REASONS)
        product, channel = user.subscribed_in
        self._push(
            ts,
            "subscription_cancelled",
            visit,
            props,
            touchpoint="checkout",
            channel=channel,
            product=product,
            stage="retention",
            in_session=False,
        )
        user.subscribed = False
        user.subscribed_ms = None

    def _ticket(self, visit: _Visit, ts: float) -> None:
        rng = self.rng
        self.next_ticket += 1
        ticket_id = f"T-{100000 + self.next_ticket}"
        contact = visit.user.contact
        opened = ts + rng.uniform(5_000, 90_000)
        self._push(
            opened,
            "support_ticket_opened",
            visit,
            {"ticket_id": ticket_id},
            touchpoint="support",
            channel=contact,
            stage="retention",
            in_session=False,
        )
        if rng.random() < 0.07:
            return  # abandoned, or still open when the run ends
        chat = contact == "chat"
        first_response = rng.lognormvariate(math.log(90_000 if chat else 2.5 * _HOUR_MS), 0.9)
        contacts = rng.choices((1, 2, 3, 4, 5), (70, 18, 8, 3, 1) if chat else (50, 28, 13, 6, 3))[
            0
        ]
        work = rng.lognormvariate(math.log(12 * _MINUTE_MS if chat else 10 * _HOUR_MS), 1.0)
        resolution = round(first_response + work * contacts**0.7)
        props: dict[str, object] = {"ticket_id": ticket_id}
        if rng.random() < 0.92:
            props["first_response_ms"] = round(first_response)
        if rng.random() < 0.95:
            props["resolution_ms"] = resolution
        if rng.random() < 0.9:
            props["contacts"] = contacts
        resolved = opened + resolution
        self._push(
            resolved,
            "support_ticket_resolved",
            visit,
            props,
            touchpoint="support",
            channel=contact,
            stage="retention",
            in_session=False,
        )
        slow = 0.06 if resolution > _DAY_MS else 0.0
        if rng.random() < 0.45:
            answered = resolved + rng.lognormvariate(math.log(8 * _MINUTE_MS), 1.0)
            self._csat(visit, answered, "support", contact, 0.84 - 0.07 * (contacts - 1) - slow)
        if rng.random() < 0.3:
            answered = resolved + rng.lognormvariate(math.log(8 * _MINUTE_MS), 1.0)
            self._ces(visit, answered, "support", contact, 0.68 - 0.1 * (contacts - 1) - slow)

    # -- surveys ---------------------------------------------------------

    def _comment(self, mood: int, chance: float) -> str | None:
        rng = self.rng
        if rng.random() >= chance:
            return None
        return rng.choice((_COMMENTS_BAD, _COMMENTS_MEH, _COMMENTS_GOOD)[mood])

    def _csat(
        self, visit: _Visit, ts: float, touchpoint: str, channel: str, satisfied: float
    ) -> None:
        rng = self.rng
        shift = self._shift("csat", ts, visit.product, channel, touchpoint)
        happy = rng.random() < _clamp01(satisfied + shift)
        scale = rng.choices((5, 7, 10), (60, 25, 15))[0]
        threshold = {5: 4, 7: 6, 10: 8}[scale]
        # Satisfied answers lean to the top of the scale, the others to its middle.
        if happy:
            score = rng.choices(range(threshold, scale + 1), range(2, scale - threshold + 3))[0]
        else:
            score = rng.choices(range(1, threshold), range(1, threshold))[0]
        props: dict[str, object] = {"score": score}
        if scale != 5 or rng.random() < 0.7:  # 5 is the default scale; some leave it out
            props["scale"] = scale
        comment = self._comment(2 if happy else 0, 0.12 if happy else 0.35)
        if comment:
            props["comment"] = comment
        self._push(
            ts,
            "csat",
            visit,
            props,
            touchpoint=touchpoint,
            channel=channel,
            stage="retention",
            in_session=False,
        )

    def _ces(self, visit: _Visit, ts: float, touchpoint: str, channel: str, easy: float) -> None:
        rng = self.rng
        # A rise of the effort score means fewer easy answers.
        shift = self._shift("ces", ts, visit.product, channel, touchpoint)
        is_easy = rng.random() < _clamp01(easy - shift)
        scale = 7 if rng.random() < 0.6 else 5
        # Mapped onto 1-7, "easy" (≤ 3) is 1-3 on scale 7 and 1-2 on scale 5.
        top_easy = 3 if scale == 7 else 2
        if is_easy:
            score = rng.choices(range(1, top_easy + 1), range(top_easy + 1, 1, -1))[0]
        else:
            score = rng.choices(range(top_easy + 1, scale + 1), range(scale - top_easy, 0, -1))[0]
        props: dict[str, object] = {"score": score}
        if scale != 7 or rng.random() < 0.7:  # 7 is the default scale
            props["scale"] = scale
        comment = self._comment(1 if is_easy else 0, 0.1)
        if comment:
            props["comment"] = comment
        self._push(
            ts, "ces", visit, props, touchpoint=touchpoint, channel=channel, in_session=False
        )

    def _nps(self, visit: _Visit, end: float) -> None:
        rng = self.rng
        by_email = rng.random() < 0.4
        channel = "email" if by_email else visit.channel
        delay = rng.lognormvariate(math.log(2 * _HOUR_MS if by_email else 20_000), 0.8)
        ts = end + delay
        promoters, detractors = {
            "web_app": (0.5, 0.17),
            "mobile_app": (0.45, 0.22),
            "api": (0.55, 0.12),
        }[visit.product]
        # Half of the shift of (promoters - detractors) moves each group.
        shift = self._shift("nps", ts, visit.product, channel, "product") / 2
        promoters = _clamp01(promoters + shift)
        detractors = _clamp01(detractors - shift)
        if promoters + detractors > 1:
            promoters, detractors = (
                promoters / (promoters + detractors),
                detractors / (promoters + detractors),
            )
        draw = rng.random()
        if draw < promoters:
            score, mood = (10 if rng.random() < 0.55 else 9), 2
        elif draw < promoters + detractors:
            score, mood = rng.choices(*_NPS_DETRACTOR_SCORES)[0], 0
        else:
            score, mood = (8 if rng.random() < 0.55 else 7), 1
        props: dict[str, object] = {"score": score}
        comment = self._comment(mood, 0.45 if mood == 0 else 0.2)
        if comment:
            props["comment"] = comment
        stage = "advocacy" if mood == 2 else "retention"
        self._push(
            ts,
            "nps",
            visit,
            props,
            touchpoint="product",
            channel=channel,
            stage=stage,
            in_session=False,
        )

    # -- emission --------------------------------------------------------

    def _session_id(self) -> str:
        return f"s_{self.rng.getrandbits(64):016x}"

    def _format_ts(self, ts: int) -> object:
        """Mostly epoch ms as producers' SDKs send it; some RFC 3339 strings."""
        draw = self.rng.random()
        if draw < 0.8:
            return ts
        instant = _EPOCH + timedelta(milliseconds=ts)
        ms = ts % 1000
        if draw < 0.95:
            if draw < 0.9 or ms:
                return instant.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"
            return instant.strftime("%Y-%m-%dT%H:%M:%SZ")
        local = instant.astimezone(_IST)
        # Some clients write microseconds; only whole milliseconds are kept.
        fraction = f".{ms:03d}" if draw < 0.98 else f".{ms:03d}000"
        return local.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "+05:30"

    def _build(self, ts: int, pending: _Pending) -> _Event:
        user = pending.user
        event: _Event = {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "type": pending.type,
            "ts": self._format_ts(ts),
            "user_id": user.user_id,
        }
        if user.account_id is not None:
            event["account_id"] = user.account_id
        if pending.session_id is not None:
            event["session_id"] = pending.session_id
        event["product"] = pending.product
        event["channel"] = pending.channel
        if pending.touchpoint is not None:
            event["touchpoint"] = pending.touchpoint
        if pending.stage is not None:
            event["journey_stage"] = pending.stage
        if pending.properties is not None:
            event["properties"] = pending.properties
        return event

    def _mess_up(self, event: _Event) -> Iterator[_Event]:
        """Yield `event` as a careless producer would send it, sometimes twice."""
        mess = self.mess
        for key in ("product", "channel", "touchpoint"):
            value = event.get(key)
            if not isinstance(value, str):
                continue
            draw = mess.random()
            if draw < 0.05:
                event[key] = mess.choice(_MESSY[value])
            elif draw < 0.052:
                event[key] = _MESSY_LONG
            elif draw < 0.06:
                event[key] = None  # null is the same as absent
            elif draw < 0.065:
                del event[key]
        props = event.get("properties")
        if isinstance(props, dict):
            for key in ("score", "duration_ms"):
                if isinstance(props.get(key), int) and mess.random() < 0.05:
                    props[key] = float(props[key])
            if mess.random() < 0.02:
                props["experiment"] = mess.choice(("control", "variant_b"))
        if mess.random() < 0.02:
            event["sdk"] = {"name": "cx-js", "version": "2.4.1"}
        yield event
        if mess.random() < 0.005:
            yield copy.deepcopy(event)


# --- bad input ---------------------------------------------------------------

_MAX_EVENT_BYTES = 64 * 1024


def rfc3339(ms: int) -> str:
    """Epoch ms as RFC 3339 text in UTC, with milliseconds (what `parse_timestamp` reads back)."""
    instant = _EPOCH + timedelta(milliseconds=ms)
    return instant.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def _valid_event(rng: random.Random, now_ms: int, type_: str | None = None) -> _Event:
    """A small event that is valid at `now_ms`, for one fault to be put into."""
    type_ = type_ or rng.choice(
        ("page_view", "click", "feature_used", "nps", "csat", "task_completed")
    )
    ts = now_ms - rng.randrange(0, _HOUR_MS)
    event: _Event = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "type": type_,
        "ts": ts if rng.random() < 0.5 else rfc3339(ts),
        "user_id": f"u{rng.randrange(1_000_000):06d}",
        "product": rng.choice(PRODUCTS),
        "channel": rng.choice(CHANNELS),
    }
    props: dict[str, object]
    if type_ in ("page_view", "page_leave"):
        event["session_id"] = f"s_{rng.getrandbits(64):016x}"
        props = {"page": rng.choice(("/", "/pricing", "/docs"))}
        if type_ == "page_leave":
            props["duration_ms"] = rng.randrange(100, 120_000)
    elif type_ in ("click", "impression"):
        props = {"element": "hero_cta"}
    elif type_ == "feature_used":
        props = {"feature": rng.choice(FEATURES)}
    elif type_ == "nps":
        props = {"score": rng.randrange(11)}
    elif type_ == "csat":
        props = {"score": rng.randrange(1, 6), "scale": 5}
    elif type_ == "ces":
        props = {"score": rng.randrange(1, 8), "scale": 7}
    elif type_ in ("task_completed", "task_failed"):
        props = {"task": "export_data"}
    elif type_ in ("support_ticket_opened", "support_ticket_resolved"):
        props = {"ticket_id": f"T-{rng.randrange(100000, 999999)}"}
    else:
        props = {}
    event["properties"] = props
    return event


def _props(event: _Event) -> dict[str, object]:
    props = event["properties"]
    assert isinstance(props, dict)
    return props


def _bad_malformed(rng: random.Random, now_ms: int) -> str:
    event = _valid_event(rng, now_ms, rng.choice(("nps", "page_leave", "csat")))
    text = json.dumps(event)
    variant = rng.randrange(6)
    if variant == 0:  # cut off mid-object
        return text[: rng.randrange(1, len(text) - 1)]
    if variant == 1:  # NaN and Infinity are not JSON
        key = "duration_ms" if event["type"] == "page_leave" else "score"
        _props(event)[key] = rng.choice((math.nan, math.inf, -math.inf))
        return json.dumps(event)
    if variant == 2:
        return text[:-1] + ", }"
    if variant == 3:
        return repr(event)  # a Python dict, single quotes
    if variant == 4:
        return text.replace('"event_id"', "event_id", 1)
    return rng.choice(("not json", "<html><body>502 Bad Gateway</body></html>", "{", "ok"))


def _bad_not_object(rng: random.Random, now_ms: int) -> str:
    return rng.choice(("42", '"page_view"', "null", "true", "3.5", "[42]", '[["e1"]]'))


def _bad_too_large(rng: random.Random, now_ms: int) -> str:
    event = _valid_event(rng, now_ms)
    event["padding"] = "x" * (_MAX_EVENT_BYTES + rng.randrange(1, 4096))
    return json.dumps(event)


def _bad_missing(rng: random.Random, now_ms: int) -> str:
    variant = rng.randrange(4)
    if variant == 0:
        event = _valid_event(rng, now_ms)
        key = rng.choice(("event_id", "type", "ts", "user_id"))
        if rng.random() < 0.5:
            del event[key]
        else:
            event[key] = None
    elif variant == 1:
        event = _valid_event(rng, now_ms, rng.choice(("page_view", "page_leave")))
        del event["session_id"]
    else:
        type_, key = rng.choice(
            (
                ("page_view", "page"),
                ("page_leave", "duration_ms"),
                ("click", "element"),
                ("feature_used", "feature"),
                ("nps", "score"),
                ("csat", "score"),
                ("task_completed", "task"),
                ("support_ticket_resolved", "ticket_id"),
            )
        )
        event = _valid_event(rng, now_ms, type_)
        del _props(event)[key]
    return json.dumps(event)


def _bad_type(rng: random.Random, now_ms: int) -> str:
    variant = rng.randrange(4)
    if variant == 0:
        event = _valid_event(rng, now_ms)
        key, value = rng.choice(
            (
                ("event_id", 12345),
                ("type", 3),
                ("ts", float(now_ms - 60_000) + 0.5),
                ("ts", True),
                ("ts", [now_ms]),
                ("user_id", 42),
                ("account_id", {"id": "acme"}),
                ("product", ["web_app"]),
                ("journey_stage", 2),
                ("properties", "page=/pricing"),
            )
        )
        event[key] = value
    elif variant == 1:
        event = _valid_event(rng, now_ms, "page_view")
        event["session_id"] = rng.choice((17, ["s1"]))
    else:
        type_, key, value = rng.choice(
            (
                ("nps", "score", "9"),
                ("nps", "score", 7.5),
                ("nps", "score", True),
                ("csat", "score", 4.2),
                ("page_leave", "duration_ms", "1200"),
                ("page_view", "page", 404),
                ("task_completed", "steps", 2.5),
            )
        )
        event = _valid_event(rng, now_ms, type_)
        _props(event)[key] = value
    return json.dumps(event)


def _bad_unknown_type(rng: random.Random, now_ms: int) -> str:
    event = _valid_event(rng, now_ms, "feature_used")
    event["type"] = rng.choice(("purchase", "pageview", "nps_response", "click_event", "survey"))
    return json.dumps(event)


def _bad_out_of_range(rng: random.Random, now_ms: int) -> str:
    variant = rng.randrange(3)
    if variant == 0:
        event = _valid_event(rng, now_ms)
        key, value = rng.choice(
            (
                ("event_id", ""),
                ("event_id", "e" * 129),
                ("user_id", ""),
                ("user_id", "u" * 257),
                ("account_id", ""),
                ("journey_stage", "loyalty"),
            )
        )
        event[key] = value
        return json.dumps(event)
    if variant == 1:
        event = _valid_event(rng, now_ms, "page_view")
        event["session_id"] = rng.choice(("", "s" * 257))
        return json.dumps(event)
    type_, changes = rng.choice(
        (
            ("nps", {"score": 11}),
            ("nps", {"score": -1}),
            ("csat", {"score": 0, "scale": 5}),
            ("csat", {"score": 6, "scale": 5}),
            ("csat", {"score": 1, "scale": 4}),
            ("ces", {"score": 8, "scale": 7}),
            ("ces", {"score": 1, "scale": 10}),
            ("nps", {"score": 3, "comment": "x" * 5001}),
            ("page_view", {"page": ""}),
            ("page_view", {"page": "/" + "p" * 256}),
            ("page_leave", {"duration_ms": -5}),
            ("page_leave", {"scroll_pct": 130}),
            ("task_completed", {"steps": 0}),
            ("support_ticket_resolved", {"contacts": 0}),
            ("support_ticket_resolved", {"first_response_ms": -1}),
        )
    )
    event = _valid_event(rng, now_ms, type_)
    _props(event).update(changes)
    return json.dumps(event)


def _bad_timestamp(rng: random.Random, now_ms: int) -> str:
    event = _valid_event(rng, now_ms)
    past = _EPOCH + timedelta(milliseconds=now_ms - rng.randrange(_MINUTE_MS, _DAY_MS))
    day = past.strftime("%Y-%m-%d")
    event["ts"] = rng.choice(
        (
            past.strftime("%Y-%m-%dT%H:%M:%S"),  # no offset
            day,
            past.strftime("%d/%m/%Y %H:%M"),
            f"{day}T23:59:60Z",  # a leap second
            f"{day}T24:00:00Z",
            f"{past.year}-02-30T10:00:00Z",
            past.strftime("%Y-%m-%dT%H:%M:%S+0530"),
            str(now_ms - 60_000),
            "yesterday",
        )
    )
    return json.dumps(event)


def _bad_future(rng: random.Random, now_ms: int) -> str:
    event = _valid_event(rng, now_ms)
    ahead = now_ms + rng.choice((301_000, 10 * _MINUTE_MS, _HOUR_MS, _DAY_MS, 365 * _DAY_MS))
    event["ts"] = ahead if rng.random() < 0.5 else rfc3339(ahead)
    return json.dumps(event)


_BAD_LINE_MAKERS: dict[str, Callable[[random.Random, int], str]] = {
    "malformed_json": _bad_malformed,
    "not_an_object": _bad_not_object,
    "too_large": _bad_too_large,
    "missing_field": _bad_missing,
    "bad_type": _bad_type,
    "unknown_type": _bad_unknown_type,
    "out_of_range": _bad_out_of_range,
    "bad_timestamp": _bad_timestamp,
    "future_timestamp": _bad_future,
}


def generate_bad_lines(seed: int, count: int, *, now_ms: int) -> list[tuple[str, str]]:
    """Return `count` (reason, line) pairs: raw JSON-lines text rejected for `reason`.

    Reasons cycle through `REJECT_REASONS` in order, so any `count` ≥ 9 covers
    each. Every line holds exactly one fault, put into an otherwise valid event
    (with `ts` within the hour before `now_ms`), so that the SPEC's validation
    order gives exactly that reason whatever the validator checks first; a line
    is one event, or a one-element batch for some `not_an_object` lines
    (`[42]`). `future_timestamp` lines are more than 5 minutes after `now_ms`;
    `too_large` lines are just over 64 KiB.
    """
    if count < 0:
        raise ValueError(f"count: expected an int >= 0, got {count}")
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        reason = REJECT_REASONS[i % len(REJECT_REASONS)]
        lines.append((reason, _BAD_LINE_MAKERS[reason](rng, now_ms)))
    return lines
