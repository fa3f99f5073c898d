"""The worker's batch-observed lag histogram exposes what prometheus_client's would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from cxstream.sinks.prometheus import LAG_BUCKETS, BatchHistogram

# On, just below and just above bounds, zero, and beyond the last bound.
VALUES = [0.0, 0.05, 0.050001, 0.1, 0.2, 1, 1.0, 2.5, 59.9, 60, 3600, 86400, 86400.5, 1e9]


def _exposition(registry: CollectorRegistry) -> list[str]:
    return [
        line
        for line in generate_latest(registry).decode().splitlines()
        if "_created" not in line  # the creation times differ
    ]


def test_same_series_as_prometheus_client_histogram() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("lag_seconds", "From event ts to processed", LAG_BUCKETS, ours)
    reference = Histogram("lag_seconds", "From event ts to processed", buckets=LAG_BUCKETS,
                          registry=theirs)  # fmt: skip
    batch.observe_many(VALUES[:5])
    batch.observe_many([])
    batch.observe_many(VALUES[5:])
    batch.observe(0.3)
    for value in [*VALUES, 0.3]:
        reference.observe(value)
    assert _exposition(ours) == _exposition(theirs)
    assert 'lag_seconds_bucket{le="0.05"} 2.0' in _exposition(ours)


def test_created_series_is_exposed() -> None:
    registry = CollectorRegistry()
    BatchHistogram("lag_seconds", "doc", LAG_BUCKETS, registry)
    text = generate_latest(registry).decode()
    assert "lag_seconds_created" in text
    assert 'lag_seconds_bucket{le="+Inf"} 0.0' in text
