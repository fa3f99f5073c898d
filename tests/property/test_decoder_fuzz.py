"""Hostile input for `decode_message`: whatever arrives, only Events and Rejections.

Random bytes, byte-level mutations of valid events and batches, invalid UTF-8,
nesting past the parser's depth limit, strings at and past every size limit,
NaN/Infinity, 1 MiB batches of 10,000 events. Decoding never raises, every
result is an accepted `Event` or a `Rejection` with a SPEC reason, the accounting
(one result per batch element, else one per message) holds, and the memory one
1 MiB message costs stays under a stated bound.
"""

from __future__ import annotations

import base64
import random
import time
import tracemalloc
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxstream.events import (
    MAX_EVENT_BYTES,
    MAX_MESSAGE_BYTES,
    REJECT_REASONS,
    Event,
    Rejection,
    decode_message,
)
from cxstream.generate import generate_events

NOW = 1_795_766_400_000  # 2026-11-27T08:00:00.000Z
KIB = 1024
MIB = 1024 * KIB

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HEAVY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Valid events of every type, as producers send them (messy: normalization work too).
VALID = list(
    generate_events(
        seed=5, start_ms=NOW - 3_600_000, duration_s=3600, rate=0.2, users=40, messy=True
    )
)
VALID_TEXT = [orjson.dumps(e) for e in VALID]


def json_array_length(data: bytes) -> int | None:
    """How many elements `data` has if it is a JSON array the decoder splits, else None."""
    if len(data) > MAX_MESSAGE_BYTES:
        return None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return len(doc) if isinstance(doc, list) else None


def check(data: bytes, now_ms: int | None = NOW) -> list[Event | Rejection]:
    """Decode `data` and check everything SPEC sections 1 and 5 promise about the result."""
    out = decode_message(data, now_ms)
    assert isinstance(out, list)
    n = json_array_length(data)
    if n is None:
        assert len(out) == 1, "a message that is not a batch is one event"
    else:
        assert len(out) == n, "a batch is one result per element"
    for position, item in enumerate(out):
        assert type(item) in (Event, Rejection)
        if isinstance(item, Rejection):
            assert item.reason in REJECT_REASONS
            assert isinstance(item.error, str) and item.error
            assert isinstance(item.raw, str)
            assert item.index == (position if n is not None else None)
            # Its dead letter must fit in a Kafka message (1 MiB by default) whatever was sent.
            record = item.deadletter(source_topic="t", partition=0, offset=0, at_ms=NOW)
            assert len(orjson.dumps(record)) < MAX_MESSAGE_BYTES
        else:
            assert isinstance(item.ts_ms, int)
            assert now_ms is None or item.ts_ms <= now_ms + 5 * 60_000
            assert isinstance(item.user_id, str) and 1 <= len(item.user_id) <= 256
    return out


def reasons(out: list[Event | Rejection]) -> list[str]:
    return [item.reason if isinstance(item, Rejection) else "accepted" for item in out]


# --------------------------------------------------------------------------- random bytes


@FUZZ
@given(st.binary(max_size=4096), st.sampled_from([NOW, None]))
def test_random_bytes(data: bytes, now_ms: int | None) -> None:
    check(data, now_ms)


@HEAVY
@given(
    st.integers(min_value=0, max_value=2**32),
    st.sampled_from(
        [
            MAX_EVENT_BYTES - 1,
            MAX_EVENT_BYTES,
            MAX_EVENT_BYTES + 1,
            MAX_MESSAGE_BYTES,
            MAX_MESSAGE_BYTES + 1,
        ]
    ),
    st.sampled_from([b"", b"[", b"{", b'{"event_id":"', b"\xef\xbb\xbf"]),
)
def test_random_bytes_at_the_size_limits(seed: int, size: int, prefix: bytes) -> None:
    data = (prefix + random.Random(seed).randbytes(size))[:size]
    out = check(data)
    if size > MAX_MESSAGE_BYTES:
        assert reasons(out) == ["too_large"]


# --------------------------------------------------------------------------- mutations


