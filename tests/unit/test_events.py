"""The event contract of SPEC sections 1 and 5, one table per concern.

Every expected value below is worked out by hand from SPEC.md. The reference
instant is 2026-11-27T08:00:00.000Z:

    days 1970-01-01 .. 2026-01-01 = 56 * 365 + 14 leap days     = 20,454
    days 2026-01-01 .. 2026-11-27 = 304 (Jan..Oct) + 26          =    330
    20,784 days * 86,400,000 ms + 8 h * 3,600,000 ms             = 1,795,766,400,000
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cxstream.errors import InvalidEvent
from cxstream.events import (
    MAX_EVENT_BYTES,
    MAX_MESSAGE_BYTES,
    REJECT_REASONS,
    Event,
    Rejection,
    decode_message,
    normalize_dimension,
    parse_timestamp,
    raw_text,
    validate_event,
)

NOW = 1_795_766_400_000  # 2026-11-27T08:00:00.000Z
TS = "2026-11-27T08:00:00Z"
MIN = 60_000
KIB = 1024
DROP: Any = object()  # a field value meaning "leave the field out"

# The smallest valid `properties` of every type (SPEC section 1 tables).
VALID_PROPS: dict[str, dict[str, Any]] = {
    "page_view": {"page": "/pricing"},
    "page_leave": {"page": "/pricing", "duration_ms": 42_000},
    "impression": {"element": "cta"},
    "click": {"element": "cta"},
    "feature_used": {"feature": "export"},
    "signup": {},
    "subscription_started": {},
    "subscription_cancelled": {},
    "support_ticket_opened": {"ticket_id": "T-1"},
    "support_ticket_resolved": {"ticket_id": "T-1"},
    "task_completed": {"task": "checkout"},
    "task_failed": {"task": "checkout"},
    "nps": {"score": 9},
    "csat": {"score": 4},
    "ces": {"score": 2},
}


def event(type_: Any = "signup", props: dict[str, Any] | None = None, **fields: Any) -> Any:
    """A valid event of `type_`, with `props` merged into its properties and `fields` over
    its envelope; a value of DROP removes the key."""
    obj: dict[str, Any] = {"event_id": "e1", "type": type_, "ts": TS, "user_id": "u1"}
    if type_ in ("page_view", "page_leave"):
        obj["session_id"] = "s1"
    properties = dict(VALID_PROPS.get(type_, {})) if isinstance(type_, str) else {}
    for key, value in (props or {}).items():
        properties[key] = value
    obj["properties"] = properties
    for key, value in {"type": type_, **fields}.items():
        obj[key] = value
    for key in [k for k, v in obj.items() if v is DROP]:
        del obj[key]
    for key in [k for k, v in properties.items() if v is DROP]:
        del properties[key]
    return obj


def encode(obj: Any) -> bytes:
    return obj if isinstance(obj, bytes) else json.dumps(obj).encode()


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def decode_one(obj: Any, now_ms: int | None = NOW) -> Event | Rejection:
    out = decode_message(encode(obj), now_ms)
    assert len(out) == 1
    return out[0]


def accepted(obj: Any, now_ms: int | None = NOW) -> Event:
    result = decode_one(obj, now_ms)
    assert isinstance(result, Event), result
    return result


def rejected(obj: Any, now_ms: int | None = NOW) -> Rejection:
    result = decode_one(obj, now_ms)
    assert isinstance(result, Rejection), result
    return result


def padded(obj: dict[str, Any], size: int) -> dict[str, Any]:
    """`obj` plus an unknown `pad` field so that its compact JSON text is `size` bytes."""
    base = len(compact({**obj, "pad": ""}))
    out = {**obj, "pad": "x" * (size - base)}
    assert len(compact(out)) == size
    return out


def iso_ms(text: str) -> int:
    """Epoch ms of an ISO date-time via the standard library, in integers."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return (datetime.fromisoformat(text) - epoch) // timedelta(milliseconds=1)


# --- every reject reason of SPEC section 5 -------------------------------------------------

