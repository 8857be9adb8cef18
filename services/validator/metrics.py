"""The validator's Prometheus metrics, on a registry chosen by the caller (tests pass their own)."""

from __future__ import annotations

import collections
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from services.validator.core import Verdict

#: (outcome, reason) pairs exported at 0 before the first such record.
PRESET_SERIES = (
    ("clean", "ok"),
    ("duplicate", "duplicate"),
    ("dead_letter", "revised"),
    ("dead_letter", "late"),
)


class ValidatorMetrics:
    """``validator_records_total{outcome,reason}``, ``validator_batches_total{outcome}``,
    ``validator_gap_minutes_total{symbol}``, ``validator_records_in_total`` and the
    ``validator_processing_seconds`` histogram (one poll: judge and queue the outputs; their acks
    and the commit follow in the background)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.records = Counter(
            "validator_records",
            "Records by outcome (clean, dead_letter, dropped, duplicate) and reason code",
            ["outcome", "reason"],
            registry=registry,
        )
        self.records_in = Counter(
            "validator_records_in",
            "Records received inside RawBatches (conservation: equals validator_records_total)",
            registry=registry,
        )
        self.batches = Counter(
            "validator_batches",
            "ticks.raw messages by outcome (accepted, rejected, malformed)",
            ["outcome"],
            registry=registry,
        )
        self.gap_minutes = Counter(
            "validator_gap_minutes",
            "Minutes of missing candles between consecutive clean candles",
            ["symbol"],
            registry=registry,
        )
        # series the recording rules divide by exist from the start at 0, so a ratio such as
        # volstream:candle_revision_ratio:rate1h reads 0 on a clean stream instead of no data
        for outcome, reason in PRESET_SERIES:
            self.records.labels(outcome, reason)
        self.processing = Histogram(
            "validator_processing_seconds",
            "Time to judge one poll of RawBatches and queue its outputs (acks and commit follow)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )

    def observe(self, verdicts: Iterable[Verdict]) -> None:
        """Count a poll's verdicts: summed first, so each series is updated once per poll."""
        batches: collections.Counter[str] = collections.Counter()
        records: collections.Counter[tuple[str, str]] = collections.Counter()
        gaps: dict[str, float] = {}
        records_in = 0
        for v in verdicts:
            batches[v.outcome] += 1
            records_in += v.records
            records.update(v.counts)
            if v.gaps and v.symbol:
                gaps[v.symbol] = gaps.get(v.symbol, 0.0) + v.gap_minutes
        for outcome, n in batches.items():
            self.batches.labels(outcome).inc(n)
        if records_in:
            self.records_in.inc(records_in)
        for (outcome, reason), n in records.items():
            self.records.labels(outcome, reason).inc(n)
        for symbol, minutes in gaps.items():
            self.gap_minutes.labels(symbol).inc(minutes)
