"""The event contract: decoding, validation and normalization (SPEC sections 1 and 5).

This is the one place that decides whether an event is accepted and, if not, the
reject reason. Both the streaming worker and `cxstream replay` decode through
`decode_message`, so a message is judged the same way offline and live.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, Union

import msgspec
import orjson

from cxstream.errors import InvalidEvent

__all__ = [
    "DIMENSIONS",
    "EVENT_TYPES",
    "FEEDBACK_TYPES",
    "INTERACTION_TYPES",
    "MAX_EVENT_BYTES",
    "MAX_MESSAGE_BYTES",
    "REJECT_REASONS",
    "Event",
    "Rejection",
    "decode_message",
    "normalize_dimension",
    "parse_timestamp",
    "raw_text",
    "validate_event",
]

MAX_MESSAGE_BYTES: Final = 1024 * 1024
MAX_EVENT_BYTES: Final = 64 * 1024
MAX_RAW_BYTES: Final = 2 * MAX_EVENT_BYTES  # of a whole message kept in its dead letter
FUTURE_TOLERANCE_MS: Final = 5 * 60 * 1000

REJECT_REASONS: Final = (
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

DIMENSIONS: Final = ("product", "channel", "touchpoint")
JOURNEY_STAGES: Final = frozenset(
    {"awareness", "consideration", "decision", "retention", "advocacy"}
)

# A property rule is (name, kind, required, check); `check` returns an error text or None.
_Check = Callable[[Any], str | None]
_Rule = tuple[str, str, bool, _Check | None]


@dataclass(frozen=True, slots=True)
class _IntRange:
    low: int
    high: int | None = None

    def __call__(self, value: Any) -> str | None:
        if value < self.low or (self.high is not None and value > self.high):
            bound = f"from {self.low} to {self.high}" if self.high is not None else f">= {self.low}"
            return f"expected an int {bound}, got {value}"
        return None


@dataclass(frozen=True, slots=True)
class _NumberRange:
    low: float
    high: float | None = None

    def __call__(self, value: Any) -> str | None:
        if value < self.low or (self.high is not None and value > self.high):
            high = self.high
            bound = f"from {self.low:g} to {high:g}" if high is not None else f">= {self.low:g}"
            return f"expected a number {bound}, got {value!r}"
        return None


@dataclass(frozen=True, slots=True)
class _OneOf:
    allowed: tuple[int, ...]

    def __call__(self, value: Any) -> str | None:
        if value not in self.allowed:
            return f"expected one of {', '.join(map(str, self.allowed))}, got {value}"
        return None


def _int_range(low: int, high: int | None = None) -> _Check:
    return _IntRange(low, high)


def _number_range(low: float, high: float | None = None) -> _Check:
    return _NumberRange(low, high)


def _one_of(*allowed: int) -> _Check:
    return _OneOf(allowed)


_PAGE: Final[_Rule] = ("page", "str", True, None)
_COMMENT: Final[_Rule] = ("comment", "comment", False, None)

INTERACTION_TYPES: Final[dict[str, tuple[_Rule, ...]]] = {
    "page_view": (_PAGE, ("referrer", "str", False, None)),
    "page_leave": (
        _PAGE,
        ("duration_ms", "int", True, _int_range(0)),
        ("scroll_pct", "number", False, _number_range(0, 100)),
    ),
    "impression": (("element", "str", True, None),),
    "click": (("element", "str", True, None),),
    "feature_used": (("feature", "str", True, None),),
    "signup": (),
    "subscription_started": (("mrr", "number", False, _number_range(0)),),
    "subscription_cancelled": (("reason", "str", False, None),),
    "support_ticket_opened": (("ticket_id", "str", True, None),),
    "support_ticket_resolved": (
        ("ticket_id", "str", True, None),
        ("first_response_ms", "int", False, _int_range(0)),
        ("resolution_ms", "int", False, _int_range(0)),
        ("contacts", "int", False, _int_range(1)),
    ),
    "task_completed": (
        ("task", "str", True, None),
        ("steps", "int", False, _int_range(1)),
        ("duration_ms", "int", False, _int_range(0)),
    ),
    "task_failed": (("task", "str", True, None),),
}

# CSAT and CES check `score` against `scale` after both are typed (see _validate_scored).
FEEDBACK_TYPES: Final[dict[str, tuple[_Rule, ...]]] = {
    "nps": (("score", "int", True, _int_range(0, 10)), _COMMENT),
    "csat": (
        ("score", "int", True, None),
        ("scale", "int", False, _one_of(5, 7, 10)),
        _COMMENT,
    ),
    "ces": (
        ("score", "int", True, None),
        ("scale", "int", False, _one_of(5, 7)),
        _COMMENT,
    ),
}
DEFAULT_SCALE: Final = {"csat": 5, "ces": 7}

EVENT_TYPES: Final = {**INTERACTION_TYPES, **FEEDBACK_TYPES}
SESSION_TYPES: Final = frozenset({"page_view", "page_leave"})

_RFC3339: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
# What follows `YYYY-MM-DDTHH` in a valid timestamp (see `parse_timestamp`).
_TAIL: Final = re.compile(
    r":([0-5][0-9]):([0-5][0-9])(?:\.([0-9]+))?(?:[Zz]|([+-])([01][0-9]|2[0-3]):([0-5][0-9]))"
)
_HOUR_MS_OF: dict[str, int] = {}  # a valid `YYYY-MM-DDTHH` -> epoch ms of that hour
_HOUR_CACHE_MAX: Final = 4096
_DIM_BAD_CHARS: Final = re.compile(r"[^a-z0-9_.-]")
_DAYS_IN_MONTH: Final = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(slots=True)
class Event:
    """An accepted event: envelope normalized, `ts_ms` in epoch ms, props typed.

    Dimension values are normalized but not yet capped; the cap needs state
    that the engine owns (first come, first served across the deployment).
    """

    event_id: str
    type: str
    ts_ms: int
    user_id: str
    session_id: str | None
    product: str
    channel: str
    touchpoint: str
    props: dict[str, Any]
    account_id: str | None = None
    journey_stage: str | None = None


@dataclass(slots=True)
class Rejection:
    """A rejected event, with everything the dead-letter record needs."""

    reason: str
    error: str
    index: int | None
    raw: str

    def deadletter(
        self, *, source_topic: str, partition: int, offset: int, at_ms: int
    ) -> dict[str, Any]:
        """The dead-letter record of SPEC section 5."""
        return {
            "reason": self.reason,
            "error": self.error,
            "source_topic": source_topic,
            "partition": partition,
            "offset": offset,
            "index": self.index,
            "raw": self.raw,
            "at": at_ms,
        }


def normalize_dimension(value: str) -> str:
    """Lower-case, `[a-z0-9_.-]` only, at most 64 chars; `all` becomes `_all`."""
    text = _DIM_BAD_CHARS.sub("_", value.lower())[:64]
    if not text:
        return "unknown"
    return "_all" if text == "all" else text


def _days_from_civil(year: int, month: int, day: int) -> int:
    # Howard Hinnant's algorithm: days since 1970-01-01 of a proleptic Gregorian date.
    year -= month <= 2
    era = (year if year >= 0 else year - 399) // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_timestamp(text: str) -> int:
    """Epoch milliseconds of an RFC 3339 date-time with offset (fraction truncated to ms).

    Raises InvalidEvent(`bad_timestamp`) for anything else, leap seconds included:
    an event time must map onto one instant of the epoch timeline.

    Timestamps share their date and hour with many others: when the first 13
    characters (`YYYY-MM-DDTHH`) were valid before and the rest is a valid
    `:MM:SS[.fraction]` and offset, the hour's start comes from a cache. That is the
    full pattern of `_RFC3339` with a valid date, hour and offset, so the result is
    the same.
    """
    hour_ms = _HOUR_MS_OF.get(text[:13])
    if hour_ms is not None:
        tail = _TAIL.fullmatch(text, 13)
        if tail is not None:
            return hour_ms + _in_hour_ms(*tail.groups())
    return _parse_timestamp_full(text)


def _in_hour_ms(
    minute: str,
    second: str,
    fraction: str | None,
    sign: str | None,
    off_h: str | None,
    off_m: str | None,
) -> int:
    """From the start of the written hour to the instant: clock time, offset applied.

    The groups of `_TAIL` (or the same of `_RFC3339`), already validated; the
    offset's are None for `Z`.
    """
    ms = (int(minute) * 60 + int(second)) * 1000
    if fraction:
        ms += int((fraction + "000")[:3])  # truncated to ms
    if sign is not None and off_h is not None and off_m is not None:
        offset_ms = (int(off_h) * 60 + int(off_m)) * 60_000
        ms += -offset_ms if sign == "+" else offset_ms
    return ms


def _parse_timestamp_full(text: str) -> int:
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise InvalidEvent(
            "bad_timestamp", f"ts: expected an RFC 3339 date-time with offset, got {text!r}"
        )
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    days_in_month = _DAYS_IN_MONTH[month - 1] if 1 <= month <= 12 else 0
    if month == 2 and (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
        days_in_month = 29
    if match.group(8) is None and (int(match.group(10)) > 23 or int(match.group(11)) > 59):
        days_in_month = 0  # an offset out of range: reported below as an invalid date-time
    if not (1 <= day <= days_in_month and hour <= 23 and minute <= 59 and second <= 59):
        raise InvalidEvent("bad_timestamp", f"ts: not a valid date-time: {text!r}")
    hour_ms = (_days_from_civil(year, month, day) * 24 + hour) * 3_600_000
    if len(_HOUR_MS_OF) >= _HOUR_CACHE_MAX:
        _HOUR_MS_OF.clear()
    _HOUR_MS_OF[text[:13]] = hour_ms  # valid as a whole, so these are its date and hour
    return hour_ms + _in_hour_ms(*match.group(5, 6, 7, 9, 10, 11))


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an int"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _bad_type(field: str, expected: str, value: Any) -> InvalidEvent:
    return InvalidEvent("bad_type", f"{field}: expected {expected}, got {_type_name(value)}")


def _check_str(field: str, value: Any, max_len: int, min_len: int = 1) -> str:
    if not isinstance(value, str):
        raise _bad_type(field, "a string", value)
    if not min_len <= len(value) <= max_len:
        raise InvalidEvent(
            "out_of_range",
            f"{field}: expected a string of {min_len} to {max_len} characters, got {len(value)}",
        )
    return value


def _as_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad_type(field, "an int", value)
    if isinstance(value, float):
        if not value.is_integer():
            raise InvalidEvent("bad_type", f"{field}: expected an int, got {value!r}")
        return int(value)
    return int(value)


def _validate_props(etype: str, props: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind, required, check in EVENT_TYPES[etype]:
        value = props.get(name)
        field = f"properties.{name}"
        if value is None:
            if required:
                raise InvalidEvent("missing_field", f"{field}: required for {etype}")
            continue
        if kind == "str":
            out[name] = _check_str(field, value, 256)
            continue
        if kind == "comment":
            out[name] = _check_str(field, value, 5000)
            continue
        if kind == "int":
            number: int | float = _as_int(field, value)
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _bad_type(field, "a number", value)
            number = value
        if check is not None and (problem := check(number)) is not None:
            raise InvalidEvent("out_of_range", f"{field}: {problem}")
        out[name] = number
    if etype in DEFAULT_SCALE:
        scale = out.setdefault("scale", DEFAULT_SCALE[etype])
        score = out["score"]
        if not 1 <= score <= scale:
            raise InvalidEvent(
                "out_of_range",
                f"properties.score: expected an int from 1 to {scale}, got {score}",
            )
    return out


def validate_event(obj: dict[str, Any], now_ms: int | None) -> Event:
    """Validate one decoded event object; raise InvalidEvent with the first failing stage.

    `now_ms` None skips the future check (replay decides `now` after reading).
    """
    event_id = obj.get("event_id")
    if event_id is None:
        raise InvalidEvent("missing_field", "event_id: required")
    _check_str("event_id", event_id, 128)
    etype = obj.get("type")
    if etype is None:
        raise InvalidEvent("missing_field", "type: required")
    if not isinstance(etype, str):
        raise _bad_type("type", "a string", etype)
    ts = obj.get("ts")
    if ts is None:
        raise InvalidEvent("missing_field", "ts: required")
    if isinstance(ts, float) and ts.is_integer():
        ts = int(ts)  # an integral number is an integer, as `7.0` is in properties
    if isinstance(ts, bool) or not isinstance(ts, str | int):
        raise _bad_type("ts", "an RFC 3339 string or an integer of epoch ms", ts)
    user_id = obj.get("user_id")
    if user_id is None:
        raise InvalidEvent("missing_field", "user_id: required")
    _check_str("user_id", user_id, 256)
    account_id = obj.get("account_id")
    if account_id is not None:
        _check_str("account_id", account_id, 256)
    dims: list[str] = []
    for name in DIMENSIONS:
        value = obj.get(name)
        if value is None:
            dims.append("unknown")
        elif isinstance(value, str):
            dims.append(normalize_dimension(value))
        else:
            raise _bad_type(name, "a string", value)
    stage = obj.get("journey_stage")
    if stage is not None:
        if not isinstance(stage, str):
            raise _bad_type("journey_stage", "a string", stage)
        if stage not in JOURNEY_STAGES:
            raise InvalidEvent(
                "out_of_range",
                "journey_stage: expected one of awareness, consideration, decision, "
                f"retention, advocacy, got {stage[:64]!r}",
            )
    props = obj.get("properties")
    if props is None:
        props = {}
    elif not isinstance(props, dict):
        raise _bad_type("properties", "an object", props)
    if etype not in EVENT_TYPES:
        raise InvalidEvent("unknown_type", f"type: unknown event type {etype[:64]!r}")
    session_id = obj.get("session_id")
    if session_id is None:
        if etype in SESSION_TYPES:
            raise InvalidEvent("missing_field", f"session_id: required for {etype}")
    else:
        _check_str("session_id", session_id, 256)
    typed = _validate_props(etype, props)
    ts_ms = parse_timestamp(ts) if isinstance(ts, str) else ts
    if now_ms is not None and ts_ms > now_ms + FUTURE_TOLERANCE_MS:
        raise InvalidEvent(
            "future_timestamp",
            f"ts: {ts_ms} is more than 5 minutes after now ({now_ms})",
        )
    return Event(
        event_id=event_id,
        type=etype,
        ts_ms=ts_ms,
        user_id=user_id,
        session_id=session_id,
        product=dims[0],
        channel=dims[1],
        touchpoint=dims[2],
        props=typed,
        account_id=account_id,
        journey_stage=stage,
    )


def raw_text(data: bytes) -> str:
    """The message as text for a dead letter: UTF-8 if it is, base64 otherwise."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii")


