"""The short chaos run: kill -9 each service in turn during a real replay, and nothing is lost
or duplicated (the same code as ``make chaos``, on a shorter window)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import run_chaos

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_kill_9_each_service_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    report = run_chaos(tmp_path, days=8.2, speed=18_000, train_months=2)
    report.print()
    assert report.kills == ["ingestor", "validator", "featurizer", "predictor"]
    assert report.problems == []
    assert report.counts["clean candles"] == report.counts["raw candles (distinct)"]
    assert report.counts["champion predictions"] >= report.counts["warm feature vectors"] > 1000
