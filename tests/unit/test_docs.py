"""The reference docs agree with the code.

docs/metrics.md must describe every metric field and Prometheus gauge the engine
and the sinks produce, with the right field behind each gauge; docs/events.md
must list every reject reason, and its examples must behave as documented: the
blocks marked `<!-- valid events -->` decode as accepted events, and every
example input of the reject table yields exactly the reason and error text shown
next to it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from cxstream.engine import METRIC_FIELDS, WINDOWS
from cxstream.events import (
    EVENT_TYPES,
    REJECT_REASONS,
    Event,
    Rejection,
    decode_message,
    normalize_dimension,
    parse_timestamp,
)
from cxstream.sinks.prometheus import GAUGES, PipelineMetrics

DOCS = Path(__file__).resolve().parents[2] / "docs"
METRICS_MD = DOCS / "metrics.md"
EVENTS_MD = DOCS / "events.md"

# The `now` that docs/events.md states for its examples.
NOW = 1_795_768_200_000  # 2026-11-27T08:30:00Z
VALID_MARK = "<!-- valid events -->"


# -- small Markdown readers ----------------------------------------------------------


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The text under `heading` (a whole heading line) up to the next heading of its level."""
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n") + len(heading) + 1
    following = re.search(rf"^{level} ", text[start:], re.M)
    return text[start : start + following.start()] if following else text[start:]


def table_rows(text: str) -> list[list[str]]:
    """Cells of every Markdown table row (header and separator rows excluded)."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not (line.startswith("| ") and line.endswith(" |")):
            continue
        cells = [c.strip() for c in re.split(r"\s\|\s", line[2:-2])]
        if all(set(c) <= set("-: ") for c in cells):
            continue  # the |---|---| separator
        rows.append(cells)
    return rows


def code(cell: str) -> str | None:
    """The content of a cell that is exactly one inline code span, else None."""
    if len(cell) >= 2 and cell[0] == cell[-1] == "`" and "`" not in cell[1:-1]:
        return cell[1:-1]
    return None


def json_blocks(text: str) -> list[tuple[bool, str]]:
    """Every ```json fenced block as (marked as valid events, body)."""
    pattern = re.compile(
        r"^(?:(" + re.escape(VALID_MARK) + r")\n)?```json\n(.*?)^```$", re.M | re.S
    )
    return [(m.group(1) is not None, m.group(2)) for m in pattern.finditer(text)]


def json_documents(body: str) -> list[Any]:
    """A block's JSON: one document, or one per non-blank line (JSON lines)."""
    try:
        return [json.loads(body)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in body.splitlines() if line.strip()]


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )


# -- docs/metrics.md -----------------------------------------------------------------


def field_rows() -> dict[str, str]:
    """Rows of the field tables of docs/metrics.md, by the field in their first cell."""
    rows: dict[str, str] = {}
    for cells in table_rows(section(read(METRICS_MD), "## Fields")):
        name = code(cells[0])
        if name is not None:
            assert name not in rows, f"field {name} has two rows"
            rows[name] = " | ".join(cells)
    return rows


def test_every_metric_field_has_a_row() -> None:
    rows = field_rows()
    missing = [f for f in METRIC_FIELDS if f not in rows]
    assert not missing, f"docs/metrics.md: no table row for {missing}"


def test_no_row_for_a_field_the_engine_does_not_produce() -> None:
    extra = sorted(set(field_rows()) - set(METRIC_FIELDS))
    assert not extra, f"docs/metrics.md documents fields the engine does not have: {extra}"


@pytest.mark.parametrize(("gauge", "field"), sorted(GAUGES.items()))
def test_every_gauge_is_in_the_row_of_its_field(gauge: str, field: str) -> None:
    row = field_rows()[field]
    assert f"`{gauge}`" in row, f"docs/metrics.md: row of {field} should name {gauge}"
    gauge_rows = table_rows(section(read(METRICS_MD), "## Prometheus"))
    assert [f"`{gauge}`", f"`{field}`"] in gauge_rows, f"{gauge} missing from the gauge table"


def test_no_unknown_gauge_is_named() -> None:
    named = set(re.findall(r"\bcx_[a-z_]+\b", read(METRICS_MD)))
    unknown = sorted(named - set(GAUGES))
    assert not unknown, f"docs/metrics.md names gauges that do not exist: {unknown}"


def test_fields_without_a_gauge_say_so() -> None:
    with_gauge = set(GAUGES.values())
    for name, row in field_rows().items():
        if name not in with_gauge:
            assert "`cx_" not in row, f"{name} has no gauge, but its row names one"


def test_pipeline_metrics_are_documented() -> None:
    registry = CollectorRegistry()
    PipelineMetrics(registry)
    text = section(read(METRICS_MD), "### Pipeline metrics")
    for family in registry.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        assert f"`{name}`" in text, f"pipeline metric {name} is not documented"