def _first_char(data: bytes) -> int:
    for byte in data:
        if byte not in b" \t\r\n":
            return byte
    return 0


def decode_message(data: bytes, now_ms: int | None) -> list[Event | Rejection]:
    """Split one Kafka message (an event or a batch) into accepted events and rejections.

    Each element of the result is one event of SPEC section 5's accounting, in
    message order; a message that cannot be split is a single Rejection with
    index None. Never raises for bad input.

    Valid events take a typed fast path (`_fast_event`); anything it does not
    accept outright is judged by the general path, which alone decides rejections.
    """
    size = len(data)
    if size > MAX_MESSAGE_BYTES:
        return [Rejection("too_large", f"message: {size} bytes, limit 1 MiB", None, _clip(data))]
    is_batch = data[:1] == b"[" or (data[:1] in _BLANKS and _first_char(data) == ord("["))
    if not is_batch:
        if size > MAX_EVENT_BYTES:
            return [Rejection("too_large", f"event: {size} bytes, limit 64 KiB", None, _clip(data))]
        try:
            return [_fast_event(_ONE_EVENT.decode(data), now_ms)]
        except Exception:  # not a plainly valid event: the general path decides
            return _decode_general(data, now_ms, size, is_batch)
    try:
        raws = _RAW_LIST.decode(data)
    except Exception:
        return _decode_general(data, now_ms, size, is_batch)
    check_size = size > MAX_EVENT_BYTES
    out: list[Event | Rejection] = []
    doc: list[Any] | None = None
    decode_one = _ONE_EVENT.decode
    for index, raw in enumerate(raws):
        try:
            # Re-serialized compactly, an accepted event is at most a few bytes per
            # number longer than its text here: far enough below the limit is enough.
            if check_size and len(raw) > MAX_EVENT_BYTES - _SIZE_MARGIN:
                raise _NotFast
            out.append(_fast_event(decode_one(raw), now_ms))
        except Exception:
            if doc is None:
                try:
                    whole = orjson.loads(data)
                except orjson.JSONDecodeError:
                    return _decode_general(data, now_ms, size, is_batch)
                if not isinstance(whole, list) or len(whole) != len(raws):
                    return _decode_general(data, now_ms, size, is_batch)
                doc = whole
            out.append(_decode_element(doc[index], index, check_size, now_ms))
    return out