REJECT_CASES = [
    # (1) size
    pytest.param(
        b"[" + b" " * MAX_MESSAGE_BYTES + b"]", "too_large", "message", id="message-over-1MiB"
    ),
    pytest.param(
        compact(padded(event(), MAX_EVENT_BYTES + 1)), "too_large", "event", id="event-over-64KiB"
    ),
    # (2) JSON
    pytest.param(b'{"event_id": "e1"', "malformed_json", "message", id="truncated"),
    pytest.param(b"", "malformed_json", "message", id="empty-message"),
    pytest.param(b"{'event_id': 'e1'}", "malformed_json", "message", id="single-quotes"),
    pytest.param(
        b'{"event_id": "e1", "type": "nps", "ts": 1, "user_id": "u1", '
        b'"properties": {"score": NaN}}',
        "malformed_json",
        "message",
        id="NaN",
    ),
    pytest.param(
        b'{"event_id": "e1", "type": "nps", "ts": Infinity, "user_id": "u1"}',
        "malformed_json",
        "message",
        id="Infinity",
    ),
    pytest.param(
        b'{"event_id": "e1", "type": "nps", "ts": -Infinity, "user_id": "u1"}',
        "malformed_json",
        "message",
        id="minus-Infinity",
    ),
    pytest.param(
        b'{"event_id": "e\xff1", "type": "signup", "ts": 1, "user_id": "u1"}',
        "malformed_json",
        "message",
        id="invalid-utf8",
    ),
    # (3) shape
    pytest.param(b"42", "not_an_object", "message", id="top-level-number"),
    pytest.param(b'"e1"', "not_an_object", "message", id="top-level-string"),
    pytest.param(b"null", "not_an_object", "message", id="top-level-null"),
    pytest.param(b"true", "not_an_object", "message", id="top-level-bool"),
    # (4) envelope: missing_field
    pytest.param(event(event_id=DROP), "missing_field", "event_id", id="event_id-absent"),
    pytest.param(event(event_id=None), "missing_field", "event_id", id="event_id-null"),
    pytest.param(event(type_=DROP), "missing_field", "type", id="type-absent"),
    pytest.param(event(type_=None), "missing_field", "type", id="type-null"),
    pytest.param(event(ts=DROP), "missing_field", "ts", id="ts-absent"),
    pytest.param(event(ts=None), "missing_field", "ts", id="ts-null"),
    pytest.param(event(user_id=DROP), "missing_field", "user_id", id="user_id-absent"),
    pytest.param(event(user_id=None), "missing_field", "user_id", id="user_id-null"),
    # (4) envelope: bad_type
    pytest.param(event(event_id=1), "bad_type", "event_id", id="event_id-int"),
    pytest.param(event(type_=1), "bad_type", "type", id="type-int"),
    pytest.param(event(type_=["signup"]), "bad_type", "type", id="type-array"),
    pytest.param(event(ts=True), "bad_type", "ts", id="ts-bool"),
    pytest.param(event(ts=1_795_766_400_000.5), "bad_type", "ts", id="ts-float"),
    pytest.param(event(ts=[TS]), "bad_type", "ts", id="ts-array"),
    pytest.param(event(ts={"ms": NOW}), "bad_type", "ts", id="ts-object"),
    pytest.param(event(user_id=7), "bad_type", "user_id", id="user_id-int"),
    pytest.param(event(account_id=7), "bad_type", "account_id", id="account_id-int"),
    pytest.param(event(product=7), "bad_type", "product", id="product-int"),
    pytest.param(event(channel=["web"]), "bad_type", "channel", id="channel-array"),
    pytest.param(event(touchpoint={"a": 1}), "bad_type", "touchpoint", id="touchpoint-object"),
    pytest.param(event(journey_stage=1), "bad_type", "journey_stage", id="journey_stage-int"),
    pytest.param(event(properties=[]), "bad_type", "properties", id="properties-array"),
    pytest.param(event(properties="x"), "bad_type", "properties", id="properties-string"),
    # (4) envelope: out_of_range
    pytest.param(event(event_id=""), "out_of_range", "event_id", id="event_id-empty"),
    pytest.param(event(user_id=""), "out_of_range", "user_id", id="user_id-empty"),
    pytest.param(event(account_id=""), "out_of_range", "account_id", id="account_id-empty"),
    pytest.param(
        event(journey_stage="Awareness"), "out_of_range", "journey_stage", id="stage-case"
    ),
    pytest.param(
        event(journey_stage="purchase"), "out_of_range", "journey_stage", id="stage-unlisted"
    ),
    # (5) type
    pytest.param(event(type_="purchase"), "unknown_type", "type", id="type-unlisted"),
    pytest.param(event(type_="PAGE_VIEW"), "unknown_type", "type", id="type-upper-case"),
    pytest.param(event(type_=""), "unknown_type", "type", id="type-empty"),
    # (6) session_id and properties: missing_field
    pytest.param(
        event("page_view", session_id=DROP), "missing_field", "session_id", id="session-view"
    ),
    pytest.param(
        event("page_leave", session_id=None), "missing_field", "session_id", id="session-leave"
    ),
    pytest.param(event("page_view", {"page": DROP}), "missing_field", "properties.page", id="page"),
    pytest.param(
        event("page_view", {"page": None}), "missing_field", "properties.page", id="page-null"
    ),
    pytest.param(
        event("page_leave", {"duration_ms": DROP}),
        "missing_field",
        "properties.duration_ms",
        id="duration_ms",
    ),
    pytest.param(
        event("impression", {"element": DROP}), "missing_field", "properties.element", id="imp"
    ),
    pytest.param(
        event("click", {"element": DROP}), "missing_field", "properties.element", id="click"
    ),
    pytest.param(
        event("feature_used", {"feature": DROP}), "missing_field", "properties.feature", id="ft"
    ),
    pytest.param(
        event("support_ticket_opened", {"ticket_id": DROP}),
        "missing_field",
        "properties.ticket_id",
        id="ticket-opened",
    ),
    pytest.param(
        event("support_ticket_resolved", {"ticket_id": DROP}),
        "missing_field",
        "properties.ticket_id",
        id="ticket-resolved",
    ),
    pytest.param(
        event("task_completed", {"task": DROP}), "missing_field", "properties.task", id="task"
    ),
    pytest.param(
        event("task_failed", {"task": DROP}), "missing_field", "properties.task", id="task-f"
    ),
    pytest.param(event("nps", {"score": DROP}), "missing_field", "properties.score", id="nps"),
    pytest.param(event("csat", {"score": DROP}), "missing_field", "properties.score", id="csat"),
    pytest.param(event("ces", properties=DROP), "missing_field", "properties.score", id="ces"),
    # (6) session_id and properties: bad_type
    pytest.param(event("click", session_id=7), "bad_type", "session_id", id="session-int"),
    pytest.param(event("page_view", {"page": 7}), "bad_type", "properties.page", id="page-int"),
    pytest.param(event("nps", {"score": "7"}), "bad_type", "properties.score", id="score-str"),
    pytest.param(event("nps", {"score": True}), "bad_type", "properties.score", id="score-bool"),
    pytest.param(event("nps", {"score": 7.5}), "bad_type", "properties.score", id="score-7.5"),
    pytest.param(event("csat", {"scale": "7"}), "bad_type", "properties.scale", id="scale-str"),
    pytest.param(
        event("page_leave", {"scroll_pct": "50"}),
        "bad_type",
        "properties.scroll_pct",
        id="scroll_pct-str",
    ),
    pytest.param(
        event("subscription_started", {"mrr": True}), "bad_type", "properties.mrr", id="mrr-b"
    ),
    pytest.param(
        event("nps", {"comment": ["x"]}), "bad_type", "properties.comment", id="comment-array"
    ),
    # (6) session_id and properties: out_of_range
    pytest.param(
        event("page_view", session_id=""), "out_of_range", "session_id", id="session-empty"
    ),
    pytest.param(
        event("page_view", {"page": ""}), "out_of_range", "properties.page", id="page-empty"
    ),
    pytest.param(event("nps", {"score": 11}), "out_of_range", "properties.score", id="nps-11"),
    pytest.param(event("nps", {"score": -1}), "out_of_range", "properties.score", id="nps--1"),
    pytest.param(
        event("csat", {"scale": 6}), "out_of_range", "properties.scale", id="csat-scale-6"
    ),
    pytest.param(
        event("csat", {"score": 6, "scale": 5}),
        "out_of_range",
        "properties.score",
        id="csat-6-of-5",
    ),
    pytest.param(
        event("csat", {"score": 6}), "out_of_range", "properties.score", id="csat-6-default-5"
    ),
    pytest.param(event("csat", {"score": 0}), "out_of_range", "properties.score", id="csat-0"),
    pytest.param(
        event("ces", {"score": 8}), "out_of_range", "properties.score", id="ces-8-default-7"
    ),
    pytest.param(
        event("ces", {"scale": 10}), "out_of_range", "properties.scale", id="ces-scale-10"
    ),
    pytest.param(
        event("page_leave", {"duration_ms": -1}),
        "out_of_range",
        "properties.duration_ms",
        id="duration-negative",
    ),
    pytest.param(
        event("page_leave", {"scroll_pct": 100.5}),
        "out_of_range",
        "properties.scroll_pct",
        id="scroll-over-100",
    ),
    pytest.param(
        event("subscription_started", {"mrr": -0.01}),
        "out_of_range",
        "properties.mrr",
        id="mrr-negative",
    ),
    pytest.param(
        event("support_ticket_resolved", {"contacts": 0}),
        "out_of_range",
        "properties.contacts",
        id="contacts-0",
    ),
    pytest.param(
        event("task_completed", {"steps": 0}), "out_of_range", "properties.steps", id="steps-0"
    ),
    # (7) ts
    pytest.param(event(ts="2026-11-27T08:00:00"), "bad_timestamp", "ts", id="ts-no-offset"),
    pytest.param(event(ts="yesterday"), "bad_timestamp", "ts", id="ts-words"),
    pytest.param(event(ts=""), "bad_timestamp", "ts", id="ts-empty"),
    pytest.param(event(ts="2026-11-27T08:05:00.001Z"), "future_timestamp", "ts", id="ts-future"),
]


