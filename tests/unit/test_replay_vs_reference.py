"""`cxstream replay` against the plain reference implementation of SPEC (tests/reference.py).

The reference recomputes every field by brute force from the list of events in a
window; the engine sums buckets. They must agree on every window, scope and field,
the feature ratios, the top lists, and the rejection and duplicate counts.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from cxstream.engine import store
from cxstream.generate import generate_bad_lines, generate_events
from cxstream.replay import replay_lines

from reference import reference_replay

DAY = 86_400_000
NOW = 1_795_766_400_000  # 2026-11-27T08:00:00Z


def traffic(seed: int) -> list[str]:
    """40 days of sparse traffic (old buckets, expiry, all-time subscriptions) + 3 busy hours."""
    sparse = generate_events(
        seed=seed,
        start_ms=NOW - 40 * DAY,
        duration_s=40 * 86_400,
        rate=0.002,
        users=60,
        messy=True,
    )
    busy = generate_events(
        seed=seed + 1,
        start_ms=NOW - 3 * 3_600_000,
        duration_s=3 * 3_600,
        rate=0.25,
        users=60,
        messy=True,
    )
    lines = [json.dumps(e, ensure_ascii=False) for e in [*sparse, *busy]]
    lines += [line for _, line in generate_bad_lines(seed=seed, count=27, now_ms=NOW)]
    # A batch line of three events of one user, and a duplicate of it.
    batch = [
        {
            "event_id": f"b{i}",
            "type": "click",
            "ts": NOW - i * 1000,
            "user_id": "ub",
            "properties": {"element": "cta"},
        }
        for i in range(3)
    ]
    lines += [json.dumps(batch), json.dumps(batch), "", "[]"]
    return lines


def assert_reports_equal(mine: dict[str, Any], ref: dict[str, Any]) -> None:
    assert mine["now"] == ref["now"]
    assert mine["rejected"] == ref["rejected"]
    assert mine["duplicates"] == ref["duplicates"]
    for window, scopes in ref["windows"].items():
        assert set(mine["windows"][window]) == set(scopes), window
        for scope, fields in scopes.items():
            got = mine["windows"][window][scope]
            assert set(got) == set(fields), (window, scope, set(got) ^ set(fields))
            for name, value in fields.items():
                assert math.isclose(got[name], value, rel_tol=1e-9, abs_tol=1e-12), (
                    window,
                    scope,
                    name,
                    got[name],
                    value,
                )
            assert mine["features"][window][scope] == pytest.approx(
                ref["features"][window][scope], rel=1e-9
            )
            for kind in ("pages", "exit_pages", "features"):
                assert mine["top"][window][scope][kind] == ref["top"][window][scope][kind], (
                    window,
                    scope,
                    kind,
                )


@pytest.mark.parametrize("seed", [1, 2])
def test_replay_equals_reference_default_now(seed: int) -> None:
    lines = traffic(seed)
    mine = replay_lines([line.encode() for line in lines]).report
    assert_reports_equal(mine, reference_replay(lines))


@pytest.mark.parametrize("now_ms", [NOW - 90 * 60_000, NOW - 1, NOW + 10 * 60_000])
def test_replay_equals_reference_explicit_now(now_ms: int) -> None:
    lines = traffic(3)
    mine = replay_lines([line.encode() for line in lines], now_ms=now_ms).report
    assert_reports_equal(mine, reference_replay(lines, now_ms))


@pytest.mark.parametrize("now_ms", [None, NOW - 90 * 60_000])
def test_replay_equals_reference_with_buckets_packed_as_often_as_possible(
    monkeypatch: pytest.MonkeyPatch, now_ms: int | None
) -> None:
    # Every bucket, of any age, is packed each time the unpacked ones double: later
    # events unpack what they change, and the report reads packed buckets.
    monkeypatch.setattr(store, "PACK_MIN_BUCKETS", 1)
    monkeypatch.setattr(store, "PACK_AFTER_MS", {w: -DAY for w, _ in store.LEVELS})
    lines = traffic(5)
    mine = replay_lines([line.encode() for line in lines], now_ms=now_ms, pack_buckets=True).report
    assert_reports_equal(mine, reference_replay(lines, now_ms))


def test_replay_equals_reference_with_a_small_cap_and_top_n() -> None:
    lines = traffic(4)
    mine = replay_lines([line.encode() for line in lines], max_dimension_values=2, top_n=3).report
    ref = reference_replay(lines, max_dimension_values=2, top_n=3)
    assert_reports_equal(mine, ref)
    assert any(scope.endswith("=other") for scope in mine["windows"]["30d"])


def test_a_future_event_takes_its_cap_slot_when_accepted() -> None:
    # now = N, cap 1: p1 arrives first (ts N+1, ahead of now, accepted but not yet
    # counted), then p2 (ts N), then p1 again (ts N-1). First come, first served: p1
    # holds the slot, so p2 counts under `other`.
    def click(i: int, product: str, ts: int) -> str:
        return json.dumps(
            {
                "event_id": f"e{i}",
                "type": "click",
                "ts": ts,
                "user_id": "u",
                "product": product,
                "properties": {"element": "x"},
            }
        )

    lines = [click(1, "p1", NOW + 1), click(2, "p2", NOW), click(3, "p1", NOW - 1)]
    mine = replay_lines([line.encode() for line in lines], now_ms=NOW, max_dimension_values=1)
    scopes = {s: f["events"] for s, f in mine.report["windows"]["5m"].items()}
    assert scopes["product=p1"] == 1 and scopes["product=other"] == 1
    assert_reports_equal(mine.report, reference_replay(lines, NOW, max_dimension_values=1))
