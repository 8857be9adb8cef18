"""The quality gate passes real candles and refuses each kind of corruption, by name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer.quality import (
    DataQualityError,
    Gap,
    QualityThresholds,
    check_candles,
    find_gaps,
    profile_html,
)

from .conftest import DAY, DAY0

END = DAY0 + 2 * DAY


def failed(df: pd.DataFrame, **thresholds: float) -> set[str]:
    """Names of the checks that fail on df."""
    report = check_candles(df, QualityThresholds(**thresholds), window_end=END)
    return {c.name for c in report.failures}


def test_real_candles_pass_every_check(candles: pd.DataFrame) -> None:
    report = check_candles(candles, window_end=END).raise_for_failures()
    assert report.rows == 2 * 24 * 60
    assert report.gaps == []
    assert {c.name for c in report.checks} == {
        "schema", "row_count", "nulls", "ranges", "ohlc_consistency", "duplicates",
        "freshness", "coverage",
    }  # fmt: skip
    assert report.stats["time_min"] == DAY0


def test_nulls_from_one_percent_fail_below_pass(candles: pd.DataFrame) -> None:
    k = -(-len(candles) // 100)  # the fewest rows that make 1% (29 of 2,880)
    at_limit = candles.copy()
    at_limit.loc[: k - 1, "close"] = np.nan
    below = candles.copy()
    below.loc[: k - 2, "close"] = np.nan
    assert failed(at_limit) == {"nulls"}
    assert "nulls" not in failed(below)


def test_infinite_values_count_as_nulls(candles: pd.DataFrame) -> None:
    bad = candles.copy()
    bad.loc[: len(bad) // 50, "volumeto"] = np.inf
    assert "nulls" in failed(bad)


def test_ohlc_inconsistency_and_negative_prices_are_named(candles: pd.DataFrame) -> None:
    bad = candles.copy()
    bad.loc[10, "high"] = bad.loc[10, "low"] - 1.0
    bad.loc[20, "low"] = -5.0
    bad.loc[30, "volumefrom"] = -1.0
    assert failed(bad) == {"ohlc_consistency", "ranges"}
    with pytest.raises(DataQualityError, match="ohlc_consistency: 1 rows"):
        check_candles(bad, window_end=END).raise_for_failures()


def test_duplicate_times_fail(candles: pd.DataFrame) -> None:
    doubled = pd.concat([candles, candles.iloc[100:105].assign(close=1.0)], ignore_index=True)
    assert "duplicates" in failed(doubled)


def test_stale_window_fails_freshness(candles: pd.DataFrame) -> None:
    first_day = candles[candles["time"] < DAY0 + DAY]
    assert failed(first_day) == {"freshness"}
    assert failed(first_day, max_staleness_s=DAY + 60) == set()


def test_missing_column_and_text_column_fail_schema(candles: pd.DataFrame) -> None:
    assert failed(candles.drop(columns=["volumeto"])) == {"schema"}
    assert failed(candles.astype({"close": str})) == {"schema"}


def test_gaps_are_reported_and_fail_only_below_coverage(candles: pd.DataFrame) -> None:
    holed = candles.drop(index=range(600, 700))  # 100 missing minutes of 2,880
    report = check_candles(holed, window_end=END)
    assert report.gaps == [Gap(DAY0 + 599 * 60, DAY0 + 700 * 60, 100)]
    assert report.passed
    assert failed(holed, min_coverage=0.99) == {"coverage"}


def test_find_gaps_ignores_order_and_duplicates() -> None:
    assert find_gaps(pd.Series([300, 0, 60, 60, 120])) == [Gap(120, 300, 2)]


def test_too_few_rows_fail(candles: pd.DataFrame) -> None:
    assert "row_count" in failed(candles.tail(10))


def test_profile_names_every_check_and_gap(candles: pd.DataFrame) -> None:
    holed = candles.drop(index=range(600, 700))
    report = check_candles(holed, window_end=END)
    html = profile_html(holed, report, title="BTC window")
    assert "<title>BTC window</title>" in html
    assert all(c.name in html for c in report.checks)
    assert "Gaps (1)" in html and "2024-03-01 09:59:00+00:00" in html
