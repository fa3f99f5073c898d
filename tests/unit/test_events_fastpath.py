"""The typed fast path of `decode_message` agrees with the general path, event by event."""

from __future__ import annotations

import orjson
import pytest

from cxstream.events import MAX_EVENT_BYTES, _decode_general, decode_message
from cxstream.generate import generate_bad_lines, generate_events

NOW = 1_790_000_000_000


def general(data: bytes, now_ms: int | None) -> list[object]:
    is_batch = data.lstrip()[:1] == b"["
    if len(data) > MAX_EVENT_BYTES and not is_batch:
        return decode_message(data, now_ms)  # too large: decided before either path
    return _decode_general(data, now_ms, len(data), is_batch)  # type: ignore[return-value]


def messy_events(n: int) -> list[dict[str, object]]:
    out = []
    for event in generate_events(
        seed=5, start_ms=NOW - 3_600_000, duration_s=3600, rate=n / 3000, users=200, messy=True
    ):
        out.append(event)
        if len(out) >= n:
            break
    return out


def test_generated_events_single_and_batched() -> None:
    events = messy_events(3000)
    for event in events:
        data = orjson.dumps(event)
        assert decode_message(data, NOW) == general(data, NOW)
    for start in range(0, len(events), 400):
        data = orjson.dumps(events[start : start + 400])  # over 64 KiB: sizes are checked
        assert decode_message(data, NOW) == general(data, NOW)


def test_bad_lines_alone_and_inside_batches() -> None:
    good = orjson.dumps(messy_events(50)[0])
    for _, line in generate_bad_lines(3, 40, now_ms=NOW):
        data = line.encode()
        assert decode_message(data, NOW) == general(data, NOW)
        batch = b"[" + good + b"," + data + b"," + good + b"]"
        assert decode_message(batch, NOW) == general(batch, NOW)


BASE = (
    b'{"event_id":"e1","type":"page_leave","ts":1789999990000,"user_id":"u1",'
    b'"session_id":"s1","properties":{"page":"/p","duration_ms":DUR%s}%s}'
)


@pytest.mark.parametrize(
    ("duration", "extra_props", "extra"),
    [
        (b"5", b"", b""),
        (b"5.0", b"", b""),  # an integral float is an int: general path
        (b"5.5", b"", b""),
        (b"-1", b"", b""),
        (b"true", b"", b""),
        (b"18446744073709551615", b"", b""),  # beyond int64
        (b"123456789012345678901234567890", b"", b""),
        (b"5", b',"scroll_pct":100', b""),
        (b"5", b',"scroll_pct":1e2', b""),
        (b"5", b',"scroll_pct":100.5', b""),
        (b"5", b',"scroll_pct":null', b""),
        (b"5", b',"x":1e999', b""),  # orjson refuses infinity, even in an ignored field
        (b"5", b"", b',"sdk":"\xff"'),  # invalid UTF-8 in an ignored field
        (b"5", b"", b',"sdk":"\\ud800"'),
        (b"5", b"", b',"user_id":"u2"'),  # a duplicate key: the last wins
        (b"5", b"", b',"type":"click"'),
        (b"5", b"", b',"product":"Web App","channel":null,"touchpoint":""'),
        (b"5", b"", b',"journey_stage":"decision"'),
        (b"5", b"", b',"journey_stage":"Decision"'),
        (b"5", b"", b',"account_id":""'),
        (b"5", b"", b',"ts":"2026-09-21T13:46:30.123456+05:30"'),
        (b"5", b"", b',"ts":"2026-09-21T13:46:30Z"'),
        (b"5", b"", b',"ts":"2026-02-29T13:46:30Z"'),
        (b"5", b"", b',"ts":1790001000000'),  # more than 5 minutes ahead
        (b"5", b"", b',"session_id":null'),
        (b"5", b"", b',"ev\\u0065nt_id":"e2"'),
        (b"5", b"", b',"nested":' + b"[" * 600 + b"]" * 600),
    ],
)
def test_edge_cases(duration: bytes, extra_props: bytes, extra: bytes) -> None:
    data = BASE.replace(b"DUR", duration) % (extra_props, extra)
    for now in (NOW, None):
        assert decode_message(data, now) == general(data, now)
        batch = b"[" + data + b"]"
        assert decode_message(batch, now) == general(batch, now)


@pytest.mark.parametrize(
    "props",
    [
        b'"type":"csat","properties":{"score":5}',
        b'"type":"csat","properties":{"score":6}',
        b'"type":"csat","properties":{"score":7,"scale":7}',
        b'"type":"csat","properties":{"score":7,"scale":6}',
        b'"type":"ces","properties":{"score":7}',
        b'"type":"ces","properties":{"score":7,"scale":10}',
        b'"type":"nps","properties":{"score":10,"comment":"' + b"x" * 5000 + b'"}',
        b'"type":"nps","properties":{"score":10,"comment":"' + b"x" * 5001 + b'"}',
        b'"type":"nps","properties":{"score":11}',
        b'"type":"signup","properties":{"plan":"pro"}',
        b'"type":"signup","properties":null',
        b'"type":"signup","properties":[]',
        b'"type":"subscription_started","properties":{"mrr":49.5}',
        b'"type":"subscription_started","properties":{"mrr":-1}',
        b'"type":"page_view","session_id":"s","properties":{"page":"' + "é".encode() * 256 + b'"}',
        b'"type":"page_view","session_id":"s","properties":{"page":"' + "é".encode() * 257 + b'"}',
        b'"type":"page_view","properties":{"page":"/"}',
        b'"type":"survey","properties":{}',
    ],
)
def test_types(props: bytes) -> None:
    data = b'{"event_id":"e","ts":1789999990000,"user_id":"u",' + props + b"}"
    assert decode_message(data, NOW) == general(data, NOW)
    batch = b" [" + data + b", 7]"
    assert decode_message(batch, NOW) == general(batch, NOW)
