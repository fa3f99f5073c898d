"""The pure metric engine: no I/O, no clock, no Faust.

The streaming worker and `cxstream replay` drive the same objects, so the offline
and the live numbers cannot disagree. Stage 1 (`PartitionState`) turns one
partition's events into partial bucket aggregates; stage 2 (`MergedStore`) sums
the partitions; `evaluate_scope` rolls buckets into windows and applies the
definitions of `metrics`; `stats` tests a window against its baseline for alerts.
"""

from cxstream.engine.aggregates import COUNTER_NAMES, Bucket, C
from cxstream.engine.dimensions import OTHER, DimensionCap, capped_values
from cxstream.engine.metrics import (
    COUNT_FIELDS,
    METRIC_FIELDS,
    compute_fields,
    feature_usage,
    wilson_interval,
)
from cxstream.engine.partition import DEFAULT_CSAT_THRESHOLDS, Outcome, PartitionState, scopes_of
from cxstream.engine.stats import (
    METRIC_TESTS,
    TESTABLE_FIELDS,
    Comparison,
    MetricTest,
    Sample,
    compare,
    observations,
)
from cxstream.engine.store import (
    ALL_TIME,
    BucketKey,
    BucketStore,
    MergedStore,
    ScopeResult,
    evaluate_scope,
    live_scopes,
    top_list,
)
from cxstream.engine.windows import WINDOWS, Window, bucket_start, cover, window

__all__ = [
    "ALL_TIME",
    "COUNTER_NAMES",
    "COUNT_FIELDS",
    "DEFAULT_CSAT_THRESHOLDS",
    "METRIC_FIELDS",
    "METRIC_TESTS",
    "OTHER",
    "TESTABLE_FIELDS",
    "WINDOWS",
    "Bucket",
    "BucketKey",
    "BucketStore",
    "C",
    "Comparison",
    "DimensionCap",
    "MergedStore",
    "MetricTest",
    "Outcome",
    "PartitionState",
    "Sample",
    "ScopeResult",
    "Window",
    "bucket_start",
    "capped_values",
    "compare",
    "compute_fields",
    "cover",
    "evaluate_scope",
    "feature_usage",
    "live_scopes",
    "observations",
    "scopes_of",
    "top_list",
    "wilson_interval",
    "window",
]
