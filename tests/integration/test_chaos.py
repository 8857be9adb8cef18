"""The short chaos run: kill -9 each service in turn during a real replay, and nothing is lost
or duplicated (the same code as ``make chaos``, on a shorter window); then the same run, mutated
(one candle dropped on its way, one published twice), must fail the check."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import ChaosReport, check_candles, expected_keys, run_chaos
from bench.harness import Record
from services.common.schemas import Candle
from services.common.topics import TICKS_CLEAN, TICKS_DLQ

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_kill_9_each_service_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    records: dict[str, list[Record]] = {}
    report = run_chaos(tmp_path, days=8.2, speed=18_000, train_months=2, keep=records)
    report.print()
    kills = ["ingestor", "validator", "featurizer", "predictor", "ingestor (live polling)"]
    assert report.kills == kills
    assert report.problems == []
    assert report.counts["clean candles"] == report.counts["expected candles (feed file)"]
    assert report.counts["champion predictions"] >= report.counts["warm feature vectors"] > 1000

    btc = expected_keys(tmp_path / "feed.parquet", "BTC")
    live = report.counts["expected candles (feed file)"] - len(btc)
    assert live > 120, "the live phase served two hours of history and a few live minutes"
    expected = btc | {
        (c.symbol, c.time)
        for c in map(Candle.from_bytes, (r.value for r in records[TICKS_CLEAN]))
        if c.symbol == "ETH"
    }
    clean, dlq = records[TICKS_CLEAN], records[TICKS_DLQ]
    middle = len(clean) // 2
    for mutation, mutated in {
        "dropped": clean[:middle] + clean[middle + 1 :],
        "doubled": [*clean, clean[middle]],
    }.items():
        again = ChaosReport()
        check_candles(expected, mutated, dlq, again)
        assert len(again.problems) == 1, f"a {mutation} candle passed the check"
