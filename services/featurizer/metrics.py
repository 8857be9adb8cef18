"""Prometheus metrics of the featurizer (served on ``FEATURIZER_METRICS_PORT``, 9103 by default)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FEATURES_EMITTED = Counter(
    "featurizer_features_emitted_total", "FeatureVectors published", ["symbol"]
)
LATE_CANDLES = Counter(
    "featurizer_late_candles_total", "Out-of-order candles sent to ticks.dlq", ["symbol"]
)
REPLAYED_CANDLES = Counter(
    "featurizer_replayed_candles_total",
    "Identical re-deliveries of already accepted candles (dropped)",
    ["symbol"],
)
BAD_RECORDS = Counter("featurizer_bad_records_total", "Unreadable records sent to ticks.dlq")
PROCESSING_SECONDS = Histogram(
    "featurizer_processing_seconds",
    "Wall time of one micro-batch: features computed, published, acked and committed",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BATCH_CANDLES = Histogram(
    "featurizer_batch_candles",
    "Candles per micro-batch",
    buckets=(1, 10, 100, 500, 1000, 2000, 5000),
)
STATE_SYMBOLS = Gauge("featurizer_state_symbols", "Symbols whose rolling state is held")
STATE_PARTITIONS = Gauge("featurizer_state_partitions", "Partitions whose state is held")
REBUILDS = Counter(
    "featurizer_state_rebuilds_total", "Partition states rebuilt from ticks.clean history"
)
