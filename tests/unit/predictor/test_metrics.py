"""Metric updates folded per batch give what per-value updates give."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from services.predictor.metrics import PIPELINE_BUCKETS, observe_many


def samples(h: Histogram) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("le", "")): s.value for s in h.collect()[0].samples}


def test_observe_many_counts_each_value_in_the_bucket_observe_puts_it_in() -> None:
    rng = np.random.default_rng(5)
    values = [*rng.exponential(3.0, 500).tolist(), *PIPELINE_BUCKETS, 0.0, 1e9, 2.5]
    one, many = (
        Histogram("lat", "x", ["stage"], buckets=PIPELINE_BUCKETS, registry=CollectorRegistry())
        for _ in range(2)
    )
    for v in values:
        one.labels("a").observe(v)
    observe_many(many.labels("a"), values[:200])
    observe_many(many.labels("a"), values[200:])
    observe_many(many.labels("a"), [])
    got, want = samples(many), samples(one)
    assert got.keys() == want.keys()
    for key, value in want.items():
        if key[0] == "lat_sum":
            assert got[key] == pytest.approx(value, rel=1e-12)
        elif key[0] != "lat_created":
            assert got[key] == value, key
