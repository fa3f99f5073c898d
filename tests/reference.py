"""A deliberately plain second implementation of SPEC sections 1, 2 and 5 for `replay`.

Tests compare the real engine against `reference_replay`. Everything here is
written for clarity, not speed: lines are split into events, every event is
validated on its own, and each window and scope is recomputed from scratch by
filtering one flat list of accepted events. Nothing here is shared with the
`cxstream` package on purpose.

Where SPEC leaves room, this module makes the following choices (each is also
noted where it is applied):

 1. Sizes. A line is measured as its UTF-8 bytes without its line terminator.
    A line over 1 MiB is `too_large` before parsing. A line over 64 KiB whose
    first non-whitespace character is not `[` cannot be a batch, so it is a
    single-event message over 64 KiB: `too_large` before parsing too. A batch
    element is measured as `json.dumps(element, separators=(",", ":"),
    ensure_ascii=False)` encoded as UTF-8; the size check comes first, so an
    oversized element that is not an object is `too_large`, not
    `not_an_object`. "Over" means strictly more than 65,536 / 1,048,576 bytes.
 2. JSON. `NaN`, `Infinity` and `-Infinity` make the text `malformed_json`; so
    does a line that is not valid UTF-8 (a `str` holding lone surrogates), and
    so does nesting deeper than Python's parser can follow (about 1,000 levels).
 3. Integers. A JSON number with an integral value (`7.0`) is an integer, a
    fractional one (`7.5`) is `bad_type`, a boolean is never a number. This
    applies to the envelope's integer `ts` as well as to properties.
 4. `type` has no length bounds in SPEC: an empty `type` is `unknown_type`.
    The dimensions (`product`, `channel`, `touchpoint`) have no length bounds
    either: an empty one is accepted and normalizes to `unknown`.
 5. `journey_stage` must be exactly one of the five values (case-sensitive).
 6. `session_id` is checked at stage 6 for every type: required on
    `page_view`/`page_leave`, optional elsewhere, but when present (not null)
    on any type it must be a string of 1–256 characters.
 7. `ticket_id`, `task`, `referrer`, `reason`, `page`, `element`, `feature` are
    strings of 1–256 characters; `comment` is a string of 1–5,000 characters.
    Lengths are counted in Unicode code points.
 8. `csat`/`ces`: `score` is checked for presence and integer type first, then
    `scale` (integer type, then one of the allowed values), then `score` is
    range-checked against the (possibly defaulted) scale, then `comment`.
 9. Timestamps. RFC 3339 `date-time` per its ABNF: `T`/`Z` may be lower case,
    a space instead of `T` is not accepted, offset hours 00–23, `-00:00` is
    UTC, second 60 (a leap second) is `bad_timestamp`, year 0000 is allowed.
    Only ASCII digits count. Integer `ts` has no range check besides the
    future check.
10. Default `now`: the largest `ts` among events that pass every check except
    the future check, duplicates included (they are valid events; which copy
    is a duplicate does not depend on `now` then). With no valid event at all
    and no explicit `now`, the wall clock is used.
11. Duplicates are decided after the future check (a `future_timestamp` copy is
    rejected and not seen). An accepted event with `now < ts ≤ now + 5 min` is
    seen for duplicates and takes its place in the value caps, but counts in no
    metric and makes no scope visible.
12. Value caps. Dimension values: normalized first, then capped per dimension,
    first come first served in file order over accepted non-duplicate events
    (any `ts`). `page`, `element` and `feature` names are kept as given (NOT
    normalized; SPEC only says the cap applies) and capped the same way, one
    cap per kind; the `page` cap is fed by `page_view` events only, since only
    their pages appear in top lists (`page_leave` pages are not used by any
    output). A name equal to `unknown` or `other` takes no slot. The element
    cap exists for completeness but no replay output shows element names.
13. Dimension lower-casing is Python's `str.lower()` (Unicode-aware), then
    replacement of every character outside `[a-z0-9_.-]`, then the cut to 64.
14. Scopes. `all` is always present, even for an empty input. Another scope is
    present when an accepted non-duplicate event with `ts ≤ now` falls in the
    `30d` window, or when it has a subscription event with `ts ≤ now` at any
    time. Sessions count in the scopes of their first view only.
15. Sessions. Page views of a (user_id, session_id) pair with `ts ≤ now` are
    ordered by (`ts`, file order); a gap of more than 24 h (strictly more than
    86,400,000 ms) starts a new session. Ties on `ts`: the first view is the
    earliest in file order, the exit page the latest in file order.
16. Activation looks at every accepted non-duplicate `feature_used` of the same
    user with `ts ≤ now`, in any scope and any window.
17. `active_subscribers` uses all subscription events with `ts ≤ now` of the
    scope, however old.
18. Wilson bounds are clamped to [0, 1] against rounding; the NPS variance term
    is floored at 0 for the same reason.
19. Output. `rejected` lists only reasons with a nonzero count. `features` and
    `top` hold every scope of every window, with `{}` / empty lists when there
    is nothing to show. Count fields are ints, every other field is a float.
    Top lists are `[name, count]` pairs, count descending, then name ascending.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import itertools
import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COUNT_FIELDS",
    "REASONS",
    "WINDOWS",
    "normalize_dimension",
    "parse_rfc3339_ms",
    "reference_replay",
]

# --------------------------------------------------------------------------- constants

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

MAX_MESSAGE_BYTES = 1024 * 1024  # 1 MiB
MAX_EVENT_BYTES = 64 * 1024  # 64 KiB
FUTURE_TOLERANCE_MS = 5 * MINUTE_MS
SESSION_GAP_MS = 24 * HOUR_MS
ACTIVATION_MS = 7 * DAY_MS

# (name, length W, granularity g)
WINDOWS: list[tuple[str, int, int]] = [
    ("5m", 5 * MINUTE_MS, MINUTE_MS),
    ("1h", HOUR_MS, MINUTE_MS),
    ("24h", DAY_MS, MINUTE_MS),
    ("7d", 7 * DAY_MS, HOUR_MS),
    ("30d", 30 * DAY_MS, HOUR_MS),
]

REASONS = (
    "malformed_json",
    "not_an_object",
    "too_large",
    "missing_field",
    "bad_type",
    "unknown_type",
    "out_of_range",
    "bad_timestamp",
    "future_timestamp",
)

COUNT_FIELDS = (
    "events",
    "active_users",
    "nps_n",
    "nps_promoters",
    "nps_passives",
    "nps_detractors",
    "csat_n",
    "ces_n",
    "pageviews",
    "sessions",
    "impressions",
    "clicks",
    "signups",
    "subs_started",
    "subs_cancelled",
    "active_subscribers",
    "tickets_opened",
    "tickets_resolved",
    "tasks_completed",
    "tasks_failed",
)

DEFAULT_CSAT_THRESHOLDS = {5: 4, 7: 6, 10: 8}

JOURNEY_STAGES = ("awareness", "consideration", "decision", "retention", "advocacy")

DIMENSIONS = ("product", "channel", "touchpoint")

ALLOWED_DIMENSION_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_.-")

SUBSCRIPTION_TYPES = ("subscription_started", "subscription_cancelled")

# Property rules per type, in SPEC table order: (name, kind, required, bounds).
#   "str":   string, bounds = (min_len, max_len)
#   "int":   integer, bounds = (min, max), None = unbounded
#   "num":   number, bounds = (min, max), None = unbounded
#   "score": csat/ces score; range checked after "scale" (interpretation 8)
#   "scale": one of the allowed scales, bounds = (allowed values, default)
STRING = (1, 256)
COMMENT = (1, 5000)
PROPERTY_RULES: dict[str, list[tuple[str, str, bool, Any]]] = {
    "page_view": [("page", "str", True, STRING), ("referrer", "str", False, STRING)],
    "page_leave": [
        ("page", "str", True, STRING),
        ("duration_ms", "int", True, (0, None)),
        ("scroll_pct", "num", False, (0, 100)),
    ],
    "impression": [("element", "str", True, STRING)],
    "click": [("element", "str", True, STRING)],
    "feature_used": [("feature", "str", True, STRING)],
    "signup": [],
    "subscription_started": [("mrr", "num", False, (0, None))],
    "subscription_cancelled": [("reason", "str", False, STRING)],
    "support_ticket_opened": [("ticket_id", "str", True, STRING)],
    "support_ticket_resolved": [
        ("ticket_id", "str", True, STRING),
        ("first_response_ms", "int", False, (0, None)),
        ("resolution_ms", "int", False, (0, None)),
        ("contacts", "int", False, (1, None)),
    ],
    "task_completed": [
        ("task", "str", True, STRING),
        ("steps", "int", False, (1, None)),
        ("duration_ms", "int", False, (0, None)),
    ],
    "task_failed": [("task", "str", True, STRING)],
    "nps": [("score", "int", True, (0, 10)), ("comment", "str", False, COMMENT)],
    "csat": [
        ("score", "score", True, None),
        ("scale", "scale", False, ((5, 7, 10), 5)),
        ("comment", "str", False, COMMENT),
    ],
    "ces": [
        ("score", "score", True, None),
        ("scale", "scale", False, ((5, 7), 7)),
        ("comment", "str", False, COMMENT),
    ],
}
EVENT_TYPES = tuple(PROPERTY_RULES)
SESSION_TYPES = ("page_view", "page_leave")


# --------------------------------------------------------------------------- validation


class Reject(Exception):
    """One rejected event, with its SPEC section 5 reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Candidate:
    """An event that passed stages 1-7 except the future check (not yet capped)."""

    event_id: str
    type: str
    ts: int
    user_id: str
    session_id: str | None
    dims: dict[str, str]  # normalized, not yet capped
    props: dict[str, Any]  # validated properties (ints as int, defaults filled)


