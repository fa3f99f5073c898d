"""The Prometheus sink: the `cx_*` gauges of SPEC section 3 and the pipeline metrics."""

from __future__ import annotations

import bisect
import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Final, cast

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from cxstream.sinks import Published

__all__ = ["GAUGES", "BatchHistogram", "PipelineMetrics", "PrometheusSink", "scope_labels"]

GAUGES: Final = {
    "cx_events": "events",
    "cx_active_users": "active_users",
    "cx_nps_score": "nps",
    "cx_nps_responses": "nps_n",
    "cx_csat_ratio": "csat",
    "cx_csat_responses": "csat_n",
    "cx_ces_score": "ces",
    "cx_ces_responses": "ces_n",
    "cx_pageviews": "pageviews",
    "cx_sessions": "sessions",
    "cx_pages_per_session": "pages_per_session",
    "cx_bounce_ratio": "bounce_rate",
    "cx_time_on_page_seconds": "avg_time_on_page_s",
    "cx_scroll_depth_ratio": "scroll_depth",
    "cx_ctr_ratio": "ctr",
    "cx_activation_ratio": "activation_rate",
    "cx_stickiness_ratio": "stickiness",
    "cx_churn_ratio": "churn_rate",
    "cx_active_subscribers": "active_subscribers",
    "cx_first_response_seconds": "avg_first_response_s",
    "cx_resolution_seconds": "avg_resolution_s",
    "cx_task_success_ratio": "task_success_rate",
}
LABELS: Final = ("window", "product", "channel", "touchpoint")
LAG_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 86400)


def scope_labels(scope: str) -> tuple[str, str, str]:
    """(product, channel, touchpoint) label values: the scope's own dimension, else `all`."""
    labels = {"product": "all", "channel": "all", "touchpoint": "all"}
    if scope != "all":
        dimension, _, value = scope.partition("=")
        labels[dimension] = value
    return labels["product"], labels["channel"], labels["touchpoint"]


class BatchHistogram(Collector):
    """A label-less histogram observed a batch of values at a time.

    prometheus_client's `Histogram.observe` takes a lock and walks the buckets in
    Python for every value, about 2.5 µs here; the worker observes the lag of every
    accepted event, so that was a few per cent of its time. This one bins a batch
    with `bisect` and takes the lock once. It exposes the same series as
    prometheus_client's (`_bucket`, `_count`, `_sum`, and `_created` unless
    PROMETHEUS_DISABLE_CREATED_SERIES is set).
    """

    def __init__(
        self, name: str, documentation: str, buckets: Iterable[float], registry: CollectorRegistry
    ) -> None:
        # Named as in prometheus_client's metrics, where tests/deploy looks for series.
        self._name = name
        self._labelnames: tuple[str, ...] = ()
        self._documentation = documentation
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._bounds = tuple(bounds)
        go_string = cast(Callable[[float], str], floatToGoString)  # untyped upstream
        self._les = [go_string(bound) for bound in bounds]  # as prometheus_client writes `le`
        self._counts = [0] * len(bounds)
        self._sum = 0.0
        self._created = time.time()
        disabled = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "false").lower()
        self._with_created = disabled not in ("true", "1", "t")
        self._lock = threading.Lock()  # the metrics server collects from its own thread
        registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        bounds = self._bounds
        find = bisect.bisect_left  # the first bound >= value: Prometheus's `le`
        counts = [0] * len(bounds)
        total = 0.0
        for value in values:
            counts[find(bounds, value)] += 1
            total += value
        with self._lock:
            mine = self._counts
            for i, n in enumerate(counts):
                if n:
                    mine[i] += n
            self._sum += total

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def describe(self) -> Iterator[Metric]:
        yield Metric(self._name, self._documentation, "histogram")

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        metric = Metric(self._name, self._documentation, "histogram")
        cumulative = 0
        for le, n in zip(self._les, counts, strict=True):
            cumulative += n
            metric.add_sample(self._name + "_bucket", {"le": le}, cumulative)
        metric.add_sample(self._name + "_count", {}, cumulative)
        metric.add_sample(self._name + "_sum", {}, total)
        if self._with_created:
            metric.add_sample(self._name + "_created", {}, self._created)
        yield metric


class PipelineMetrics:
    """Per-process pipeline counters; one instance per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "cxstream_events", "Accepted events by type", ["type"], registry=registry
        )
        self.rejected = Counter(
            "cxstream_events_rejected", "Rejected events by reason", ["reason"], registry=registry
        )
        self.duplicates = Counter(
            "cxstream_events_duplicate", "Duplicate events ignored", registry=registry
        )
        self.alerts = Counter(
            "cxstream_alerts", "Alerts fired", ["rule", "severity"], registry=registry
        )
        self.sink_errors = Counter(
            "cxstream_sink_errors", "Failed sink writes", ["sink"], registry=registry
        )
        self.lag = BatchHistogram(
            "cxstream_event_lag_seconds",
            "From event ts to processed",
            buckets=LAG_BUCKETS,
            registry=registry,
        )


class PrometheusSink:
    """Sets the `cx_*` gauges; a field that is absent removes its series."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.gauges = {
            name: Gauge(name, f"cxstream {field}", LABELS, registry=registry)
            for name, field in GAUGES.items()
        }
        self._series: dict[str, set[tuple[str, str, str, str]]] = {}  # scope -> label sets

    async def publish(self, items: list[Published], now_ms: int) -> None:
        for item in items:
            labels = (item.window, *scope_labels(item.scope))
            self._series.setdefault(item.scope, set()).add(labels)
            for name, field in GAUGES.items():
                gauge = self.gauges[name]
                value = item.fields.get(field)
                if value is None:
                    with contextlib.suppress(KeyError):
                        gauge.remove(*labels)
                else:
                    gauge.labels(*labels).set(value)

    async def forget(self, scopes: set[str]) -> None:
        """Remove every series of these scopes (no longer owned, or no longer live)."""
        for scope in scopes:
            for labels in self._series.pop(scope, set()):
                for gauge in self.gauges.values():
                    with contextlib.suppress(KeyError):
                        gauge.remove(*labels)