@pytest.mark.parametrize(("message", "reason", "field"), REJECT_CASES)
def test_reject_reason_and_field(message: Any, reason: str, field: str) -> None:
    rejection = rejected(message)
    assert rejection.reason == reason
    assert rejection.error.startswith(f"{field}:"), rejection.error
    assert rejection.index is None


def test_reject_cases_cover_every_reason() -> None:
    covered = {case.values[1] for case in REJECT_CASES}
    assert covered == set(REJECT_REASONS)


@pytest.mark.parametrize(
    ("message", "raw"),
    [
        # a single event's raw is the message text as sent
        pytest.param(event(event_id=DROP), json.dumps(event(event_id=DROP)), id="event"),
        pytest.param(b"42", "42", id="not-an-object"),
        pytest.param(b'{"a": ', '{"a": ', id="not-json"),
        # not UTF-8: base64 of the message bytes
        pytest.param(b'{"e\xff"}', base64.b64encode(b'{"e\xff"}').decode(), id="not-utf8"),
    ],
)
def test_raw_of_a_single_message(message: bytes | dict[str, Any], raw: str) -> None:
    assert rejected(message).raw == raw


@pytest.mark.parametrize(
    ("data", "text"),
    [
        pytest.param(b"", "", id="empty"),
        pytest.param("héllo".encode(), "héllo", id="utf8"),
        pytest.param(b"\xff\xfe", "//4=", id="not-utf8"),
        pytest.param(b"\xc3", "ww==", id="cut-utf8"),
    ],
)
def test_raw_text(data: bytes, text: str) -> None:
    assert raw_text(data) == text


# --- sizes -----------------------------------------------------------------------------------


def batch_of_size(total: int, element_size: int = 60_000) -> list[dict[str, Any]]:
    """Valid events whose compact JSON array is exactly `total` bytes."""
    elements: list[dict[str, Any]] = []
    remaining = total - 2  # the brackets
    while remaining > 0:
        if elements:
            remaining -= 1  # the comma before this element
        size = min(element_size, remaining)
        elements.append(padded(event(event_id=f"e{len(elements)}"), size))
        remaining -= size
    assert len(compact(elements)) == total
    return elements


@pytest.mark.parametrize(
    ("message", "outcome"),
    [
        pytest.param(compact(padded(event(), MAX_EVENT_BYTES)), "accepted", id="event-64KiB"),
        pytest.param(compact(padded(event(), MAX_EVENT_BYTES + 1)), "too_large", id="event+1"),
        # an oversized single event is too_large before parsing: even when it is not JSON
        pytest.param(b"{" + b"x" * MAX_EVENT_BYTES, "too_large", id="event+1-not-json"),
        pytest.param(compact(batch_of_size(MAX_MESSAGE_BYTES)), "accepted", id="batch-1MiB"),
        pytest.param(compact(batch_of_size(MAX_MESSAGE_BYTES + 1)), "too_large", id="batch+1"),
        # a batch over 1 MiB is too_large as a whole, before parsing
        pytest.param(b"[" + b"x" * MAX_MESSAGE_BYTES, "too_large", id="batch+1-not-json"),
    ],
)
def test_size_limits(message: bytes, outcome: str) -> None:
    out = decode_message(message, NOW)
    if outcome == "accepted":
        assert out and all(isinstance(item, Event) for item in out)
    else:
        assert len(out) == 1
        assert isinstance(out[0], Rejection)
        assert (out[0].reason, out[0].index) == ("too_large", None)