@dataclass
class Event:
    """An accepted, non-duplicate event, with capped dimension values and names."""

    order: int
    type: str
    ts: int
    user_id: str
    session_id: str | None
    product: str
    channel: str
    touchpoint: str
    props: dict[str, Any]
    scopes: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.scopes = (
            "all",
            f"product={self.product}",
            f"channel={self.channel}",
            f"touchpoint={self.touchpoint}",
        )


def _is_json_whitespace_only(text: str) -> bool:
    return text.strip() == ""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _compact_json_size(value: Any) -> int:
    """Interpretation 1: a batch element's size is its compact re-serialization."""
    return _utf8_size(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def split_line(line: str) -> list[dict[str, Any] | Reject]:
    """Stages 1-3 for one line: the events it holds, or the rejects it makes."""
    text = line.rstrip("\r\n")
    size = _utf8_size(text)
    if size > MAX_MESSAGE_BYTES:
        return [Reject("too_large", f"message of {size} bytes")]
    if size > MAX_EVENT_BYTES and not text.lstrip(" \t\r\n").startswith("["):
        # Not a batch, so a single-event message over 64 KiB (interpretation 1).
        return [Reject("too_large", f"event of {size} bytes")]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return [Reject("malformed_json", "not UTF-8")]
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return [Reject("malformed_json", str(exc))]
    except RecursionError:  # nesting deeper than a JSON parser's limit
        return [Reject("malformed_json", "nested too deeply")]
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        return [Reject("not_an_object", f"message is {type(value).__name__}")]
    out: list[dict[str, Any] | Reject] = []
    for index, element in enumerate(value):
        element_size = _compact_json_size(element)
        if element_size > MAX_EVENT_BYTES:
            out.append(Reject("too_large", f"element {index} of {element_size} bytes"))
        elif not isinstance(element, dict):
            out.append(Reject("not_an_object", f"element {index}"))
        else:
            out.append(element)
    return out


def _as_int(value: Any) -> int | None:
    """The integer value of a JSON number, or None if it is not an integer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_string(
    obj: dict[str, Any], name: str, required: bool, bounds: tuple[int, int] | None
) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise Reject("missing_field", name)
        return None
    if not isinstance(value, str):
        raise Reject("bad_type", f"{name} must be a string")
    if bounds is not None and not (bounds[0] <= len(value) <= bounds[1]):
        raise Reject("out_of_range", f"{name} length {len(value)}")
    return value


def _check_int(
    obj: dict[str, Any], name: str, required: bool, bounds: tuple[int | None, int | None]
) -> int | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise Reject("missing_field", name)
        return None
    as_int = _as_int(value)
    if as_int is None:
        raise Reject("bad_type", f"{name} must be an integer")
    low, high = bounds
    if (low is not None and as_int < low) or (high is not None and as_int > high):
        raise Reject("out_of_range", f"{name} = {as_int}")
    return as_int


def _check_number(
    obj: dict[str, Any], name: str, required: bool, bounds: tuple[float | None, float | None]
) -> float | int | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise Reject("missing_field", name)
        return None
    if not _is_number(value):
        raise Reject("bad_type", f"{name} must be a number")
    low, high = bounds
    if (low is not None and value < low) or (high is not None and value > high):
        raise Reject("out_of_range", f"{name} = {value}")
    return value  # type: ignore[no-any-return]


def _check_properties(event_type: str, props: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    score: int | None = None
    for name, kind, required, bounds in PROPERTY_RULES[event_type]:
        if kind == "str":
            out[name] = _check_string(props, name, required, bounds)
        elif kind == "int":
            out[name] = _check_int(props, name, required, bounds)
        elif kind == "num":
            out[name] = _check_number(props, name, required, bounds)
        elif kind == "score":
            # Presence and type now, range once the scale is known (interpretation 8).
            score = _check_int(props, name, required, (None, None))
            out[name] = score
        elif kind == "scale":
            allowed, default = bounds
            scale = _check_int(props, name, False, (None, None))
            if scale is None:
                scale = default
            if scale not in allowed:
                raise Reject("out_of_range", f"scale = {scale}")
            out[name] = scale
            assert score is not None
            if not (1 <= score <= scale):
                raise Reject("out_of_range", f"score {score} on scale {scale}")
        else:  # pragma: no cover - table typo
            raise AssertionError(kind)
    return out


_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_DAYS_PER_400_YEARS = 146097


def _days_since_epoch(year: int, month: int, day: int) -> int:
    if year == 0:
        # Proleptic Gregorian year 0 behaves like year 400, 400 years earlier.
        return _dt.date(400, month, day).toordinal() - _DAYS_PER_400_YEARS - _EPOCH_ORDINAL
    return _dt.date(year, month, day).toordinal() - _EPOCH_ORDINAL


def parse_rfc3339_ms(text: str) -> int | None:
    """Epoch ms of an RFC 3339 date-time with offset, fraction truncated; None if invalid."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = match.group(7) or ""
    if not 1 <= month <= 12:
        return None
    days_in_month = calendar.monthrange(year if year != 0 else 400, month)[1]
    if not 1 <= day <= days_in_month:
        return None
    if hour > 23 or minute > 59 or second > 59:  # second 60 = leap second: rejected
        return None
    if match.group(8) is not None:
        offset_ms = 0
    else:
        offset_hours, offset_minutes = int(match.group(10)), int(match.group(11))
        if offset_hours > 23 or offset_minutes > 59:
            return None
        sign = 1 if match.group(9) == "+" else -1
        offset_ms = sign * (offset_hours * HOUR_MS + offset_minutes * MINUTE_MS)
    millis = int((fraction[:3]).ljust(3, "0"))  # truncated, not rounded
    local_ms = (
        _days_since_epoch(year, month, day) * DAY_MS
        + hour * HOUR_MS
        + minute * MINUTE_MS
        + second * SECOND_MS
        + millis
    )
    return local_ms - offset_ms


def normalize_dimension(value: str | None) -> str:
    """SPEC section 1: lower-case, foreign chars to `_`, cut to 64, '' → unknown, all → _all."""
    if value is None:
        return "unknown"
    lowered = value.lower()
    replaced = "".join(c if c in ALLOWED_DIMENSION_CHARS else "_" for c in lowered)
    cut = replaced[:64]
    if cut == "":
        return "unknown"
    if cut == "all":
        return "_all"
    return cut


def validate(obj: dict[str, Any]) -> Candidate:
    """Stages 4-7 (without the future check) for one event object."""
    # (4) envelope fields in table order, session_id excepted.
    event_id = _check_string(obj, "event_id", True, (1, 128))
    event_type = _check_string(obj, "type", True, None)  # no bounds (interpretation 4)
    raw_ts = obj.get("ts")
    if raw_ts is None:
        raise Reject("missing_field", "ts")
    if isinstance(raw_ts, str):
        ts_int: int | None = None
    else:
        ts_int = _as_int(raw_ts)
        if ts_int is None:
            raise Reject("bad_type", "ts must be a string or an integer")
    user_id = _check_string(obj, "user_id", True, (1, 256))
    _check_string(obj, "account_id", False, (1, 256))
    dims_raw = {name: _check_string(obj, name, False, None) for name in DIMENSIONS}
    stage = obj.get("journey_stage")
    if stage is not None:
        if not isinstance(stage, str):
            raise Reject("bad_type", "journey_stage must be a string")
        if stage not in JOURNEY_STAGES:
            raise Reject("out_of_range", f"journey_stage = {stage!r}")
    props = obj.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise Reject("bad_type", "properties must be an object")
    assert event_id is not None and event_type is not None and user_id is not None
    # (5) type.
    if event_type not in EVENT_TYPES:
        raise Reject("unknown_type", event_type)
    # (6) session_id (interpretation 6), then the properties in table order.
    session_id = _check_string(obj, "session_id", event_type in SESSION_TYPES, (1, 256))
    checked_props = _check_properties(event_type, props)
    # (7) ts format; the future check comes later, once `now` is known.
    if ts_int is None:
        ts_int = parse_rfc3339_ms(raw_ts)
        if ts_int is None:
            raise Reject("bad_timestamp", repr(raw_ts))
    return Candidate(
        event_id=event_id,
        type=event_type,
        ts=ts_int,
        user_id=user_id,
        session_id=session_id,
        dims={name: normalize_dimension(value) for name, value in dims_raw.items()},
        props=checked_props,
    )


class ValueCap:
    """At most `limit` distinct values, first come first served; the rest are `other`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.known: set[str] = set()

    def admit(self, value: str) -> str:
        if value in ("unknown", "other") or value in self.known:
            return value
        if len(self.known) < self.limit:
            self.known.add(value)
            return value
        return "other"


# --------------------------------------------------------------------------- metrics


@dataclass
class Session:
    first_ts: int
    scopes: tuple[str, ...]
    views: int
    exit_page: str


def build_sessions(events: list[Event]) -> list[Session]:
    """Sessions from the page views (ts ≤ now already) of the accepted events."""
    by_key: dict[tuple[str, str | None], list[Event]] = {}
    for event in events:
        if event.type == "page_view":
            by_key.setdefault((event.user_id, event.session_id), []).append(event)
    sessions: list[Session] = []
    for views in by_key.values():
        views = sorted(views, key=lambda e: (e.ts, e.order))
        groups: list[list[Event]] = [[views[0]]]
        for previous, view in itertools.pairwise(views):
            if view.ts - previous.ts > SESSION_GAP_MS:
                groups.append([view])
            else:
                groups[-1].append(view)
        for group in groups:
            sessions.append(
                Session(
                    first_ts=group[0].ts,
                    scopes=group[0].scopes,
                    views=len(group),
                    exit_page=group[-1].props["page"],
                )
            )
    return sessions


def _mean(values: list[float]) -> float | None:
    if not values:
        return None
    return sum(values) / len(values)


def _share(part: int, whole: int) -> float | None:
    if whole == 0:
        return None
    return part / whole


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = (z / denominator) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def _top(counter: Counter[str], top_n: int) -> list[list[Any]]:
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    return [[name, count] for name, count in ranked[:top_n]]


def compute_fields(
    *,
    window_events: list[Event],
    window_sessions: list[Session],
    all_events_of_scope: list[Event],
    all_events: list[Event],
    csat_thresholds: dict[int, int],
) -> dict[str, int | float]:
    """Every SPEC section 2 field (stickiness aside) for one window and scope.

    `window_events`: accepted events of the scope in the window; `window_sessions`:
    sessions of the scope whose first view is in the window; `all_events_of_scope`:
    accepted events of the scope with ts ≤ now, however old; `all_events`: every
    accepted event with ts ≤ now, any scope.
    """
    f: dict[str, int | float | None] = {}

    def of_type(event_type: str) -> list[Event]:
        return [e for e in window_events if e.type == event_type]

    f["events"] = len(window_events)
    active_users = len({e.user_id for e in window_events})
    f["active_users"] = active_users

    # NPS
    nps = of_type("nps")
    n = len(nps)
    promoters = sum(1 for e in nps if e.props["score"] >= 9)
    passives = sum(1 for e in nps if 7 <= e.props["score"] <= 8)
    detractors = sum(1 for e in nps if e.props["score"] <= 6)
    f["nps_n"], f["nps_promoters"] = n, promoters
    f["nps_passives"], f["nps_detractors"] = passives, detractors
    if n > 0:
        f["nps"] = 100 * (promoters - detractors) / n
    if n >= 2:
        p_p, p_d = promoters / n, detractors / n
        variance = max(0.0, p_p + p_d - (p_p - p_d) ** 2)
        f["nps_ci95"] = 196 * math.sqrt(variance / n)

    # CSAT
    csat = of_type("csat")
    satisfied = sum(1 for e in csat if e.props["score"] >= csat_thresholds[e.props["scale"]])
    f["csat_n"] = len(csat)
    f["csat"] = _share(satisfied, len(csat))
    if csat:
        f["csat_ci95_low"], f["csat_ci95_high"] = wilson_interval(satisfied, len(csat))

    # CES, mapped onto 1-7
    ces = of_type("ces")
    mapped = [1 + (e.props["score"] - 1) * 6 / (e.props["scale"] - 1) for e in ces]
    # mapped ≤ 3  ⇔  (score − 1) × 6 ≤ 2 × (scale − 1), compared in integers.
    easy = sum(1 for e in ces if (e.props["score"] - 1) * 6 <= 2 * (e.props["scale"] - 1))
    f["ces_n"] = len(ces)
    f["ces"] = _mean(mapped)
    f["ces_easy"] = _share(easy, len(ces))

    # Pages and sessions
    f["pageviews"] = len(of_type("page_view"))
    f["sessions"] = len(window_sessions)
    f["pages_per_session"] = _share(sum(s.views for s in window_sessions), len(window_sessions))
    f["bounce_rate"] = _share(sum(1 for s in window_sessions if s.views == 1), len(window_sessions))
    leaves = of_type("page_leave")
    f["avg_time_on_page_s"] = _mean([e.props["duration_ms"] / 1000 for e in leaves])
    f["scroll_depth"] = _mean(
        [e.props["scroll_pct"] / 100 for e in leaves if e.props["scroll_pct"] is not None]
    )

    # CTR
    impressions, clicks = len(of_type("impression")), len(of_type("click"))
    f["impressions"], f["clicks"] = impressions, clicks
    f["ctr"] = _share(clicks, impressions)

    # Signups and activation
    signups = of_type("signup")
    f["signups"] = len(signups)
    times_to_value: list[float] = []
    for signup in signups:
        uses = [
            e.ts
            for e in all_events  # any scope, any window (interpretation 16)
            if e.type == "feature_used"
            and e.user_id == signup.user_id
            and signup.ts <= e.ts <= signup.ts + ACTIVATION_MS
        ]
        if uses:
            times_to_value.append((min(uses) - signup.ts) / 1000)
    f["activation_rate"] = _share(len(times_to_value), len(signups))
    f["time_to_value_s"] = _mean(times_to_value)

    # Subscriptions
    started, cancelled = (
        len(of_type("subscription_started")),
        len(of_type("subscription_cancelled")),
    )
    active_subscribers = sum(
        1 for e in all_events_of_scope if e.type == "subscription_started"
    ) - sum(1 for e in all_events_of_scope if e.type == "subscription_cancelled")
    f["subs_started"], f["subs_cancelled"] = started, cancelled
    f["active_subscribers"] = active_subscribers
    at_start = active_subscribers - started + cancelled
    if at_start > 0:
        churn = cancelled / at_start
        f["churn_rate"] = churn
        f["retention_rate"] = 1 - churn

    # Support
    opened, resolved = of_type("support_ticket_opened"), of_type("support_ticket_resolved")
    f["tickets_opened"], f["tickets_resolved"] = len(opened), len(resolved)
    f["tickets_per_user"] = _share(len(opened), active_users)
    f["avg_first_response_s"] = _mean(
        [
            e.props["first_response_ms"] / 1000
            for e in resolved
            if e.props["first_response_ms"] is not None
        ]
    )
    f["avg_resolution_s"] = _mean(
        [e.props["resolution_ms"] / 1000 for e in resolved if e.props["resolution_ms"] is not None]
    )
    contacts = [e.props["contacts"] for e in resolved if e.props["contacts"] is not None]
    f["contacts_per_resolution"] = _mean(contacts)
    f["one_contact_resolution_rate"] = _share(sum(1 for c in contacts if c == 1), len(contacts))

    # Tasks
    completed, failed = of_type("task_completed"), of_type("task_failed")
    f["tasks_completed"], f["tasks_failed"] = len(completed), len(failed)
    f["task_success_rate"] = _share(len(completed), len(completed) + len(failed))
    f["avg_task_steps"] = _mean(
        [e.props["steps"] for e in completed if e.props["steps"] is not None]
    )

    out: dict[str, int | float] = {}
    for name, value in f.items():
        if value is None:
            continue  # zero denominator: absent
        out[name] = int(value) if name in COUNT_FIELDS else float(value)
    return out


def window_start(now: int, length: int, granularity: int) -> int:
    """The first ms of a window: floor(now, g) − W + g."""
    return (now // granularity) * granularity - length + granularity


def in_window(ts: int, now: int, length: int, granularity: int) -> bool:
    return window_start(now, length, granularity) <= ts <= now


# --------------------------------------------------------------------------- replay


def reference_replay(
    lines: list[str],
    now_ms: int | None = None,
    *,
    max_dimension_values: int = 50,
    top_n: int = 20,
    csat_thresholds: dict[int, int] | None = None,
) -> dict[str, Any]:
    """What `cxstream replay` prints for these JSON lines (SPEC section 7), plus `top`."""
    thresholds = dict(DEFAULT_CSAT_THRESHOLDS)
    if csat_thresholds is not None:
        thresholds.update(csat_thresholds)

    # Stages 1-3: split every non-blank line into event objects (or rejects).
    items: list[dict[str, Any] | Reject] = []
    for line in lines:
        if _is_json_whitespace_only(line):
            continue
        items.extend(split_line(line))

    # Stages 4-7, the future check aside.
    checked: list[Candidate | Reject] = []
    for item in items:
        if isinstance(item, Reject):
            checked.append(item)
            continue
        try:
            checked.append(validate(item))
        except Reject as reject:
            checked.append(reject)

    # `now`: given, or the largest ts of the otherwise valid events (interpretation 10).
    if now_ms is None:
        valid_ts = [c.ts for c in checked if isinstance(c, Candidate)]
        now = max(valid_ts) if valid_ts else int(time.time() * 1000)
    else:
        now = now_ms

    # Future check, duplicates and value caps, in file order.
    rejected: Counter[str] = Counter()
    duplicates = 0
    seen: set[tuple[str, str]] = set()
    dimension_caps = {name: ValueCap(max_dimension_values) for name in DIMENSIONS}
    name_caps = {name: ValueCap(max_dimension_values) for name in ("page", "element", "feature")}
    accepted: list[Event] = []
    for order, c in enumerate(checked):
        if isinstance(c, Reject):
            rejected[c.reason] += 1
            continue
        if c.ts > now + FUTURE_TOLERANCE_MS:
            rejected["future_timestamp"] += 1
            continue
        identity = (c.user_id, c.event_id)
        if identity in seen:
            duplicates += 1
            continue
        seen.add(identity)
        dims = {name: dimension_caps[name].admit(c.dims[name]) for name in DIMENSIONS}
        props = dict(c.props)
        if c.type == "page_view":  # interpretation 12: only page views feed the page cap
            props["page"] = name_caps["page"].admit(props["page"])
        elif c.type in ("impression", "click"):
            props["element"] = name_caps["element"].admit(props["element"])
        elif c.type == "feature_used":
            props["feature"] = name_caps["feature"].admit(props["feature"])
        accepted.append(
            Event(
                order=order,
                type=c.type,
                ts=c.ts,
                user_id=c.user_id,
                session_id=c.session_id,
                product=dims["product"],
                channel=dims["channel"],
                touchpoint=dims["touchpoint"],
                props=props,
            )
        )

    # Only events with ts ≤ now count anywhere below.
    current = [e for e in accepted if e.ts <= now]
    sessions = build_sessions(current)

    # Scopes (interpretation 14).
    scopes = {"all"}
    _, length_30d, granularity_30d = WINDOWS[-1]
    for e in current:
        if in_window(e.ts, now, length_30d, granularity_30d) or e.type in SUBSCRIPTION_TYPES:
            scopes.update(e.scopes)
    ordered_scopes = ["all", *sorted(scopes - {"all"})]

    windows: dict[str, dict[str, dict[str, int | float]]] = {}
    features: dict[str, dict[str, dict[str, float]]] = {}
    top: dict[str, dict[str, dict[str, list[list[Any]]]]] = {}
    for window_name, length, granularity in WINDOWS:
        windows[window_name], features[window_name], top[window_name] = {}, {}, {}
        for scope in ordered_scopes:
            scope_events = [e for e in current if scope in e.scopes]
            window_events = [e for e in scope_events if in_window(e.ts, now, length, granularity)]
            window_sessions = [
                s
                for s in sessions
                if scope in s.scopes and in_window(s.first_ts, now, length, granularity)
            ]
            fields = compute_fields(
                window_events=window_events,
                window_sessions=window_sessions,
                all_events_of_scope=scope_events,
                all_events=current,
                csat_thresholds=thresholds,
            )
            if window_name == "24h":
                users_30d = {
                    e.user_id
                    for e in scope_events
                    if in_window(e.ts, now, length_30d, granularity_30d)
                }
                if users_30d:
                    fields["stickiness"] = fields["active_users"] / len(users_30d)
            windows[window_name][scope] = fields

            users_by_feature: dict[str, set[str]] = {}
            for e in window_events:
                if e.type == "feature_used":
                    users_by_feature.setdefault(e.props["feature"], set()).add(e.user_id)
            active_users = fields["active_users"]
            features[window_name][scope] = {
                name: len(users) / active_users for name, users in users_by_feature.items()
            }
            top[window_name][scope] = {
                "pages": _top(
                    Counter(e.props["page"] for e in window_events if e.type == "page_view"),
                    top_n,
                ),
                "exit_pages": _top(Counter(s.exit_page for s in window_sessions), top_n),
                "features": _top(
                    Counter({name: len(users) for name, users in users_by_feature.items()}),
                    top_n,
                ),
            }

    return {
        "now": now,
        "windows": windows,
        "features": features,
        "rejected": dict(rejected),
        "duplicates": duplicates,
        "top": top,
    }