def test_window_worked_example_matches_the_engine() -> None:
    now = parse_timestamp("2026-11-27T08:30:15Z")
    text = section(read(METRICS_MD), "## Windows")
    starts = {w.name: w.start_ms(now) for w in WINDOWS}
    assert iso_ms(starts["1h"]) == "2026-11-27T07:31:00.000Z"
    assert "**07:31:00.000**" in text
    rows = {code(cells[0]): cells for cells in table_rows(text)}
    for w in WINDOWS:
        assert iso_ms(starts[w.name]) in " ".join(rows[w.name]), (
            f"window {w.name}: its start at 08:30:15 is {iso_ms(starts[w.name])}"
        )


# -- docs/events.md ------------------------------------------------------------------


def reject_rows() -> list[tuple[str, str, str]]:
    """(reason, input cell, error) of each row of the reject-reason table."""
    rows = []
    for cells in table_rows(section(read(EVENTS_MD), "### Reject reasons")):
        reason = code(cells[0])
        if reason is not None and len(cells) == 3:
            error = code(cells[2])
            assert error is not None, f"reject row {cells}: the error must be one code span"
            rows.append((reason, cells[1], error))
    return rows


def test_every_reject_reason_is_documented_with_an_example() -> None:
    text = read(EVENTS_MD)
    documented = {reason for reason, _, _ in reject_rows()}
    for reason in REJECT_REASONS:
        assert f"`{reason}`" in text
        assert reason in documented, f"no example row for {reason}"
    assert documented <= set(REJECT_REASONS)


def test_examples_state_the_now_the_tests_use() -> None:
    assert f"`{NOW}`" in read(EVENTS_MD)
    assert parse_timestamp("2026-11-27T08:30:00Z") == NOW


@pytest.mark.parametrize(
    ("reason", "message", "error"),
    [row for row in reject_rows() if code(row[1]) is not None],
    ids=lambda value: value[:40] if isinstance(value, str) else None,
)
def test_reject_example_gives_the_documented_reason_and_error(
    reason: str, message: str, error: str
) -> None:
    data = code(message)
    assert data is not None
    rejected = [r for r in decode_message(data.encode(), NOW) if isinstance(r, Rejection)]
    assert [(r.reason, r.error) for r in rejected] == [(reason, error)]


def test_valid_examples_decode_as_accepted_events() -> None:
    blocks = [body for valid, body in json_blocks(read(EVENTS_MD)) if valid]
    assert blocks, f"docs/events.md has no block marked {VALID_MARK}"
    types: set[str] = set()
    for body in blocks:
        for line in body.splitlines():
            if not line.strip():
                continue
            decoded = decode_message(line.encode(), NOW)
            assert decoded, f"no event in {line}"
            for item in decoded:
                assert isinstance(item, Event), f"{line}\n-> {item}"
                types.add(item.type)
    missing = sorted(set(EVENT_TYPES) - types)
    assert not missing, f"no valid example of {missing}"


@pytest.mark.parametrize("path", [METRICS_MD, EVENTS_MD], ids=lambda p: p.name)
def test_every_json_block_is_json(path: Path) -> None:
    for _, body in json_blocks(read(path)):
        assert json_documents(body)


def test_dead_letter_examples_have_the_record_fields() -> None:
    keys = set(
        Rejection("bad_type", "e", None, "r").deadletter(
            source_topic="t", partition=0, offset=0, at_ms=0
        )
    )
    text = section(read(EVENTS_MD), "## Dead letters")
    records = [doc for _, body in json_blocks(text) for doc in json_documents(body)]
    assert records
    for record in records:
        assert set(record) == keys
        assert record["reason"] in REJECT_REASONS


def test_dead_letter_example_is_what_the_decoder_produces() -> None:
    text = section(read(EVENTS_MD), "## Dead letters")
    record = next(
        doc
        for _, body in json_blocks(text)
        for doc in json_documents(body)
        if doc["index"] is not None
    )
    batch = [
        {"event_id": "e7", "type": "signup", "ts": "2026-11-27T08:09:00Z", "user_id": "u3"},
        json.loads(record["raw"]),
    ]
    (rejection,) = [
        r for r in decode_message(json.dumps(batch).encode(), NOW) if isinstance(r, Rejection)
    ]
    produced = rejection.deadletter(
        source_topic=record["source_topic"],
        partition=record["partition"],
        offset=record["offset"],
        at_ms=record["at"],
    )
    assert produced == record


def test_normalization_table_matches_normalize_dimension() -> None:
    text = section(read(EVENTS_MD), "## Dimensions: normalization and the cap")
    checked = 0
    for cells in table_rows(text):
        expected = code(cells[1])
        if expected is None:
            continue
        for sent in re.findall(r"`(\"[^`]*\")`", cells[0]):
            assert normalize_dimension(json.loads(sent)) == expected, cells
            checked += 1
    assert checked >= 5