def test_batch_element_over_64KiB_is_too_large_alone() -> None:
    elements = [
        event(event_id="a"),
        padded(event(event_id="b"), MAX_EVENT_BYTES + 1),
        padded(event(event_id="c"), MAX_EVENT_BYTES),  # exactly 64 KiB is allowed
        event(event_id="d"),
    ]
    out = decode_message(compact(elements), NOW)
    assert [type(item).__name__ for item in out] == ["Event", "Rejection", "Event", "Event"]
    assert [item.event_id for item in out if isinstance(item, Event)] == ["a", "c", "d"]
    rejection = out[1]
    assert isinstance(rejection, Rejection)
    assert (rejection.reason, rejection.index) == ("too_large", 1)
    assert rejection.error.startswith("[1]")
    assert rejection.raw == compact(elements[1]).decode()


def test_batch_element_over_64KiB_that_is_not_an_object_is_too_large() -> None:
    message = compact([event(event_id="a"), "x" * MAX_EVENT_BYTES])
    out = decode_message(message, NOW)
    assert isinstance(out[0], Event)
    assert isinstance(out[1], Rejection)
    assert (out[1].reason, out[1].index) == ("too_large", 1)


def test_raw_of_an_oversized_utf8_message_is_text() -> None:
    # b'[ "' is 3 bytes, so every 2-byte "é" starts at an odd offset and byte 65,536
    # falls in the middle of one.
    text = '[ "' + "é" * (MAX_MESSAGE_BYTES // 2) + '"]'
    rejection = rejected(text.encode())
    assert rejection.reason == "too_large"
    assert rejection.raw and text.startswith(rejection.raw)


# --- batches ---------------------------------------------------------------------------------


def test_empty_batch_is_no_events() -> None:
    assert decode_message(b"[]", NOW) == []
    assert decode_message(b" [ ] ", NOW) == []


def test_batch_elements_are_judged_one_by_one() -> None:
    elements: list[Any] = [
        event(event_id="a"),
        42,
        [event(event_id="n")],
        "e1",
        None,
        event("nps", {"score": 11}, event_id="s"),
        event(event_id="b"),
    ]
    out = decode_message(json.dumps(elements).encode(), NOW)
    assert len(out) == len(elements)
    expected = [
        # (index, reason, error prefix, raw)
        (1, "not_an_object", "[1]:", "42"),
        (2, "not_an_object", "[2]:", compact([event(event_id="n")]).decode()),
        (3, "not_an_object", "[3]:", '"e1"'),
        (4, "not_an_object", "[4]:", "null"),
        (5, "out_of_range", "[5].properties.score:", compact(elements[5]).decode()),
    ]
    rejections = [item for item in out if isinstance(item, Rejection)]
    assert [(r.index, r.reason, r.raw) for r in rejections] == [
        (index, reason, raw) for index, reason, _, raw in expected
    ]
    for rejection, (_, _, prefix, _) in zip(rejections, expected, strict=True):
        assert rejection.error.startswith(prefix), rejection.error
    assert [item.event_id for item in out if isinstance(item, Event)] == ["a", "b"]
    assert isinstance(out[0], Event) and isinstance(out[6], Event)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        pytest.param(b"[" + b"[" * 300 + b"]" * 300 + b"]", "not_an_object", id="nested-array"),
        pytest.param(
            b'[{"event_id": "e1", "deep": ' + b"[" * 300 + b"]" * 300 + b"}]",
            "missing_field",
            id="rejected-object",
        ),
        pytest.param(
            # over 64 KiB in all, so each element is measured
            b"["
            + compact(padded(event(), 64_500))[:-1]
            + b',"deep":'
            + b"[" * 300
            + b"]" * 300
            + b"},"
            + compact(padded(event(event_id="e2"), 1_000))
            + b"]",
            "accepted",
            id="accepted-object-in-large-batch",
        ),
    ],
)
def test_deeply_nested_batch_element_does_not_raise(message: bytes, kind: str) -> None:
    out = decode_message(message, NOW)
    if kind == "accepted":
        assert [type(item) for item in out] == [Event, Event]
    else:
        assert len(out) == 1
        assert isinstance(out[0], Rejection)
        assert (out[0].reason, out[0].index) == (kind, 0)


