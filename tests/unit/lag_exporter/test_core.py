"""Lag arithmetic and the exposition of a snapshot."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.lag_exporter.app import LagCollector
from services.lag_exporter.core import build_snapshot, group_lag, partitions_of, true_end


def test_true_end_never_goes_below_the_reported_end() -> None:
    assert true_end(10, 3) == 10
    assert true_end(10, 9) == 10
    assert true_end(10, 40) == 41


def test_lag_is_clamped_and_uncommitted_partitions_count_from_zero() -> None:
    ends = {("t", 0): 5, ("t", 1): 8}
    assert group_lag({("t", 0): 9, ("t", 1): -1001, ("u", 0): 3}, ends) == {
        ("t", 0): 0,
        ("t", 1): 8,
    }


def test_internal_topics_are_not_watched() -> None:
    committed = {"g": {("__consumer_offsets", 0): 1, ("ticks.raw", 1): 2, ("ticks.raw", 0): 0}}
    assert partitions_of(committed) == [("ticks.raw", 0), ("ticks.raw", 1)]


def test_collector_serves_the_snapshot_with_string_partitions() -> None:
    registry, collector = CollectorRegistry(), LagCollector()
    registry.register(collector)
    collector.snapshot = build_snapshot(
        {"featurizer": {("ticks.clean", 0): 10, ("ticks.clean", 1): 3}},
        {("ticks.clean", 0): 12, ("ticks.clean", 1): 3},
        1700000000.0,
    )
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    lags = {s.labels["partition"]: s.value for s in families["kafka_consumergroup_lag"].samples}
    assert lags == {"0": 2.0, "1": 0.0}
    ends = families["kafka_topic_partition_end_offset"].samples
    assert sorted(s.value for s in ends) == [3.0, 12.0]
    stamp = families["kafka_lag_exporter_last_success_timestamp_seconds"].samples[0].value
    assert stamp == 1700000000.0
