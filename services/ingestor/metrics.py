"""The ingestor's Prometheus metrics (served by ``services.common.metrics.serve_metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

POLLS = Counter(
    "ingestor_polls_total",
    "Live/backfill polls by outcome (ok, empty, skipped)",
    ["symbol", "outcome"],
)
API_ERRORS = Counter(
    "ingestor_api_errors_total", "Failed upstream requests (each try) by kind", ["kind"]
)
PUBLISHED = Counter(
    "ingestor_candles_published_total",
    "Candles published to ticks.raw (acknowledged by the broker)",
    ["symbol", "source"],
)
LAG = Gauge(
    "ingestor_lag_seconds",
    "Now minus the close of the newest published candle",
    ["symbol"],
)
HTTP_LATENCY = Histogram(
    "ingestor_http_request_duration_seconds",
    "Upstream HTTP request latency (each try)",
    ["endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