# --- validation order ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason", "field"),
    [
        pytest.param(
            event(type_="purchase", event_id=DROP), "missing_field", "event_id", id="4-before-5"
        ),
        pytest.param(
            event("page_view", {"page": DROP}, ts="not a time"),
            "missing_field",
            "properties.page",
            id="6-before-7",
        ),
        pytest.param(
            event(type_="purchase", ts="not a time"), "unknown_type", "type", id="5-before-7"
        ),
        pytest.param(
            event(user_id=7, event_id="x" * 129), "out_of_range", "event_id", id="event_id-first"
        ),
        pytest.param(event(ts=1.5, user_id=DROP), "bad_type", "ts", id="ts-before-user_id"),
        pytest.param(event(ts=DROP, user_id=7), "missing_field", "ts", id="ts-missing-first"),
        pytest.param(
            event(type_=7, event_id=""), "out_of_range", "event_id", id="event_id-before-type"
        ),
        pytest.param(
            event(account_id="", product=7), "out_of_range", "account_id", id="account-product"
        ),
        pytest.param(
            event(product=7, journey_stage="nope"), "bad_type", "product", id="product-stage"
        ),
        pytest.param(
            event(channel=7, touchpoint=7), "bad_type", "channel", id="channel-touchpoint"
        ),
        pytest.param(
            event(journey_stage="nope", properties=[]),
            "out_of_range",
            "journey_stage",
            id="stage-properties",
        ),
        pytest.param(
            event(type_="purchase", properties=[]), "bad_type", "properties", id="props-type"
        ),
        pytest.param(
            event(type_="purchase", journey_stage="nope"),
            "out_of_range",
            "journey_stage",
            id="stage-type",
        ),
        # session_id is not an envelope check of stage 4: an unknown type comes first
        pytest.param(
            event(type_="purchase", session_id=""), "unknown_type", "type", id="type-session"
        ),
        pytest.param(
            event("page_view", {"page": DROP}, session_id=DROP),
            "missing_field",
            "session_id",
            id="session-before-props",
        ),
        pytest.param(
            event("page_view", session_id="", ts="2030-01-01T00:00:00Z"),
            "out_of_range",
            "session_id",
            id="session-before-future",
        ),
        pytest.param(
            event("nps", {"score": DROP}, ts="2026-02-30T00:00:00Z"),
            "missing_field",
            "properties.score",
            id="props-before-bad-ts",
        ),
        pytest.param(
            event("nps", {"score": 11}, ts="2030-01-01T00:00:00Z"),
            "out_of_range",
            "properties.score",
            id="props-before-future",
        ),
        # properties in table order
        pytest.param(
            event("page_leave", {"page": DROP, "duration_ms": "x"}),
            "missing_field",
            "properties.page",
            id="page-before-duration",
        ),
        pytest.param(
            event("page_leave", {"duration_ms": -1, "scroll_pct": "x"}),
            "out_of_range",
            "properties.duration_ms",
            id="duration-before-scroll",
        ),
        pytest.param(
            event("support_ticket_resolved", {"first_response_ms": "x", "contacts": 0}),
            "bad_type",
            "properties.first_response_ms",
            id="response-before-contacts",
        ),
        pytest.param(
            event("csat", {"score": "x", "scale": 6}),
            "bad_type",
            "properties.score",
            id="score-before-scale",
        ),
        pytest.param(
            event("nps", {"score": 11, "comment": ""}),
            "out_of_range",
            "properties.score",
            id="score-before-comment",
        ),
        pytest.param(
            event("task_completed", {"task": "", "steps": "x"}),
            "out_of_range",
            "properties.task",
            id="task-before-steps",
        ),
        # size and JSON come before everything
        pytest.param(b"{" + b"\xff" * MAX_EVENT_BYTES, "too_large", "event", id="size-before-json"),
        pytest.param(b"[1, 2", "malformed_json", "message", id="json-before-shape"),
    ],
)
def test_first_failing_stage_gives_the_reason(message: Any, reason: str, field: str) -> None:
    rejection = rejected(message)
    assert (rejection.reason, rejection.error.split(":")[0]) == (reason, field)


# --- integers, null, defaults, extra fields --------------------------------------------------


@pytest.mark.parametrize(
    ("message", "props"),
    [
        pytest.param(event("nps", {"score": 7.0}), {"score": 7}, id="7.0-is-7"),
        pytest.param(event("nps", {"score": 0}), {"score": 0}, id="nps-0"),
        pytest.param(event("nps", {"score": 10}), {"score": 10}, id="nps-10"),
        pytest.param(event("csat", {"score": 5}), {"score": 5, "scale": 5}, id="csat-default-5"),
        pytest.param(
            event("csat", {"score": 10, "scale": 10.0}), {"score": 10, "scale": 10}, id="csat-10"
        ),
        pytest.param(event("ces", {"score": 7}), {"score": 7, "scale": 7}, id="ces-default-7"),
        pytest.param(
            event("ces", {"score": 5, "scale": 5}), {"score": 5, "scale": 5}, id="ces-scale-5"
        ),
        pytest.param(
            event("page_leave", {"duration_ms": 0, "scroll_pct": 100}),
            {"page": "/pricing", "duration_ms": 0, "scroll_pct": 100},
            id="leave-bounds",
        ),
        pytest.param(
            event("page_leave", {"scroll_pct": 37.5}),
            {"page": "/pricing", "duration_ms": 42_000, "scroll_pct": 37.5},
            id="scroll-fraction",
        ),
        pytest.param(event("subscription_started", {"mrr": 0}), {"mrr": 0}, id="mrr-0"),
        pytest.param(
            event("subscription_started", {"mrr": 19.99}), {"mrr": 19.99}, id="mrr-fraction"
        ),
        pytest.param(
            event(
                "support_ticket_resolved",
                {"first_response_ms": 0, "resolution_ms": 1.0e3, "contacts": 1},
            ),
            {"ticket_id": "T-1", "first_response_ms": 0, "resolution_ms": 1000, "contacts": 1},
            id="ticket-bounds",
        ),
        pytest.param(
            event("task_completed", {"steps": 1, "duration_ms": 0}),
            {"task": "checkout", "steps": 1, "duration_ms": 0},
            id="task-bounds",
        ),
        # null on an optional field is the same as absent
        pytest.param(event("nps", {"comment": None}), {"score": 9}, id="comment-null"),
        pytest.param(
            event("csat", {"scale": None}), {"score": 4, "scale": 5}, id="scale-null-default"
        ),
        pytest.param(
            event("page_leave", {"scroll_pct": None}),
            {"page": "/pricing", "duration_ms": 42_000},
            id="scroll-null",
        ),
        # unknown extra fields are ignored
        pytest.param(
            event("nps", {"score": 9, "extra": {"x": [1]}}), {"score": 9}, id="extra-prop"
        ),
        pytest.param(event(properties=DROP), {}, id="properties-absent"),
        pytest.param(event(properties=None), {}, id="properties-null"),
        pytest.param(event(properties={"x": 1}), {}, id="signup-extra"),
    ],
)
def test_accepted_properties(message: dict[str, Any], props: dict[str, Any]) -> None:
    got = accepted(message).props
    assert got == props
    assert [type(v) for v in got.values()] == [type(v) for v in props.values()]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(
            event(account_id=None, journey_stage=None, product=None),
            {"account_id": None, "journey_stage": None, "product": "unknown"},
            id="nulls-are-absent",
        ),
        pytest.param(
            event("click", session_id=None), {"session_id": None}, id="click-session-null"
        ),
        pytest.param(
            event("click", session_id=DROP), {"session_id": None}, id="click-session-absent"
        ),
        pytest.param(
            event("click", session_id="s9"), {"session_id": "s9"}, id="click-session-given"
        ),
        pytest.param(
            event(account_id="acme", journey_stage="advocacy"),
            {"account_id": "acme", "journey_stage": "advocacy"},
            id="optional-given",
        ),
        pytest.param(
            event(extra=[1, {"x": None}], schema_version=3),
            {"event_id": "e1", "type": "signup", "user_id": "u1"},
            id="extra-envelope-fields",
        ),
    ],
)
def test_accepted_envelope(message: dict[str, Any], expected: dict[str, Any]) -> None:
    got = accepted(message)
    assert {name: getattr(got, name) for name in expected} == expected


