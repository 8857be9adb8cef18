"""The predictor's Prometheus metrics, in a registry of their own (one per app instance, so
tests can build several apps in one process). ``/metrics`` serves this registry."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.predictor.http_stats import HttpStats

#: Sub-millisecond to seconds: scoring and HTTP handling.
FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
#: Pipeline latencies: from milliseconds to a few minutes (replays land in +Inf).
PIPELINE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class PredictorMetrics:
    """Every metric the predictor exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        #: http_requests_total, http_request_duration_seconds (plain counts, see http_stats)
        self.http = HttpStats(FAST_BUCKETS, registry=r)
        self.prediction_latency = Histogram(
            "prediction_latency_seconds",
            "XGBoost scoring time per call (scoring only)",
            ["path"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.pipeline_latency = Histogram(
            "pipeline_latency_seconds",
            "From candle close / from ingest to prediction publish",
            ["stage"],
            buckets=PIPELINE_BUCKETS,
            registry=r,
        )
        self.prediction_value = Gauge(
            "model_prediction_value", "Latest predicted RV", ["symbol", "role"], registry=r
        )
        self.model_info = Gauge(
            "model_info", "Loaded models (value 1)", ["name", "version", "role"], registry=r
        )
        self.test_qlike = Gauge(
            "model_test_qlike", "Loaded model's test QLIKE (from training)", ["role"], registry=r
        )
        self.test_rmse = Gauge(
            "model_test_rmse", "Loaded model's test log-RV RMSE", ["role"], registry=r
        )
        self.reload_failures = Counter(
            "model_reload_failures", "Model loads that failed (old model kept)", registry=r
        )
        self.reloads = Counter("model_reloads", "Model swaps", ["role"], registry=r)
        self.vectors = Counter(
            "predictor_vectors", "Feature vectors consumed, by outcome", ["outcome"], registry=r
        )
        self.predictions = Counter(
            "predictor_predictions", "Predictions published", ["role"], registry=r
        )
        self.dead_letters = Counter(
            "predictor_dead_letters", "Vectors sent to the DLQ", ["reason"], registry=r
        )
        self.feature_psi = Gauge("feature_psi", "PSI vs training", ["feature"], registry=r)
        self.feature_drift_threshold = Gauge(
            "feature_drift_threshold",
            "The feature's own PSI limit, calibrated on the training reference",
            ["feature"],
            registry=r,
        )
        self.drift_ratio = Gauge(
            "data_drift_ratio",
            "Share of judged features beyond their own PSI limit or out of range (champion)",
            ["version"],
            registry=r,
        )
        self.feature_ood = Counter(
            "feature_ood", "Values outside the training range", ["feature"], registry=r
        )
        self.live_qlike = Gauge("model_live_qlike", "Rolling live QLIKE", ["role"], registry=r)
        self.live_rmse = Gauge("model_live_rmse", "Rolling live log-RV RMSE", ["role"], registry=r)
        self.interval_coverage = Gauge(
            "model_interval_coverage",
            "Rolling share of resolved predictions with realized RV in [rv_lo, rv_hi]",
            ["role"],
            registry=r,
        )
        self.resolved = Counter(
            "model_resolved_predictions",
            "Predictions joined with realized RV",
            ["role"],
            registry=r,
        )
        self.concept_drift = Counter(
            "model_concept_drift", "ADWIN change detections on the error stream", registry=r
        )


def observe_many(histogram: Any, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for every value (a labelled child, no exemplars), with one
    increment per bucket and one of the sum: a fold's predictions would otherwise walk the
    bucket bounds and take the child's locks once each (a replay's latencies all fall in the
    last buckets). The same bucket counts; the sum is added once, so its last bits may
    differ from adding the values one by one.

    >>> from prometheus_client import CollectorRegistry
    >>> h = Histogram("h", "h", buckets=(1, 2), registry=CollectorRegistry())
    >>> observe_many(h, [0.5, 1.0, 1.5, 7.0])
    >>> [(s.labels.get("le"), s.value) for s in h.collect()[0].samples][:3]
    [('1.0', 2.0), ('2.0', 3.0), ('+Inf', 4.0)]
    """
    if not len(values):
        return
    bounds = histogram._upper_bounds  # prometheus_client's own; +Inf last
    at = np.searchsorted(bounds, values, side="left")  # the first bound >= v, as observe()
    counts = np.bincount(at[at < len(bounds)], minlength=len(bounds))
    buckets = histogram._buckets
    for i in np.flatnonzero(counts).tolist():
        buckets[i].inc(int(counts[i]))
    histogram._sum.inc(math.fsum(values))