def _decode_general(
    data: bytes, now_ms: int | None, size: int, is_batch: bool
) -> list[Event | Rejection]:
    """Every message the fast path did not take: orjson, then `validate_event`."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return [Rejection("malformed_json", f"message: not JSON: {exc}", None, _clip(data))]
    if isinstance(doc, dict):
        return [_decode_object(doc, now_ms, None, data)]
    if not isinstance(doc, list):
        return [
            Rejection(
                "not_an_object",
                f"message: expected an event object or an array, got {_type_name(doc)}",
                None,
                _clip(data),
            )
        ]
    check_size = size > MAX_EVENT_BYTES
    return [
        _decode_element(element, index, check_size, now_ms) for index, element in enumerate(doc)
    ]


def _decode_element(
    element: Any, index: int, check_size: bool, now_ms: int | None
) -> Event | Rejection:
    text: bytes | None = None
    if check_size:
        # Size is validation stage 1, before shape: measure every element.
        text = element_text(element)
        if len(text) > MAX_EVENT_BYTES:
            return Rejection(
                "too_large",
                f"[{index}]: event of {len(text)} bytes, limit 64 KiB",
                index,
                _clip_text(text),
            )
    if not isinstance(element, dict):
        return Rejection(
            "not_an_object",
            f"[{index}]: expected an event object, got {_type_name(element)}",
            index,
            (text if text is not None else element_text(element)).decode(),
        )
    return _decode_object(element, now_ms, index, text)


# --------------------------------------------------------------------------- fast path
#
# The typed fast path decodes and validates a plainly valid event in one step with
# msgspec Structs built from the rule tables above: one Struct per event type
# (tagged by `type`), unknown fields refused, ints bounded to int64. It only ever
# *accepts*; whatever it does not accept (a fault, but also an unknown extra field,
# `7.0` for an int, a huge int) goes to the general path, so the reject reasons and
# their order are decided in one place. Refusing unknown fields matters: msgspec
# skips an ignored value without the checks orjson applies (UTF-8, infinite
# numbers), so an event is only taken here when every byte of it was typed.

_SIZE_MARGIN: Final = 1024
_BLANKS: Final = (b" ", b"\t", b"\r", b"\n")
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


class _NotFast(Exception):
    """Internal: the fast path declines; the general path decides."""


def _string_type(max_len: int) -> Any:
    return Annotated[str, msgspec.Meta(min_length=1, max_length=max_len)]


def _int_type(check: _Check | None) -> Any:
    if isinstance(check, _OneOf):
        return Literal[check.allowed]
    low, high = _INT64_MIN, _INT64_MAX
    if isinstance(check, _IntRange):
        low = max(low, check.low)
        high = min(high, check.high) if check.high is not None else high
    return Annotated[int, msgspec.Meta(ge=low, le=high)]


def _number_type(check: _Check | None) -> Any:
    low: float | None = None
    high: float | None = None
    if isinstance(check, _NumberRange):
        low, high = check.low, check.high
    int_low = _INT64_MIN if low is None else max(_INT64_MIN, math.ceil(low))
    int_high = _INT64_MAX if high is None else min(_INT64_MAX, math.floor(high))
    return (
        Annotated[int, msgspec.Meta(ge=int_low, le=int_high)]
        | Annotated[float, msgspec.Meta(ge=low, le=high)]
    )


def _property_type(kind: str, check: _Check | None) -> Any:
    if kind == "str":
        return _string_type(256)
    if kind == "comment":
        return _string_type(5000)
    if kind == "int":
        return _int_type(check)
    return _number_type(check)


_STR256: Final[Any] = _string_type(256)
_STAGE: Final[Any] = Literal[tuple(sorted(JOURNEY_STAGES))]


def _build_fast_types() -> tuple[Any, dict[type, tuple[str, tuple[str, ...], int | None]]]:
    classes: list[Any] = []
    info: dict[type, tuple[str, tuple[str, ...], int | None]] = {}
    for etype, rules in EVENT_TYPES.items():
        prop_fields: list[Any] = []
        for name, kind, required, check in rules:
            typ = _property_type(kind, check)
            prop_fields.append((name, typ) if required else (name, typ | None, None))
        props = msgspec.defstruct(
            f"_{etype}_props", prop_fields, kw_only=True, forbid_unknown_fields=True
        )
        any_required = any(rule[2] for rule in rules)
        fields: list[Any] = [
            ("event_id", _string_type(128)),
            ("ts", Annotated[int, msgspec.Meta(ge=_INT64_MIN, le=_INT64_MAX)] | str),
            ("user_id", _STR256),
            ("account_id", _STR256 | None, None),
            (
                ("session_id", _STR256)
                if etype in SESSION_TYPES
                else ("session_id", _STR256 | None, None)
            ),
            ("product", str | None, None),
            ("channel", str | None, None),
            ("touchpoint", str | None, None),
            ("journey_stage", _STAGE | None, None),
            ("properties", props) if any_required else ("properties", props | None, None),
        ]
        cls = msgspec.defstruct(
            f"_{etype}_event",
            fields,
            kw_only=True,
            forbid_unknown_fields=True,
            tag_field="type",
            tag=etype,
        )
        classes.append(cls)
        info[cls] = (etype, tuple(rule[0] for rule in rules), DEFAULT_SCALE.get(etype))
    return Union[tuple(classes)], info  # noqa: UP007 - a runtime union of many classes


_FAST_UNION, _FAST_INFO = _build_fast_types()
_ONE_EVENT: Final = msgspec.json.Decoder(_FAST_UNION)
_RAW_LIST: Final = msgspec.json.Decoder(list[msgspec.Raw])
_NORMALIZED: dict[str, str] = {}
_NORMALIZED_MAX: Final = 4096


def _normalized(value: str | None) -> str:
    if value is None:
        return "unknown"
    text = _NORMALIZED.get(value)
    if text is None:
        text = normalize_dimension(value)
        if len(_NORMALIZED) < _NORMALIZED_MAX:
            _NORMALIZED[value] = text
    return text


def _fast_event(item: Any, now_ms: int | None) -> Event:
    """The Event of a Struct that decoded; raises (any exception) to decline."""
    etype, names, default_scale = _FAST_INFO[item.__class__]
    ts = item.ts
    ts_ms = ts if ts.__class__ is int else parse_timestamp(ts)
    if now_ms is not None and ts_ms > now_ms + FUTURE_TOLERANCE_MS:
        raise _NotFast
    props: dict[str, Any] = {}
    raw_props = item.properties
    if raw_props is not None:
        for name in names:
            value = getattr(raw_props, name)
            if value is not None:
                props[name] = value
    if default_scale is not None:
        scale = props.setdefault("scale", default_scale)
        if not 1 <= props["score"] <= scale:
            raise _NotFast
    return Event(
        item.event_id,
        etype,
        ts_ms,
        item.user_id,
        item.session_id,
        _normalized(item.product),
        _normalized(item.channel),
        _normalized(item.touchpoint),
        props,
        item.account_id,
        item.journey_stage,
    )


def element_text(element: Any) -> bytes:
    """A batch element as its own compact JSON text (its size, and its dead-letter `raw`)."""
    try:
        return orjson.dumps(element)
    except orjson.JSONEncodeError:
        pass  # nested deeper than orjson writes; the standard library goes deeper
    try:
        return json.dumps(element, ensure_ascii=False, separators=(",", ":")).encode()
    except RecursionError:
        return b'"<not shown: nested too deeply>"'


def _decode_object(
    obj: dict[str, Any], now_ms: int | None, index: int | None, text: bytes | None
) -> Event | Rejection:
    try:
        return validate_event(obj, now_ms)
    except InvalidEvent as exc:
        raw = (text if text is not None else element_text(obj)).decode()
        prefix = f"[{index}]." if index is not None else ""
        return Rejection(exc.reason, prefix + exc.message, index, raw)


def _clip(data: bytes) -> str:
    # A dead letter must itself fit in a Kafka message (1 MiB on a default broker):
    # keep the first MAX_RAW_BYTES of a whole message, cut at a character boundary
    # when it is UTF-8. JSON-escaped in the record, text can grow sixfold (a control
    # character becomes `\u0001`), so a whole message of up to 1 MiB would not fit.
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(data[:MAX_RAW_BYTES]).decode("ascii")
    return data[:MAX_RAW_BYTES].decode("utf-8", errors="ignore")


def _clip_text(text: bytes) -> str:
    return text[: 4 * MAX_EVENT_BYTES].decode("utf-8", errors="ignore")