@pytest.mark.parametrize(
    "stage", ["awareness", "consideration", "decision", "retention", "advocacy"]
)
def test_every_journey_stage_is_accepted(stage: str) -> None:
    assert accepted(event(journey_stage=stage)).journey_stage == stage


@pytest.mark.parametrize("type_", sorted(VALID_PROPS))
def test_every_type_is_accepted_with_its_minimal_properties(type_: str) -> None:
    got = accepted(event(type_))
    assert (got.type, got.ts_ms, got.user_id) == (type_, NOW, "u1")


# --- string lengths --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "outcome"),
    [
        pytest.param(event(event_id="x"), "accepted", id="event_id-1"),
        pytest.param(event(event_id="x" * 128), "accepted", id="event_id-128"),
        pytest.param(event(event_id="x" * 129), "out_of_range", id="event_id-129"),
        # lengths count characters, not bytes: 128 "é" are 256 bytes
        pytest.param(event(event_id="é" * 128), "accepted", id="event_id-128-chars"),
        pytest.param(event(user_id="x" * 256), "accepted", id="user_id-256"),
        pytest.param(event(user_id="x" * 257), "out_of_range", id="user_id-257"),
        pytest.param(event(account_id="x" * 256), "accepted", id="account_id-256"),
        pytest.param(event(account_id="x" * 257), "out_of_range", id="account_id-257"),
        pytest.param(event("click", session_id="x" * 256), "accepted", id="session_id-256"),
        pytest.param(event("click", session_id="x" * 257), "out_of_range", id="session_id-257"),
        pytest.param(event("click", session_id=""), "out_of_range", id="session_id-empty"),
        pytest.param(event("page_view", {"page": "x" * 256}), "accepted", id="page-256"),
        pytest.param(event("page_view", {"page": "x" * 257}), "out_of_range", id="page-257"),
        pytest.param(event("page_view", {"referrer": ""}), "out_of_range", id="referrer-0"),
        pytest.param(
            event("subscription_cancelled", {"reason": "x" * 257}), "out_of_range", id="reason"
        ),
        pytest.param(event("nps", {"comment": "x" * 5000}), "accepted", id="nps-comment-5000"),
        pytest.param(event("nps", {"comment": "x" * 5001}), "out_of_range", id="nps-comment-5001"),
        pytest.param(event("csat", {"comment": "x" * 5000}), "accepted", id="csat-comment-5000"),
        pytest.param(
            event("csat", {"comment": "x" * 5001}), "out_of_range", id="csat-comment-5001"
        ),
        pytest.param(event("ces", {"comment": "x" * 5000}), "accepted", id="ces-comment-5000"),
        pytest.param(event("ces", {"comment": "x" * 5001}), "out_of_range", id="ces-comment-5001"),
        # `type` and the dimensions have no length bounds
        pytest.param(event(product="x" * 1000), "accepted", id="product-1000"),
        pytest.param(event(product=""), "accepted", id="product-empty"),
        # session_id: required on page_view and page_leave only
        pytest.param(event("page_view", session_id=DROP), "missing_field", id="view-no-session"),
        pytest.param(event("page_leave", session_id=DROP), "missing_field", id="leave-no-sess"),
        pytest.param(event("click", session_id=DROP), "accepted", id="click-no-session"),
        pytest.param(event("nps", session_id=DROP), "accepted", id="nps-no-session"),
    ],
)
def test_string_bounds(message: dict[str, Any], outcome: str) -> None:
    result = decode_one(message)
    got = "accepted" if isinstance(result, Event) else result.reason
    assert got == outcome