def mutate(data: bytes, rng: random.Random, rounds: int) -> bytes:
    """Byte-level mutations as a fuzzer makes them: flip, insert, delete, duplicate, cut."""
    buf = bytearray(data)
    for _ in range(rounds):
        op = rng.randrange(7)
        at = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(at, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[at:at] = rng.randbytes(rng.randint(1, 4))
        elif op == 2:
            del buf[at : at + rng.randint(1, 8)]
        elif op == 3:
            end = min(len(buf), at + rng.randint(1, 16))
            buf[at:at] = buf[at:end]
        elif op == 4:
            buf[at:at] = rng.choice(
                [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"null", b"[", b"]", b"{", b"}",
                 b'"', b"\\", b",", b":", b"\x00", b"\xff", b"\xed\xa0\x80", b"9" * 30]
            )  # fmt: skip
        elif op == 5:
            del buf[at:]
        else:
            token = rng.choice([b"true", b"-1", b"0.5", b'""', b"[]", b"{}", b'"all"'])
            buf[at:at] = token
    return bytes(buf)


@FUZZ
@given(
    st.integers(min_value=0, max_value=len(VALID) - 1),
    st.integers(min_value=0, max_value=2**32),
    st.integers(min_value=1, max_value=6),
)
def test_mutated_valid_events(pick: int, seed: int, rounds: int) -> None:
    check(mutate(VALID_TEXT[pick], random.Random(seed), rounds))


@FUZZ
@given(
    st.lists(st.integers(min_value=0, max_value=len(VALID) - 1), min_size=1, max_size=30),
    st.integers(min_value=0, max_value=2**32),
    st.integers(min_value=1, max_value=6),
)
def test_mutated_batches(picks: list[int], seed: int, rounds: int) -> None:
    batch = b"[" + b",".join(VALID_TEXT[i] for i in picks) + b"]"
    check(mutate(batch, random.Random(seed), rounds))


@FUZZ
@given(
    st.integers(min_value=0, max_value=len(VALID) - 1),
    st.sampled_from(["event_id", "type", "ts", "user_id", "product", "session_id", "properties"]),
    st.sampled_from(
        [
            None,
            True,
            0,
            -1,
            2**63,
            -(2**63),
            1e300,
            -1e300,
            7.5,
            "",
            "x" * 300,
            [],
            {},
            [[[]]],
            {"a": {"b": {}}},
            "2026-13-45T99:99:99Z",
            "9999-12-31T23:59:59+23:59",
        ]
    ),
)
def test_valid_events_with_a_hostile_field(pick: int, field: str, value: Any) -> None:
    event = dict(VALID[pick])
    event[field] = value
    check(orjson.dumps(event))
    check(orjson.dumps([event, VALID[pick]]))


# --------------------------------------------------------------------------- encodings


INVALID_UTF8 = [
    b"\xff",
    b"\xfe\xff",
    b"\xc0\xaf",  # overlong '/'
    b"\xed\xa0\x80",  # a UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xe2\x82",  # cut short
    b"\x80",  # a lone continuation byte
]


@FUZZ
@given(
    st.integers(min_value=0, max_value=len(VALID) - 1),
    st.sampled_from(INVALID_UTF8),
    st.integers(min_value=0, max_value=10_000),
    st.booleans(),
)
def test_invalid_utf8_is_malformed_json_and_dead_letters_as_base64(
    pick: int, bad: bytes, where: int, batched: bool
) -> None:
    text = VALID_TEXT[pick]
    quote = [i for i, c in enumerate(text) if c == ord('"')]
    at = quote[where % len(quote)] + 1  # inside a string (or right after one)
    data = text[:at] + bad + text[at:]
    if batched:
        data = b"[" + data + b"," + VALID_TEXT[0] + b"]"
    out = check(data)
    assert reasons(out) == ["malformed_json"]
    rejection = out[0]
    assert isinstance(rejection, Rejection)
    assert base64.b64decode(rejection.raw) == data


@pytest.mark.parametrize(
    "token",
    [b"NaN", b"Infinity", b"-Infinity", b"+1", b"1e400", b"-1e400", b"0x10", b"01", b".5", b"1."],
)
@pytest.mark.parametrize("place", ["score", "ts", "element"])
def test_not_json_numbers_are_malformed_json(token: bytes, place: str) -> None:
    event = {
        "event_id": "e1",
        "type": "nps",
        "ts": NOW,
        "user_id": "u1",
        "properties": {"score": 9},
    }
    text = orjson.dumps(event)
    marker = {"score": b'"score":9', "ts": b'"ts":%d' % NOW, "element": b'"user_id":"u1"'}[place]
    key = marker.split(b":")[0]
    data = text.replace(marker, key + b":" + token)
    assert reasons(check(data)) == ["malformed_json"]
    assert reasons(check(b"[" + data + b"]")) == ["malformed_json"]


# --------------------------------------------------------------------------- depth and size


@FUZZ
@given(
    st.integers(min_value=1, max_value=5000),
    st.sampled_from(["array", "object"]),
    st.sampled_from(["message", "element", "property", "field"]),
)
def test_deep_nesting(depth: int, kind: str, place: str) -> None:
    opener, closer = (b"[", b"]") if kind == "array" else (b'{"a":', b"}")
    nested = opener * depth + b"1" + closer * depth
    base = VALID_TEXT[0]
    if place == "message":
        data = nested
    elif place == "element":
        data = b"[" + base + b"," + nested + b"]"
    elif place == "property":
        data = base[:-1] + b',"extra":' + nested + b"}"
    else:
        data = base.replace(b'"event_id":', b'"event_id":' + nested + b',"x":', 1)
    out = check(data)
    if depth > 1100:  # past any JSON parser's depth limit
        assert reasons(out) == ["malformed_json"]


@HEAVY
@given(
    st.sampled_from(
        [
            255,
            256,
            257,
            4999,
            5000,
            5001,
            MAX_EVENT_BYTES - 200,
            MAX_EVENT_BYTES,
            MAX_EVENT_BYTES + 1,
            MAX_MESSAGE_BYTES - 100,
            MAX_MESSAGE_BYTES + 1,
        ]
    ),
    st.sampled_from(
        ["user_id", "event_id", "product", "properties.comment", "properties.page", "unknown_field"]
    ),
    st.sampled_from(["x", "é", "\u2028", "\x00", "😀"]),
    st.booleans(),
)
def test_huge_strings(length: int, field: str, char: str, batched: bool) -> None:
    event = dict(VALID[0])
    value = char * length
    if field.startswith("properties."):
        event["properties"] = {**(event.get("properties") or {}), field.split(".")[1]: value}
    else:
        event[field] = value
    data = orjson.dumps([event, VALID[1]] if batched else event)
    out = check(data)
    size = len(data)
    if size > MAX_MESSAGE_BYTES:
        assert reasons(out) == ["too_large"]
    elif len(orjson.dumps(event)) > MAX_EVENT_BYTES:
        assert reasons(out)[0] == "too_large"


NEVER_VALID: dict[str, list[Any]] = {
    "event_id": [None, 7.5, "", [], {"n": [1, [2]]}],
    "type": [None, 7.5, "", "later"],
    "ts": [None, 7.5, "", [], "later", NOW + 3_600_000],
    "user_id": [None, 7, "", {}],
    "properties": [7.5, [], "x"],
}


def ten_thousand_events(valid: bool = True) -> bytes:
    """A batch of 10,000 events within 1 MiB (valid ones, or every one bad in some way)."""
    rng = random.Random(10_000)
    events: list[bytes] = []
    for i in range(10_000):
        kind = rng.choice(["click", "nps", "signup"])
        props = {"click": {"element": "cta"}, "nps": {"score": rng.randrange(11)}, "signup": {}}
        event: dict[str, Any] = {
            "event_id": f"e{i}",
            "type": kind,
            "ts": NOW - rng.randrange(3_600_000),
            "user_id": f"u{i % 97}",
            "properties": props[kind],
        }
        if not valid:
            broken = rng.choice(sorted(NEVER_VALID))
            event[broken] = rng.choice(NEVER_VALID[broken])
        events.append(orjson.dumps(event))
    data = b"[" + b",".join(events) + b"]"
    assert len(data) <= MAX_MESSAGE_BYTES
    return data


@pytest.mark.parametrize("valid", [True, False])
def test_a_1_mib_batch_of_10k_events(valid: bool) -> None:
    data = ten_thousand_events(valid)
    out = check(data)
    assert len(out) == 10_000
    if valid:
        assert reasons(out) == ["accepted"] * 10_000
        assert [e.event_id for e in out if isinstance(e, Event)] == [f"e{i}" for i in range(10_000)]
    else:
        assert "accepted" not in reasons(out)


@pytest.mark.parametrize(
    "data",
    [
        b"\x01" * (MAX_MESSAGE_BYTES - 16),  # one event of control characters
        b'"' + b"\\" * (MAX_MESSAGE_BYTES // 2 - 2) + b'"',  # a string, not an object
        b"[" + b'"\\u0001",' * (MAX_MESSAGE_BYTES // 10) + b"}",  # a batch that breaks at its end
        orjson.dumps(["\x01" * 80_000, {"event_id": "\x02" * 80_000}]),  # huge elements
        b"\xff" + b"\x01" * (MAX_MESSAGE_BYTES - 16),  # not UTF-8
    ],
    ids=["control", "backslashes", "broken batch", "huge elements", "not utf-8"],
)
def test_dead_letters_of_1_mib_messages_fit_in_a_kafka_message(data: bytes) -> None:
    assert len(data) <= MAX_MESSAGE_BYTES
    assert all(isinstance(item, Rejection) for item in check(data))


# --------------------------------------------------------------------------- memory

# What one message of at most 1 MiB may cost to decode (tracemalloc peak). Each batch
# element is one event of SPEC's accounting, so a 1 MiB batch of half a million
# scalars is half a million rejections: about 130 MiB here, linear in the size and
# capped by the 1 MiB limit. Everything else stays far below.
WORST_CASE_PEAK = 256 * MIB
EVENTS_PEAK = 32 * MIB


def peak_bytes(data: bytes) -> int:
    tracemalloc.start()
    try:
        decode_message(data, NOW)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


HOSTILE_1MIB = {
    "scalars": lambda: b"[" + b",".join([b"0"] * ((MAX_MESSAGE_BYTES - 2) // 2)) + b"]",
    "empty objects": lambda: b"[" + b",".join([b"{}"] * ((MAX_MESSAGE_BYTES - 2) // 3)) + b"]",
    "one huge string": lambda: orjson.dumps(["x" * (MAX_MESSAGE_BYTES - 10)]),
    "nesting": lambda: b"[" * (MAX_MESSAGE_BYTES // 2) + b"]" * (MAX_MESSAGE_BYTES // 2),
    "huge events": lambda: orjson.dumps(
        [{"event_id": f"e{i}", "pad": "x" * (MAX_EVENT_BYTES + 1)} for i in range(15)]
    ),
    "over the limit": lambda: b"[" + b"1," * (MAX_MESSAGE_BYTES // 2) + b"1]",
    "random bytes": lambda: random.Random(1).randbytes(MAX_MESSAGE_BYTES),
}


@pytest.mark.parametrize("shape", sorted(HOSTILE_1MIB))
def test_memory_of_one_hostile_1_mib_message_is_bounded(shape: str) -> None:
    data = HOSTILE_1MIB[shape]()
    assert len(data) <= MAX_MESSAGE_BYTES + 4
    started = time.monotonic()
    peak = peak_bytes(data)
    assert peak < WORST_CASE_PEAK, f"{shape}: {peak / MIB:.1f} MiB"
    assert time.monotonic() - started < 60


def test_memory_of_10k_valid_events_is_small() -> None:
    peak = peak_bytes(ten_thousand_events())
    assert peak < EVENTS_PEAK, f"{peak / MIB:.1f} MiB"
