"""The Grafana dashboards and their provisioning.

- The JSON is what deploy/grafana/build.py builds (no hand edits drift away).
- It survives a round trip through Grafana's typed dashboard models (PyPI
  `grafana-foundation-sdk`, generated from Grafana's schema, with the panel and
  Prometheus query plugins registered): a key the schema does not know, such as
  a misspelt option, would be dropped and fail the test.
- Every PromQL query parses (PyPI `promql-parser`) and names only series the
  worker exports, with labels those series have (the exports are read from the
  worker's own collectors, not from a list written here).
- Units: ratios in `percentunit`, durations in seconds.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import promql_parser
import pytest
import yaml
from deploy_support import DEPLOY, TARGET_LABELS
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from cxstream.sinks.prometheus import GAUGES

GRAFANA = DEPLOY / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
WINDOWS = ["5m", "1h", "24h", "7d", "30d"]
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range"}
PIPELINE_SERIES = {
    "cxstream_events_total",
    "cxstream_events_rejected_total",
    "cxstream_events_duplicate_total",
    "cxstream_alerts_total",
    "cxstream_sink_errors_total",
    "cxstream_event_lag_seconds_bucket",
}

Json = dict[str, Any]


def load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_build", GRAFANA / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(name: str) -> Json:
    board: Json = json.loads((GRAFANA / "dashboards" / name).read_text(encoding="utf-8"))
    return board


def all_panels(board: Json) -> Iterator[Json]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def query_panels(board: Json) -> Iterator[Json]:
    return (p for p in all_panels(board) if p["type"] not in ("row", "text"))


def exprs(board: Json) -> Iterator[tuple[Json, str]]:
    for panel in query_panels(board):
        for target in panel["targets"]:
            yield panel, target["expr"]


def variable_names(board: Json) -> set[str]:
    return {v["name"] for v in board["templating"]["list"]}


def referenced_variables(text: str) -> set[str]:
    return set(re.findall(r"\$\{?(\w+)(?::\w+)?\}?", text))


def substitute(expr: str) -> str:
    """A query as Prometheus receives it, with sample values for the variables."""
    expr = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "1m", expr)
    return re.sub(r"\$\{?(\w+)(?::\w+)?\}?", "all", expr)


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) of every series selector of `expr`."""
    found: list[tuple[str, set[str]]] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            labels = {m.name for m in node.matchers.matchers}
            found.append((node.name, labels))
        return True

    promql_parser.walk(promql_parser.parse(substitute(expr)), visit)
    return found


def grouping_labels(expr: str) -> set[str]:
    labels: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            labels.update(node.modifier.labels)
        return True

    promql_parser.walk(promql_parser.parse(substitute(expr)), visit)
    return labels


@pytest.fixture(params=[f.name for f in DASHBOARD_FILES])
def board(request: pytest.FixtureRequest) -> Json:
    return load(request.param)


def test_both_dashboards_exist() -> None:
    assert [f.name for f in DASHBOARD_FILES] == ["cx-overview.json", "cx-pipeline.json"]


def test_json_is_what_the_builder_builds() -> None:
    built = load_builder().build_all()
    assert sorted(built) == [f.name for f in DASHBOARD_FILES]
    for name, text in built.items():
        on_disk = (GRAFANA / "dashboards" / name).read_text(encoding="utf-8")
        assert on_disk == text, f"{name} is stale: run python deploy/grafana/build.py"


def lost_keys(original: Any, round_trip: Any, path: str = "$") -> list[str]:
    """Paths present in `original` that are missing or different after the round trip."""
    if isinstance(original, dict):
        if not isinstance(round_trip, dict):
            return [f"{path}: became {type(round_trip).__name__}"]
        lost = []
        for key, value in original.items():
            if key not in round_trip:
                lost.append(f"{path}.{key}: not in the schema")
            else:
                lost += lost_keys(value, round_trip[key], f"{path}.{key}")
        return lost
    if isinstance(original, list):
        if not isinstance(round_trip, list) or len(round_trip) != len(original):
            return [f"{path}: list changed"]
        return [
            item
            for i, (a, b) in enumerate(zip(original, round_trip, strict=True))
            for item in lost_keys(a, b, f"{path}[{i}]")
        ]
    return [] if original == round_trip else [f"{path}: {original!r} became {round_trip!r}"]


def test_matches_grafanas_dashboard_schema(board: Json) -> None:
    register_default_plugins()
    typed = Dashboard.from_json(board)
    round_trip = json.loads(json.dumps(typed, cls=JSONEncoder))
    assert lost_keys(board, round_trip) == []


def test_the_schema_check_catches_unknown_keys() -> None:
    register_default_plugins()
    board = load("cx-overview.json")
    panel = next(query_panels(board))
    panel["options"]["reduceOption"] = {}  # misspelt
    panel["targets"][0]["exprr"] = "up"
    round_trip = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
    lost = lost_keys(board, round_trip)
    assert any(path.endswith("reduceOption: not in the schema") for path in lost), lost
    assert any(path.endswith("exprr: not in the schema") for path in lost), lost


def test_required_dashboard_fields(board: Json) -> None:
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"])
    assert board["title"] and isinstance(board["schemaVersion"], int)
    assert board["schemaVersion"] >= 36
    assert isinstance(board["templating"]["list"], list) and board["templating"]["list"]
    ids = [p["id"] for p in all_panels(board)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in all_panels(board):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]
    for panel in query_panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], f"{panel['title']}: no queries"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["expr"].strip()