# --- timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "iso", "ms"),
    [
        # (ts, the same instant as datetime.fromisoformat reads it, epoch ms by hand)
        ("2026-11-27T08:00:00.123Z", "2026-11-27T08:00:00.123+00:00", NOW + 123),
        ("2026-11-27T08:00:00Z", "2026-11-27T08:00:00+00:00", NOW),
        ("2026-11-27T13:30:00+05:30", "2026-11-27T13:30:00+05:30", NOW),
        ("2026-11-27T00:00:00-08:00", "2026-11-27T00:00:00-08:00", NOW),
        ("2026-11-27t08:00:00z", "2026-11-27T08:00:00+00:00", NOW),
        ("2026-11-27T08:00:00+00:00", "2026-11-27T08:00:00+00:00", NOW),
        ("2026-11-27T08:00:00-00:00", "2026-11-27T08:00:00+00:00", NOW),
        ("2026-11-27T08:00:00.1Z", "2026-11-27T08:00:00.100+00:00", NOW + 100),
        ("2026-11-27T08:00:00.12Z", "2026-11-27T08:00:00.120+00:00", NOW + 120),
        # truncated to ms, not rounded
        ("2026-11-27T08:00:00.123999999Z", "2026-11-27T08:00:00.123+00:00", NOW + 123),
        ("2026-11-27T08:00:00.999999999Z", "2026-11-27T08:00:00.999+00:00", NOW + 999),
        ("2026-11-27T08:00:00.0009Z", "2026-11-27T08:00:00+00:00", NOW),
        ("2026-11-26T23:05:00-08:55", "2026-11-26T23:05:00-08:55", NOW),
        ("2026-11-28T08:00:00+23:59", "2026-11-28T08:00:00+23:59", NOW + MIN),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00+00:00", 0),
        ("1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999+00:00", -1),
        ("1970-01-01T01:00:00+01:00", "1970-01-01T01:00:00+01:00", 0),
        # leap days: 2024 and 2000 are leap years
        ("2024-02-29T00:00:00Z", "2024-02-29T00:00:00+00:00", 1_709_164_800_000),
        ("2000-02-29T00:00:00Z", "2000-02-29T00:00:00+00:00", 951_782_400_000),
        ("2026-12-31T23:59:59Z", "2026-12-31T23:59:59+00:00", 1_798_761_599_000),
    ],
)
def test_parse_timestamp(text: str, iso: str, ms: int) -> None:
    assert iso_ms(iso) == ms
    assert parse_timestamp(text) == ms
    assert accepted(event(ts=text), now_ms=None).ts_ms == ms




@pytest.mark.parametrize(
    "text",
    [
        "2026-11-27T08:00:00",  # no offset
        "2026-11-27T08:00:00.123",
        "2026-02-30T08:00:00Z",  # no 30 February
        "2026-02-29T08:00:00Z",  # 2026 is not a leap year
        "1900-02-29T08:00:00Z",  # nor 1900
        "2026-04-31T08:00:00Z",
        "2026-11-00T08:00:00Z",
        "2026-00-27T08:00:00Z",
        "2026-13-27T08:00:00Z",
        "2026-11-27T23:59:60Z",  # a leap second
        "2016-12-31T23:59:60Z",  # a real one
        "2026-11-27T24:00:00Z",
        "2026-11-27T08:60:00Z",
        "2026-11-27T08:00:00+24:00",
        "2026-11-27T08:00:00+05:60",
        "2026-11-27T08:00:00+0530",
        "2026-11-27T08:00:00+05",
        "2026-11-27 08:00:00Z",  # space instead of T
        "2026-11-27T08:00Z",  # no seconds
        "2026-11-27T08:00:00.Z",  # empty fraction
        "2026-11-27T08:00:00,123Z",
        "26-11-27T08:00:00Z",
        "2026-11-27",
        "2026-11-27T08:00:00Z ",
        " 2026-11-27T08:00:00Z",
        "2026-11-27T08:00:00Z\n",
        "2026-11-27T08:00:00UTC",
        "1795766400000",  # epoch ms must be a JSON integer, not a string
        "",
        pytest.param("٢٠٢٦-11-27T08:00:00Z", id="arabic-indic-year"),
        pytest.param("2026-11-27T０８:00:00Z", id="fullwidth-hour"),
    ],
)
def test_bad_timestamp(text: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_timestamp(text)
    assert info.value.reason == "bad_timestamp"
    rejection = rejected(event(ts=text), now_ms=None)
    assert rejection.reason == "bad_timestamp"
    assert rejection.error.startswith("ts:")


@pytest.mark.parametrize(
    ("ts", "now_ms", "outcome"),
    [
        # the limit is now + 5 min = 1,795,766,700,000, inclusive
        (NOW + 5 * MIN, NOW, "accepted"),
        (NOW + 5 * MIN + 1, NOW, "future_timestamp"),
        ("2026-11-27T08:05:00Z", NOW, "accepted"),
        ("2026-11-27T08:05:00.000999Z", NOW, "accepted"),  # truncated to 08:05:00.000
        ("2026-11-27T08:05:00.001Z", NOW, "future_timestamp"),
        ("2026-11-27T09:05:00+01:00", NOW, "accepted"),
        ("2026-11-27T09:05:00.001+01:00", NOW, "future_timestamp"),
        (0, NOW, "accepted"),
        (-1, NOW, "accepted"),
        ("1970-01-01T00:00:00Z", NOW, "accepted"),
        # now None skips the future check
        ("9999-12-31T23:59:59.999Z", None, "accepted"),
        (NOW + 365 * 24 * 60 * MIN, None, "accepted"),
        ("9999-12-31T23:59:59.999Z", NOW, "future_timestamp"),
        pytest.param(
            2**64,
            NOW,
            "future_timestamp",
            id="ts-2**64",
        ),
    ],
)
def test_future_limit(ts: str | int, now_ms: int | None, outcome: str) -> None:
    result = decode_one(event(ts=ts), now_ms)
    got = "accepted" if isinstance(result, Event) else result.reason
    assert got == outcome


def test_epoch_ms_integer_is_taken_as_is() -> None:
    assert accepted(event(ts=1_795_766_442_000)).ts_ms == 1_795_766_442_000


# --- dimension normalization -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "normalized"),
    [
        ("Web App", "web_app"),
        ("web_app", "web_app"),
        (" WEB ", "_web_"),
        ("all", "_all"),
        ("ALL", "_all"),
        ("All", "_all"),
        (" all", "_all"),  # " all" -> "_all" by replacement, not by the all rule
        ("_all", "_all"),
        ("alls", "alls"),
        ("", "unknown"),
        ("x" * 100, "x" * 64),
        ("y" * 64, "y" * 64),
        ("Ünïcode", "_n_code"),
        ("web-app.v2", "web-app.v2"),
        ("a/b:c d", "a_b_c_d"),
        ("iOS 17", "ios_17"),
        ("日本", "__"),
        ("unknown", "unknown"),
    ],
)
def test_normalize_dimension(value: str, normalized: str) -> None:
    assert normalize_dimension(value) == normalized
    got = accepted(event(product=value, channel=value, touchpoint=value))
    assert (got.product, got.channel, got.touchpoint) == (normalized,) * 3


