"""Laws of `decode_message` (SPEC sections 1 and 5) over generated input.

Whatever arrives, decoding never raises, and every event read is exactly one
accepted Event or one Rejection with a SPEC reason: a batch of n elements gives
n results in order, anything else gives one.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxstream.errors import InvalidEvent
from cxstream.events import (
    DIMENSIONS,
    REJECT_REASONS,
    Event,
    Rejection,
    _parse_timestamp_full,
    decode_message,
    normalize_dimension,
    parse_timestamp,
)

NOW = 1_795_766_400_000  # 2026-11-27T08:00:00.000Z
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DIMENSION_RE = re.compile(r"[a-z0-9_.-]{1,64}")

# Local settings, not a loaded profile: other property tests keep their own.
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ENVELOPE_KEYS = [
    "event_id",
    "type",
    "ts",
    "user_id",
    "account_id",
    "session_id",
    "product",
    "channel",
    "touchpoint",
    "journey_stage",
    "properties",
]
PROPERTY_KEYS = [
    "page",
    "referrer",
    "duration_ms",
    "scroll_pct",
    "element",
    "feature",
    "mrr",
    "reason",
    "ticket_id",
    "first_response_ms",
    "resolution_ms",
    "contacts",
    "task",
    "steps",
    "score",
    "scale",
    "comment",
]
TYPES = [
    "page_view",
    "page_leave",
    "impression",
    "click",
    "feature_used",
    "signup",
    "subscription_started",
    "subscription_cancelled",
    "support_ticket_opened",
    "support_ticket_resolved",
    "task_completed",
    "task_failed",
    "nps",
    "csat",
    "ces",
]

# --- arbitrary JSON ---------------------------------------------------------------------------

keys = st.sampled_from(ENVELOPE_KEYS + PROPERTY_KEYS) | st.text(max_size=8)
plain_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(TYPES)
    | st.sampled_from(["2026-11-27T08:00:00Z", "2026-11-27T08:00:00.5+05:30", "2026-02-30"])
    | st.just(NOW)
)
json_values = st.recursive(
    plain_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=8),
    max_leaves=30,
)
# JSON-ish values that are not JSON (NaN, Infinity) or that strain a parser (huge ints)
wild_scalars = (
    plain_scalars
    | st.integers()
    | st.floats()
    | st.text(alphabet=st.characters(exclude_categories=()), max_size=10)
)
wild_values = st.recursive(
    wild_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=6),
    max_leaves=20,
)


def check_results(out: list[Event | Rejection]) -> None:
    for item in out:
        assert isinstance(item, Event | Rejection)
        if isinstance(item, Rejection):
            assert item.reason in REJECT_REASONS
            assert isinstance(item.error, str) and item.error
            assert isinstance(item.raw, str)
        else:
            check_dimensions(item)


def check_dimensions(event: Event) -> None:
    for name in DIMENSIONS:
        value = getattr(event, name)
        assert DIMENSION_RE.fullmatch(value), (name, value)
        assert value != "all"


def encode(value: Any, ensure_ascii: bool) -> bytes:
    text = json.dumps(value, ensure_ascii=ensure_ascii)
    return text.encode("utf-8", "surrogatepass")


@SETTINGS
@given(value=json_values, ensure_ascii=st.booleans(), now_ms=st.none() | st.just(NOW))
def test_any_json_value_is_accounted_for(
    value: Any, ensure_ascii: bool, now_ms: int | None
) -> None:
    out = decode_message(encode(value, ensure_ascii), now_ms)
    check_results(out)
    elements = value if isinstance(value, list) else [value]
    # one result per element (or per message), in order; a batch's rejections carry
    # their own index, a single message's index is None
    assert len(out) == len(elements)
    for index, (element, item) in enumerate(zip(elements, out, strict=True)):
        if isinstance(item, Rejection):
            assert item.index == (index if isinstance(value, list) else None)
            assert item.reason not in ("malformed_json", "too_large")
        assert (isinstance(item, Rejection) and item.reason == "not_an_object") == (
            not isinstance(element, dict)
        )


@SETTINGS
@given(value=wild_values, ensure_ascii=st.booleans(), now_ms=st.none() | st.just(NOW))
def test_json_like_text_never_raises(value: Any, ensure_ascii: bool, now_ms: int | None) -> None:
    check_results(decode_message(encode(value, ensure_ascii), now_ms))


@SETTINGS
@given(data=st.binary(max_size=300) | st.text().map(str.encode), now_ms=st.none() | st.just(NOW))
def test_arbitrary_bytes_never_raise(data: bytes, now_ms: int | None) -> None:
    out = decode_message(data, now_ms)
    check_results(out)
    if data.lstrip(b" \t\r\n")[:1] != b"[":
        assert len(out) == 1


# --- valid events ----------------------------------------------------------------------------

short_text = st.text(min_size=1, max_size=40)
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59)
instants = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2026, 11, 27, 8, 0)).map(
    lambda dt: dt.replace(tzinfo=UTC)
)


def rfc3339(instant: datetime, offset_minutes: int, digits: int, upper: bool) -> str:
    local = instant.astimezone(timezone(timedelta(minutes=offset_minutes)))
    text = (
        f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
        f"T{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
    )
    if digits:
        text += "." + f"{local.microsecond:06d}{'7' * 3}"[:digits]
    if offset_minutes == 0 and upper:
        text += "Z"
    else:
        sign = "+" if offset_minutes >= 0 else "-"
        text += f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    return text if upper else text.lower()


def exact_ms(instant: datetime) -> int:
    return (instant - EPOCH) // timedelta(milliseconds=1)


def truncated_ms(instant: datetime, digits: int) -> int:
    """Epoch ms of `instant` written with `digits` fraction digits, the rest cut off."""
    kept = f"{instant.microsecond:06d}"[: min(digits, 3)].ljust(3, "0")
    return exact_ms(instant.replace(microsecond=int(kept) * 1000))


@st.composite
def timestamps(draw: st.DrawFn) -> tuple[str | int, int]:
    """A valid `ts` at or before NOW and its epoch ms."""
    instant = draw(instants)
    expected = exact_ms(instant)
    if draw(st.booleans()):
        return expected, expected
    digits = draw(st.integers(0, 9))
    text = rfc3339(instant, draw(offsets), digits, draw(st.booleans()))
    return text, truncated_ms(instant, digits)


def properties_of(type_: str) -> st.SearchStrategy[dict[str, Any]]:
    count = st.integers(min_value=0, max_value=10**9)
    page = st.text(min_size=1, max_size=256)
    comment = st.text(min_size=1, max_size=200)
    optional: dict[str, st.SearchStrategy[Any]] = {"comment": comment}
    required: dict[str, st.SearchStrategy[Any]]
    if type_ == "page_view":
        required, optional = {"page": page}, {"referrer": page}
    elif type_ == "page_leave":
        required = {"page": page, "duration_ms": count}
        optional = {"scroll_pct": st.floats(min_value=0, max_value=100)}
    elif type_ in ("impression", "click"):
        required, optional = {"element": page}, {}
    elif type_ == "feature_used":
        required, optional = {"feature": page}, {}
    elif type_ == "signup":
        required, optional = {}, {}
    elif type_ == "subscription_started":
        required, optional = {}, {"mrr": st.floats(min_value=0, max_value=1e9)}
    elif type_ == "subscription_cancelled":
        required, optional = {}, {"reason": page}
    elif type_ == "support_ticket_opened":
        required, optional = {"ticket_id": page}, {}
    elif type_ == "support_ticket_resolved":
        required = {"ticket_id": page}
        optional = {
            "first_response_ms": count,
            "resolution_ms": count,
            "contacts": st.integers(min_value=1, max_value=100),
        }
    elif type_ == "task_completed":
        required = {"task": page}
        optional = {"steps": st.integers(min_value=1, max_value=100), "duration_ms": count}
    elif type_ == "task_failed":
        required, optional = {"task": page}, {}
    elif type_ == "nps":
        required = {"score": st.integers(min_value=0, max_value=10)}
    else:  # csat, ces: the score is drawn against the scale below
        required = {}
    return st.fixed_dictionaries(required, optional=optional)


@st.composite
def scored(draw: st.DrawFn, type_: str) -> dict[str, Any]:
    scales = [5, 7, 10] if type_ == "csat" else [5, 7]
    scale = draw(st.sampled_from([*scales, None]))
    top = scale or (5 if type_ == "csat" else 7)
    props: dict[str, Any] = {"score": draw(st.integers(min_value=1, max_value=top))}
    if scale is not None:
        props["scale"] = scale
    return props


@st.composite
def valid_events(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    """A valid event (against NOW) and its expected ts_ms."""
    type_ = draw(st.sampled_from(TYPES))
    ts, ts_ms = draw(timestamps())
    obj: dict[str, Any] = {
        "event_id": draw(st.text(min_size=1, max_size=128)),
        "type": type_,
        "ts": ts,
        "user_id": draw(st.text(min_size=1, max_size=256)),
    }
    if type_ in ("page_view", "page_leave") or draw(st.booleans()):
        obj["session_id"] = draw(short_text)
    for name in DIMENSIONS:
        value = draw(st.none() | st.text(max_size=80) | st.just("all") | st.just("ALL"))
        if value is not None or draw(st.booleans()):
            obj[name] = value
    if draw(st.booleans()):
        obj["account_id"] = draw(short_text)
    if draw(st.booleans()):
        obj["journey_stage"] = draw(
            st.sampled_from(["awareness", "consideration", "decision", "retention", "advocacy"])
        )
    props: dict[str, Any] = draw(properties_of(type_))
    if type_ in ("csat", "ces"):
        props.update(draw(scored(type_)))
    keep_empty: bool = draw(st.booleans())
    if props or keep_empty:
        obj["properties"] = props
    return obj, ts_ms


@SETTINGS
@given(case=valid_events())
def test_valid_events_are_accepted_with_normalized_dimensions(
    case: tuple[dict[str, Any], int],
) -> None:
    obj, ts_ms = case
    out = decode_message(json.dumps(obj).encode(), NOW)
    assert len(out) == 1
    got = out[0]
    assert isinstance(got, Event), got
    assert (got.event_id, got.type, got.ts_ms, got.user_id) == (
        obj["event_id"],
        obj["type"],
        ts_ms,
        obj["user_id"],
    )
    for name in DIMENSIONS:
        value = obj.get(name)
        expected = "unknown" if value is None else normalize_dimension(value)
        assert getattr(got, name) == expected
    check_dimensions(got)


@SETTINGS
@given(cases=st.lists(valid_events(), max_size=20), ensure_ascii=st.booleans())
def test_batch_of_valid_events_gives_events_in_order(
    cases: list[tuple[dict[str, Any], int]], ensure_ascii: bool
) -> None:
    batch = [obj for obj, _ in cases]
    out = decode_message(json.dumps(batch, ensure_ascii=ensure_ascii).encode(), NOW)
    assert all(isinstance(item, Event) for item in out)
    assert [(e.event_id, e.ts_ms) for e in out if isinstance(e, Event)] == [
        (obj["event_id"], ts_ms) for obj, ts_ms in cases
    ]


REQUIRED = ("event_id", "type", "ts", "user_id")


@st.composite
def mutations(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    """A valid event with one field dropped or replaced by any JSON value."""
    obj, _ = draw(valid_events())
    props = obj.get("properties")
    paths: list[tuple[str, ...]] = [(key,) for key in obj]
    if isinstance(props, dict):
        paths += [("properties", key) for key in props]
    path = draw(st.sampled_from(paths))
    target = obj if len(path) == 1 else obj["properties"]
    op = draw(st.sampled_from(["drop", "replace"]))
    if op == "drop":
        del target[path[-1]]
    else:
        target[path[-1]] = draw(json_values)
    return obj, op, ".".join(path)


@SETTINGS
@given(case=mutations(), now_ms=st.none() | st.just(NOW))
def test_mutated_valid_events_are_accepted_or_rejected(
    case: tuple[dict[str, Any], str, str], now_ms: int | None
) -> None:
    obj, op, path = case
    out = decode_message(json.dumps(obj).encode(), now_ms)
    assert len(out) == 1
    check_results(out)
    if op == "drop" and path in REQUIRED:
        # the only fault is the missing field, so it is the reason
        rejection = out[0]
        assert isinstance(rejection, Rejection)
        assert rejection.reason == "missing_field"
        assert rejection.error.startswith(f"{path}:")


@SETTINGS
@given(case=mutations())
def test_mutated_events_in_a_batch_are_judged_alone(case: tuple[dict[str, Any], str, str]) -> None:
    obj, _, _ = case
    good = {"event_id": "g", "type": "signup", "ts": NOW, "user_id": "u"}
    out = decode_message(json.dumps([good, obj, good]).encode(), NOW)
    assert len(out) == 3
    check_results(out)
    assert isinstance(out[0], Event) and isinstance(out[2], Event)
    if isinstance(out[1], Rejection):
        assert out[1].index == 1


# --- dimensions and timestamps ---------------------------------------------------------------


@SETTINGS
@given(value=st.text(max_size=100))
def test_normalize_dimension_shape(value: str) -> None:
    got = normalize_dimension(value)
    assert DIMENSION_RE.fullmatch(got)
    assert got != "all"
    assert normalize_dimension(got) == got  # normalizing twice changes nothing


@SETTINGS
@given(
    instant=st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)).map(
        lambda dt: dt.replace(tzinfo=UTC)
    ),
    offset=offsets,
    digits=st.integers(0, 9),
    upper=st.booleans(),
)
def test_parse_timestamp_agrees_with_datetime(
    instant: datetime, offset: int, digits: int, upper: bool
) -> None:
    text = rfc3339(instant, offset, digits, upper)
    assert parse_timestamp(text) == truncated_ms(instant, digits)


def _outcome(parse: Any, text: str) -> int | str:
    try:
        return int(parse(text))
    except InvalidEvent as exc:
        return exc.reason


@SETTINGS
@given(
    instant=st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    tail=st.text(alphabet=":0123456789.5zZ+-T ٢\n", max_size=16),
    shaped=st.tuples(
        st.integers(0, 61),
        st.integers(0, 61),
        st.sampled_from(["", ".", ".5", ".0123", ".98765"]),
        st.sampled_from(["Z", "z", "", "Z\n", "+01:00", "-23:59", "+24:00", "-05:60", "+0530"]),
    ).map(lambda p: f":{p[0]:02d}:{p[1]:02d}{p[2]}{p[3]}"),
    cut=st.integers(11, 15),
)
def test_parse_timestamp_hour_cache_agrees_with_the_full_parse(
    instant: datetime, tail: str, shaped: str, cut: int
) -> None:
    # The date and hour are valid and cached (a UTC timestamp of that hour was
    # parsed); whatever follows, the cached path answers as the full parse does.
    hour = f"{instant.year:04d}-{instant:%m-%dT%H}"
    assert parse_timestamp(hour + ":00:00Z") == _parse_timestamp_full(hour + ":00:00Z")
    for text in (hour + shaped, hour + tail, (hour + ":59:59.5Z")[:cut] + tail):
        assert _outcome(parse_timestamp, text) == _outcome(_parse_timestamp_full, text)