def test_panels_do_not_overlap(board: Json) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in all_panels(board):
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel.get("title", "")


def test_variables_are_defined(board: Json) -> None:
    defined = variable_names(board)
    datasource = next(v for v in board["templating"]["list"] if v["name"] == "datasource")
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    used: set[str] = set()
    for panel, expr in exprs(board):
        used |= referenced_variables(expr) | referenced_variables(panel["datasource"]["uid"])
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            used |= referenced_variables(variable["query"])
    assert used - BUILTIN_VARIABLES <= defined, used - BUILTIN_VARIABLES - defined


def test_queries_name_only_what_the_worker_exports(
    board: Json, exports: dict[str, frozenset[str]]
) -> None:
    queries = [expr for _, expr in exprs(board)]
    queries += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    for expr in queries:
        label_values = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", expr)
        if label_values:
            expr, wanted = label_values[1], {label_values[2]}
        else:
            wanted = set()
        found = selectors(expr)
        assert found, f"no series in {expr}"
        for name, labels in found:
            assert name in exports, f"{name} is not exported by the worker (in {expr})"
            allowed = exports[name] | TARGET_LABELS
            assert labels | wanted <= allowed, f"{name} has no label {labels - allowed} ({expr})"
        grouped = grouping_labels(expr)
        has = set().union(*(exports[name] for name, _ in found)) | TARGET_LABELS
        assert grouped <= has, f"grouping by {grouped - has}, which no series has ({expr})"


def family(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(f"_seconds{suffix}"):
            return name.removesuffix(suffix)
    return name


def test_units(board: Json) -> None:
    for panel in query_panels(board):
        names = {family(n) for t in panel["targets"] for n, _ in selectors(t["expr"])}
        unit = panel["fieldConfig"]["defaults"]["unit"]
        if any(n.endswith("_ratio") for n in names):
            assert unit == "percentunit", f"{panel['title']}: a ratio in {unit}"
        if any(n.endswith("_seconds") for n in names):
            assert unit == "s", f"{panel['title']}: seconds in {unit}"
        if "share" in panel["title"].lower():
            assert unit == "percentunit", panel["title"]


def test_overview_covers_every_cx_gauge_and_dimension() -> None:
    board = load("cx-overview.json")
    names = {n for _, expr in exprs(board) for n, _ in selectors(expr)}
    assert set(GAUGES) <= names, set(GAUGES) - names
    variables = {v["name"]: v for v in board["templating"]["list"]}
    window = variables["window"]
    assert window["type"] == "custom" and window["query"].split(",") == WINDOWS
    assert [o["value"] for o in window["options"]] == WINDOWS
    for dimension in ("product", "channel", "touchpoint"):
        variable = variables[dimension]
        assert variable["type"] == "query"
        assert re.fullmatch(rf"label_values\(cx_\w+\{{.*\}}, {dimension}\)", variable["query"])
        assert variable["current"]["value"] == "all"
    for panel, expr in exprs(board):
        for name, labels in selectors(expr):
            if name.startswith("cx_"):
                assert {"window", "product", "channel", "touchpoint"} <= labels, (
                    f"{panel['title']}: {name} not pinned to one window and scope"
                )


def test_pipeline_covers_every_pipeline_metric() -> None:
    board = load("cx-pipeline.json")
    names = {n for _, expr in exprs(board) for n, _ in selectors(expr)}
    assert names >= PIPELINE_SERIES, PIPELINE_SERIES - names
    queries = [expr for _, expr in exprs(board)]
    assert any(re.search(r"rate\(cxstream_events_total\{[^}]*\}\[", q) for q in queries)
    assert any(q.startswith("histogram_quantile(0.5,") for q in queries)
    assert any(q.startswith("histogram_quantile(0.99,") for q in queries)


def test_csat_band_is_the_wilson_interval() -> None:
    """The CSAT band's PromQL computes the same bounds as the SPEC's Wilson interval."""
    board = load("cx-overview.json")
    panel = next(p for p in query_panels(board) if p["title"].startswith("CSAT with"))
    bounds = {t["legendFormat"]: t["expr"] for t in panel["targets"]}
    p, n, z = 0.8, 50, 1.96
    expected_center = (p + z * z / (2 * n)) / (1 + z * z / n)
    expected_half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    for legend, sign in (("95% low", -1), ("95% high", 1)):
        expr = bounds[legend]
        expr = re.sub(r"max by \([^)]*\) \(cx_csat_ratio\{[^}]*\}\)", repr(p), expr)
        expr = re.sub(r"max by \([^)]*\) \(cx_csat_responses\{[^}]*\}\)", repr(n), expr)
        value = eval(expr.replace("^", "**"), {"__builtins__": {}, "sqrt": math.sqrt})
        assert value == pytest.approx(expected_center + sign * expected_half)


def test_provisioning() -> None:
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning/datasources/prometheus.yml").read_text(encoding="utf-8")
    )
    assert datasources["apiVersion"] == 1
    [source] = datasources["datasources"]
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert source["isDefault"] is True
    providers = yaml.safe_load(
        (GRAFANA / "provisioning/dashboards/cxstream.yml").read_text(encoding="utf-8")
    )
    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