@pytest.mark.parametrize("absent", [DROP, None], ids=["missing", "null"])
def test_missing_dimension_is_unknown(absent: Any) -> None:
    got = accepted(event(product=absent, channel=absent, touchpoint=absent))
    assert (got.product, got.channel, got.touchpoint) == ("unknown",) * 3


# --- the dead-letter record ------------------------------------------------------------------


def test_deadletter_record() -> None:
    rejection = Rejection("bad_type", "properties.score: expected an int, got 7.5", 3, "{}")
    record = rejection.deadletter(source_topic="cx.feedback", partition=2, offset=41, at_ms=NOW)
    assert record == {
        "reason": "bad_type",
        "error": "properties.score: expected an int, got 7.5",
        "source_topic": "cx.feedback",
        "partition": 2,
        "offset": 41,
        "index": 3,
        "raw": "{}",
        "at": NOW,
    }
    assert json.loads(json.dumps(record)) == record


def test_deadletter_of_a_single_message_has_null_index() -> None:
    record = rejected(b"null").deadletter(
        source_topic="cx.interactions", partition=0, offset=0, at_ms=NOW
    )
    assert sorted(record) == sorted(
        ["reason", "error", "source_topic", "partition", "offset", "index", "raw", "at"]
    )
    assert (record["reason"], record["index"], record["raw"]) == ("not_an_object", None, "null")


# --- validate_event directly -----------------------------------------------------------------


def test_validate_event_raises_invalid_event_with_reason() -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_event(event("nps", {"score": 7.5}), NOW)
    assert info.value.reason == "bad_type"
    assert info.value.message.startswith("properties.score:")


# --- the SPEC appendix -----------------------------------------------------------------------

APPENDIX = """\
{"event_id": "e1", "type": "page_view", "ts": "2026-11-27T08:00:00.000Z", "user_id": "u1", "session_id": "s1", "product": "Web App", "channel": "web", "properties": {"page": "/pricing"}}
{"event_id": "e2", "type": "page_leave", "ts": 1795766442000, "user_id": "u1", "session_id": "s1", "product": "Web App", "channel": "web", "properties": {"page": "/pricing", "duration_ms": 42000, "scroll_pct": 75}}
{"event_id": "e3", "type": "nps", "ts": "2026-11-27T08:05:00+09:00", "user_id": "u1", "account_id": "acme", "product": "web_app", "touchpoint": "checkout", "properties": {"score": 9, "comment": "fast checkout"}}
{"event_id": "e4", "type": "csat", "ts": "2026-11-27T08:06:00Z", "user_id": "u2", "channel": "chat", "touchpoint": "support", "properties": {"score": 6, "scale": 7}}
{"event_id": "e5", "type": "ces", "ts": "2026-11-27T08:07:00Z", "user_id": "u2", "touchpoint": "support", "properties": {"score": 2}}
{"event_id": "e6", "type": "support_ticket_resolved", "ts": "2026-11-27T08:08:00Z", "user_id": "u2", "properties": {"ticket_id": "T-9", "first_response_ms": 120000, "resolution_ms": 3600000, "contacts": 1}}
[{"event_id": "e7", "type": "feature_used", "ts": "2026-11-27T08:09:00Z", "user_id": "u3", "properties": {"feature": "export"}}, {"event_id": "e8", "type": "signup", "ts": "2026-11-27T08:01:00Z", "user_id": "u3"}]
"""  # noqa: E501

# (event_id, ts_ms, product, channel, touchpoint, props), worked out from NOW = 08:00:00Z:
#   e2: 1,795,766,442,000 is 08:00:42Z as given
#   e3: 08:05+09:00 = 2026-11-26T23:05Z = NOW - 8 h 55 min = NOW - 32,100,000
APPENDIX_EXPECTED = [
    ("e1", NOW, "web_app", "web", "unknown", {"page": "/pricing"}),
    (
        "e2",
        NOW + 42_000,
        "web_app",
        "web",
        "unknown",
        {"page": "/pricing", "duration_ms": 42_000, "scroll_pct": 75},
    ),
    (
        "e3",
        NOW - 32_100_000,
        "web_app",
        "unknown",
        "checkout",
        {"score": 9, "comment": "fast checkout"},
    ),
    ("e4", NOW + 6 * MIN, "unknown", "chat", "support", {"score": 6, "scale": 7}),
    ("e5", NOW + 7 * MIN, "unknown", "unknown", "support", {"score": 2, "scale": 7}),
    (
        "e6",
        NOW + 8 * MIN,
        "unknown",
        "unknown",
        "unknown",
        {
            "ticket_id": "T-9",
            "first_response_ms": 120_000,
            "resolution_ms": 3_600_000,
            "contacts": 1,
        },
    ),
    ("e7", NOW + 9 * MIN, "unknown", "unknown", "unknown", {"feature": "export"}),
    ("e8", NOW + 1 * MIN, "unknown", "unknown", "unknown", {}),
]


@pytest.mark.parametrize("now_ms", [None, NOW + 9 * MIN], ids=["no-now", "now-latest"])
def test_spec_appendix_examples(now_ms: int | None) -> None:
    out = [item for line in APPENDIX.splitlines() for item in decode_message(line.encode(), now_ms)]
    assert all(isinstance(item, Event) for item in out), out
    got = [
        (e.event_id, e.ts_ms, e.product, e.channel, e.touchpoint, e.props)
        for e in out
        if isinstance(e, Event)
    ]
    assert got == APPENDIX_EXPECTED
