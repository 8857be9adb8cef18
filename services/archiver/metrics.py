"""The archiver's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter

ARCHIVED_CANDLES = Counter(
    "lake_candles_written_total", "Candles written to the Parquet lake", ["symbol"]
)
