"""Write the Grafana dashboards of cxstream: `python deploy/grafana/build.py [--check]`.

The dashboards are data, but forty panels written by hand drift apart (a unit
here, a label matcher there), so they are built here from a few helpers and
committed as JSON in `dashboards/`, where Grafana's file provisioning reads
them. Edit this file, run it, commit both; `--check` exits 1 when the JSON on
disk differs from what this file builds (the tests run the same check).

Queries follow the worker's exports (`cxstream/sinks/prometheus.py`, SPEC
section 3):

- `cx_*` gauges carry `window`, `product`, `channel` and `touchpoint`; a scope
  sets its own dimension and `all` in the other two, so the dashboard picks one
  dimension value at a time and leaves the others at `all`.
- Each scope is exported by the one worker that owns it, but for a moment
  during a rebalance two may; `max by (...)` keeps one series per scope.
- Pipeline counters are per process: summed over workers with `rate()`.

Standard library only: no Grafana or Prometheus needed to build.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DASHBOARDS", "build_all", "cx_overview", "cx_pipeline", "main"]

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
WINDOWS = ("5m", "1h", "24h", "7d", "30d")
DIMENSIONS = ("product", "channel", "touchpoint")
SCOPE_LABELS = "product, channel, touchpoint"
RATE = "$__rate_interval"

Json = dict[str, Any]


# --- panels -----------------------------------------------------------------------


class Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping rows."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def take_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def place(self, w: int, h: int) -> Json:
        if self.x + w > 24:
            self.newline()
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def newline(self) -> None:
        self.y += self.row_h
        self.x = 0
        self.row_h = 0


def target(expr: str, legend: str, ref: str) -> Json:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": True,
        "refId": ref,
    }


def targets(queries: Sequence[tuple[str, str]]) -> list[Json]:
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(queries)]


def row(layout: Layout, title: str) -> Json:
    layout.newline()
    panel = {
        "collapsed": False,
        "gridPos": layout.place(24, 1),
        "id": layout.take_id(),
        "panels": [],
        "title": title,
        "type": "row",
    }
    layout.newline()
    return panel


def text(layout: Layout, content: str, w: int = 24, h: int = 3) -> Json:
    return {
        "gridPos": layout.place(w, h),
        "id": layout.take_id(),
        "options": {"content": content, "mode": "markdown"},
        "title": "",
        "transparent": True,
        "type": "text",
    }


def field_defaults(
    unit: str,
    *,
    decimals: int | None = None,
    thresholds: Sequence[tuple[float | None, str]] = ((None, "green"),),
) -> Json:
    defaults: Json = {
        "color": {"mode": "thresholds" if len(thresholds) > 1 else "palette-classic"},
        "thresholds": {
            "mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in thresholds],
        },
        "unit": unit,
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return defaults


def stat(
    layout: Layout,
    title: str,
    queries: Sequence[tuple[str, str]],
    unit: str,
    *,
    description: str = "",
    w: int = 4,
    h: int = 4,
    **defaults: Any,
) -> Json:
    return {
        "datasource": DATASOURCE,
        "description": description,
        "fieldConfig": {"defaults": field_defaults(unit, **defaults), "overrides": []},
        "gridPos": layout.place(w, h),
        "id": layout.take_id(),
        "options": {
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        },
        "targets": targets(queries),
        "title": title,
        "type": "stat",
    }


def timeseries(
    layout: Layout,
    title: str,
    queries: Sequence[tuple[str, str]],
    unit: str,
    *,
    description: str = "",
    w: int = 12,
    h: int = 8,
    overrides: Iterable[Json] = (),
    stacked: bool = False,
    **defaults: Any,
) -> Json:
    field = field_defaults(unit, **defaults)
    field["color"] = {"mode": "palette-classic"}
    field["custom"] = {
        "drawStyle": "line",
        "fillOpacity": 10,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stacked else "none"},
    }
    return {
        "datasource": DATASOURCE,
        "description": description,
        "fieldConfig": {"defaults": field, "overrides": list(overrides)},
        "gridPos": layout.place(w, h),
        "id": layout.take_id(),
        "options": {
            "legend": {
                "calcs": [],
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "none"},
        },
        "targets": targets(queries),
        "title": title,
        "type": "timeseries",
    }


# --- variables --------------------------------------------------------------------


def datasource_variable() -> Json:
    return {
        "current": {},
        "hide": 0,
        "includeAll": False,
        "label": "Prometheus",
        "multi": False,
        "name": "datasource",
        "options": [],
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "type": "datasource",
    }


def window_variable() -> Json:
    options = [{"selected": window == "1h", "text": window, "value": window} for window in WINDOWS]
    return {
        "current": {"selected": True, "text": "1h", "value": "1h"},
        "description": "The rolling window the worker computes (SPEC section 2).",
        "hide": 0,
        "includeAll": False,
        "label": "Window",
        "multi": False,
        "name": "window",
        "options": options,
        "query": ",".join(WINDOWS),
        "type": "custom",
    }


def query_variable(
    name: str, label: str, query: str, *, current: str, description: str, include_all: bool = False
) -> Json:
    variable: Json = {
        "current": {"selected": True, "text": current, "value": current},
        "datasource": DATASOURCE,
        "description": description,
        "hide": 0,
        "includeAll": include_all,
        "label": label,
        "multi": include_all,
        "name": name,
        "options": [],
        "query": query,
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "type": "query",
    }
    if include_all:
        variable["allValue"] = ".*"
        variable["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return variable


def dimension_variable(dimension: str) -> Json:
    others = ", ".join(f'{d}="all"' for d in DIMENSIONS if d != dimension)
    return query_variable(
        dimension,
        dimension.capitalize(),
        f'label_values(cx_events{{window="$window", {others}}}, {dimension})',
        current="all",
        description=(
            f"`all`, or one {dimension}: the scope {dimension}=<value>. Scopes have one "
            "dimension each, so leave the other two at `all`."
        ),
    )


def dashboard(
    uid: str, title: str, description: str, panels: list[Json], variables: list[Json]
) -> Json:
    return {
        # Grafana adds its built-in "Annotations & Alerts" query itself.
        "annotations": {"list": []},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": [
            {
                "asDropdown": False,
                "icon": "external link",
                "includeVars": False,
                "keepTime": True,
                "tags": ["cxstream"],
                "targetBlank": False,
                "title": "cxstream",
                "tooltip": "",
                "type": "dashboards",
                "url": "",
            }
        ],
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["cxstream"],
        "templating": {"list": variables},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# --- CX overview ------------------------------------------------------------------

SCOPE_SELECTOR = (
    'window="$window", product="$product", channel="$channel", touchpoint="$touchpoint"'
)


def cx(metric: str, *, window: str | None = None) -> str:
    """One series: `metric` for the selected window and scope."""
    selector = SCOPE_SELECTOR
    if window is not None:
        selector = selector.replace('window="$window"', f'window="{window}"')
    return f"max by ({SCOPE_LABELS}) ({metric}{{{selector}}})"


def csat_wilson(sign: str) -> str:
    """One bound of the Wilson score interval of CSAT, z = 1.96 (SPEC section 2).

    From the share p and the count n, both exported:
    (p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n).
    """
    p, n = cx("cx_csat_ratio"), cx("cx_csat_responses")
    return (
        f"({p} + 1.9208 / {n} {sign} 1.96 * sqrt({p} * (1 - {p}) / {n} + 0.9604 / {n} ^ 2))"
        f" / (1 + 3.8416 / {n})"
    )


def cx_overview() -> Json:
    lay = Layout()
    panels: list[Json] = [
        text(
            lay,
            "Rolling-window customer-experience metrics from the cxstream worker. **Window** "
            "picks the rolling window (5m … 30d); the time axis shows how that window's value "
            "moved. Pick **one** dimension at a time (scopes are `all`, `product=…`, "
            "`channel=…`, `touchpoint=…`; there are no cross products) and leave the other two "
            "at `all`. A metric with nothing to count (no answers, no sessions) shows no data.",
            h=3,
        ),
        row(lay, "Satisfaction"),
        stat(
            lay,
            "NPS",
            [(cx("cx_nps_score"), "NPS")],
            "none",
            decimals=1,
            thresholds=((None, "red"), (0, "orange"), (30, "green")),
            description="Net Promoter Score: % promoters (9–10) − % detractors (0–6), −100…100.",
        ),
        stat(lay, "NPS responses", [(cx("cx_nps_responses"), "answers")], "short"),
        stat(
            lay,
            "CSAT",
            [(cx("cx_csat_ratio"), "CSAT")],
            "percentunit",
            decimals=1,
            thresholds=((None, "red"), (0.7, "orange"), (0.8, "green")),
            description="Share of satisfied CSAT answers (score ≥ 4 of 5, ≥ 6 of 7, ≥ 8 of 10).",
        ),
        stat(lay, "CSAT responses", [(cx("cx_csat_responses"), "answers")], "short"),
        stat(
            lay,
            "CES (1–7, lower is easier)",
            [(cx("cx_ces_score"), "CES")],
            "none",
            decimals=2,
            thresholds=((None, "green"), (3, "orange"), (4, "red")),
            description="Customer Effort Score: mean answer mapped onto 1–7; 1 = very easy.",
        ),
        stat(lay, "CES responses", [(cx("cx_ces_responses"), "answers")], "short"),
        timeseries(
            lay,
            "NPS",
            [(cx("cx_nps_score"), "NPS"), (cx("cx_nps_responses"), "answers")],
            "none",
            w=8,
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "answers"},
                    "properties": [
                        {"id": "custom.axisPlacement", "value": "right"},
                        {"id": "custom.drawStyle", "value": "bars"},
                        {"id": "custom.fillOpacity", "value": 30},
                        {"id": "unit", "value": "short"},
                    ],
                }
            ],
            description=(
                "NPS of the window and the number of answers behind it. Its 95% interval "
                "(`nps_ci95`) is in the Redis hash cx:metrics:{window}:{scope}; Prometheus "
                "has no gauge for it, and promoter/detractor counts, which it needs, are not "
                "exported either."
            ),
        ),
        timeseries(
            lay,
            "CSAT with its 95% interval",
            [
                (cx("cx_csat_ratio"), "CSAT"),
                (csat_wilson("-"), "95% low"),
                (csat_wilson("+"), "95% high"),
            ],
            "percentunit",
            w=8,
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "95% high"},
                    "properties": [
                        {"id": "custom.fillBelowTo", "value": "95% low"},
                        {"id": "custom.lineWidth", "value": 0},
                        {"id": "custom.fillOpacity", "value": 20},
                    ],
                },
                {
                    "matcher": {"id": "byName", "options": "95% low"},
                    "properties": [{"id": "custom.lineWidth", "value": 0}],
                },
            ],
            description=(
                "The band is the Wilson score interval (z = 1.96) computed from the exported "
                "share and answer count: the same as `csat_ci95_low`/`csat_ci95_high` in Redis."
            ),
        ),
        timeseries(
            lay,
            "CES",
            [(cx("cx_ces_score"), "CES")],
            "none",
            w=8,
            description="Mean effort, 1 (very easy) to 7 (very hard).",
        ),
        row(lay, "Engagement"),
        stat(lay, "Active users", [(cx("cx_active_users"), "users")], "short"),
        stat(lay, "Sessions", [(cx("cx_sessions"), "sessions")], "short"),
        stat(lay, "Page views", [(cx("cx_pageviews"), "page views")], "short"),
        stat(
            lay,
            "Pages per session",
            [(cx("cx_pages_per_session"), "pages/session")],
            "none",
            decimals=2,
        ),
        stat(
            lay,
            "Bounce rate",
            [(cx("cx_bounce_ratio"), "bounce")],
            "percentunit",
            decimals=1,
            description="Share of sessions with exactly one page view.",
        ),
        stat(
            lay,
            "Click-through rate",
            [(cx("cx_ctr_ratio"), "CTR")],
            "percentunit",
            decimals=2,
            description="Clicks / impressions.",
        ),
        timeseries(
            lay,
            "Active users, sessions, events",
            [
                (cx("cx_active_users"), "active users"),
                (cx("cx_sessions"), "sessions"),
                (cx("cx_events"), "events"),
            ],
            "short",
        ),
        timeseries(
            lay,
            "Bounce rate, CTR, scroll depth",
            [
                (cx("cx_bounce_ratio"), "bounce rate"),
                (cx("cx_ctr_ratio"), "CTR"),
                (cx("cx_scroll_depth_ratio"), "scroll depth"),
            ],
            "percentunit",
        ),
        timeseries(
            lay, "Pages per session", [(cx("cx_pages_per_session"), "pages/session")], "none", w=6
        ),
        timeseries(
            lay,
            "Time on page",
            [(cx("cx_time_on_page_seconds"), "time on page")],
            "s",
            w=6,
            description="Mean duration of page_leave events.",
        ),
        timeseries(
            lay,
            "Activation rate",
            [(cx("cx_activation_ratio"), "activation")],
            "percentunit",
            w=6,
            description="Share of sign-ups that used a feature within 7 days.",
        ),
        timeseries(
            lay,
            "Stickiness (24h / 30d active users)",
            [(cx("cx_stickiness_ratio", window="24h"), "stickiness")],
            "percentunit",
            w=6,
            description="Only the 24h window has it, whatever the Window picked above.",
        ),
        row(lay, "Effort"),
        stat(
            lay,
            "Task success",
            [(cx("cx_task_success_ratio"), "task success")],
            "percentunit",
            w=8,
            decimals=1,
            thresholds=((None, "red"), (0.8, "orange"), (0.9, "green")),
        ),
        stat(
            lay,
            "First response",
            [(cx("cx_first_response_seconds"), "first response")],
            "s",
            w=8,
            description="Mean time to the first response of resolved support tickets.",
        ),
        stat(
            lay,
            "Resolution",
            [(cx("cx_resolution_seconds"), "resolution")],
            "s",
            w=8,
            description="Mean time to resolution of resolved support tickets.",
        ),
        timeseries(
            lay,
            "Task success rate",
            [(cx("cx_task_success_ratio"), "task success")],
            "percentunit",
        ),
        timeseries(
            lay,
            "Support response and resolution times",
            [
                (cx("cx_first_response_seconds"), "first response"),
                (cx("cx_resolution_seconds"), "resolution"),
            ],
            "s",
        ),
        row(lay, "Churn"),
        stat(
            lay,
            "Churn rate",
            [(cx("cx_churn_ratio"), "churn")],
            "percentunit",
            w=6,
            decimals=2,
            description="Cancellations in the window / subscribers at its start.",
        ),
        stat(
            lay,
            "Active subscribers",
            [(cx("cx_active_subscribers"), "subscribers")],
            "short",
            w=6,
        ),
        timeseries(lay, "Churn rate", [(cx("cx_churn_ratio"), "churn")], "percentunit", w=6),
        timeseries(
            lay,
            "Active subscribers",
            [(cx("cx_active_subscribers"), "subscribers")],
            "short",
            w=6,
        ),
    ]
    variables = [datasource_variable(), window_variable()]
    variables += [dimension_variable(d) for d in DIMENSIONS]
    return dashboard(
        "cx-overview",
        "CX overview",
        "Satisfaction, engagement, effort and churn from the cxstream worker's cx_* gauges.",
        panels,
        variables,
    )


# --- pipeline ---------------------------------------------------------------------

INSTANCE = 'instance=~"$instance"'


def per_s(metric: str, by: str | None = None) -> str:
    rate = f"rate({metric}{{{INSTANCE}}}[{RATE}])"
    return f"sum by ({by}) ({rate})" if by else f"sum({rate})"


def lag_quantile(q: float) -> str:
    return (
        f"histogram_quantile({q}, sum by (le) "
        f"(rate(cxstream_event_lag_seconds_bucket{{{INSTANCE}}}[{RATE}])))"
    )


def cx_pipeline() -> Json:
    lay = Layout()
    read = (
        f"({per_s('cxstream_events_total')} + {per_s('cxstream_events_rejected_total')}"
        f" + {per_s('cxstream_events_duplicate_total')})"
    )
    panels: list[Json] = [
        row(lay, "Now"),
        stat(lay, "Accepted events/s", [(per_s("cxstream_events_total"), "accepted")], "short"),
        stat(
            lay,
            "Rejected events/s",
            [(per_s("cxstream_events_rejected_total"), "rejected")],
            "short",
            thresholds=((None, "green"), (1, "orange")),
        ),
        stat(
            lay,
            "Rejected share",
            [(f"{per_s('cxstream_events_rejected_total')} / {read}", "rejected")],
            "percentunit",
            decimals=2,
            thresholds=((None, "green"), (0.01, "orange"), (0.05, "red")),
            description="Rejected / (accepted + duplicate + rejected) events read.",
        ),
        stat(
            lay,
            "Duplicates/s",
            [(per_s("cxstream_events_duplicate_total"), "duplicates")],
            "short",
        ),
        stat(
            lay,
            "Event lag p99",
            [(lag_quantile(0.99), "p99")],
            "s",
            thresholds=((None, "green"), (2, "orange"), (60, "red")),
            description="From an event's ts to its processing by stage 1.",
        ),
        stat(
            lay,
            "Workers",
            [(f"count(cxstream_events_duplicate_total{{{INSTANCE}}})", "workers")],
            "short",
            description="Worker processes Prometheus scrapes (each exports its own counters).",
        ),
        row(lay, "Throughput"),
        timeseries(
            lay,
            "Accepted events/s by type",
            [(per_s("cxstream_events_total", "type"), "{{type}}")],
            "short",
            stacked=True,
        ),
        timeseries(
            lay,
            "Rejected events/s by reason",
            [(per_s("cxstream_events_rejected_total", "reason"), "{{reason}}")],
            "short",
            stacked=True,
            description="Every rejected event is also on the dead-letter topic (cx.deadletter).",
        ),
        timeseries(
            lay,
            "Duplicates/s",
            [(per_s("cxstream_events_duplicate_total"), "duplicates")],
            "short",
            w=8,
        ),
        timeseries(
            lay,
            "Accepted events/s by worker",
            [(per_s("cxstream_events_total", "instance"), "{{instance}}")],
            "short",
            w=16,
            description="How evenly the partitions spread the load.",
        ),
        row(lay, "Latency and sinks"),
        timeseries(
            lay,
            "Event lag (event ts to processed)",
            [
                (lag_quantile(0.5), "p50"),
                (lag_quantile(0.9), "p90"),
                (lag_quantile(0.99), "p99"),
            ],
            "s",
            description=(
                "Includes how late producers send: a producer that replays old events "
                "shows up here, not only a slow worker."
            ),
        ),
        timeseries(
            lay,
            "Sink errors/s",
            [(per_s("cxstream_sink_errors_total", "sink"), "{{sink}}")],
            "short",
            description=(
                "Failed writes to Redis (or another sink). The worker retries on the next "
                "tick; the stream never waits for a sink."
            ),
        ),
        row(lay, "Alerts"),
        stat(
            lay,
            "Alerts fired (time range)",
            [(f"sum(increase(cxstream_alerts_total{{{INSTANCE}}}[$__range]))", "fired")],
            "short",
            w=6,
            h=8,
            description="Alert state changes to firing sent to cx.alerts, in the picked range.",
        ),
        timeseries(
            lay,
            "Alerts fired by rule",
            [
                (
                    "sum by (rule, severity) "
                    f"(increase(cxstream_alerts_total{{{INSTANCE}}}[{RATE}]))",
                    "{{rule}} ({{severity}})",
                )
            ],
            "short",
            w=18,
        ),
    ]
    variables = [
        datasource_variable(),
        query_variable(
            "instance",
            "Worker",
            "label_values(cxstream_events_duplicate_total, instance)",
            current="All",
            description="Worker processes (Prometheus scrape targets).",
            include_all=True,
        ),
    ]
    return dashboard(
        "cx-pipeline",
        "cxstream pipeline",
        "Throughput, bad input, duplicates, lag, sink errors and alerts of the cxstream workers.",
        panels,
        variables,
    )


# --- files ------------------------------------------------------------------------

DASHBOARDS = {"cx-overview.json": cx_overview, "cx-pipeline.json": cx_pipeline}


def render(board: Json) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def build_all() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    return {name: render(make()) for name, make in DASHBOARDS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if dashboards/ differs from this file"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, content in build_all().items():
        path = DASHBOARD_DIR / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        stale.append(name)
        if not args.check:
            DASHBOARD_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            print(f"wrote {path}")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run python {Path(__file__).name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
