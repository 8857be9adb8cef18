"""Realized volatility and HAR components: hand-computed cases, gaps, exact zeros."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.common.features import featurize_many


def test_rv_is_root_sum_of_squared_log_returns(make_candles):
    out = featurize_many(make_candles([100, 101, 100, 102, 101, 103]))
    r = np.diff(np.log([100, 101, 100, 102, 101, 103]))
    last = out.iloc[-1]
    assert last["rv_5m"] == pytest.approx(math.sqrt((r**2).sum()), rel=1e-12)
    assert last["lrv_5m"] == pytest.approx(math.log(math.sqrt((r**2).sum())), rel=1e-12)
    four = math.sqrt((r[:4] ** 2).sum() * 5 / 4)  # 4 returns of 5 (80 %): rescaled to 5
    assert out.iloc[-2]["rv_5m"] == pytest.approx(four, rel=1e-12)
    assert math.isnan(out.iloc[-3]["rv_5m"])  # 3 of 5: below coverage


def test_coverage_threshold_and_rescaling_over_a_gap(make_candles):
    closes = 100 * np.exp(0.001 * np.arange(20) * (-1) ** np.arange(20))
    out = featurize_many(make_candles(closes, drop=[10]))  # minute 10 missing: 2 returns lost
    row = out[out["time"] == out["time"].max()].iloc[0]
    r = np.diff(np.log(closes))
    present = [k for k in range(5, 20) if k not in (10, 11)]  # returns ending at minutes 5..19
    expected = math.sqrt(sum(r[k - 1] ** 2 for k in present) * 15 / len(present))
    assert row["rv_15m"] == pytest.approx(expected, rel=1e-12)
    at_gap_end = out[out["time"] == out["time"].iloc[0] + 13 * 60].iloc[0]
    assert math.isnan(at_gap_end["rv_5m"])  # returns 9..13: 10 and 11 missing, 3 of 5 < 80 %


def test_zero_return_window_is_exactly_zero(make_candles):
    closes = np.concatenate([100 * np.exp(0.01 * np.sin(np.arange(300))), np.full(80, 123.45)])
    last = featurize_many(make_candles(closes)).iloc[-1]
    for name in ("rv_5m", "rv_15m", "rv_30m", "rv_60m", "har_1h"):
        assert last[name] == 0.0
    assert math.isnan(last["lrv_60m"]) and math.isnan(last["lhar_1h"])  # log(0): undefined
    assert last["rv_240m"] > 0


def test_har_components_are_variance_per_hour(make_candles):
    a = 0.002
    closes = 100 * np.exp(a * (np.arange(1500) % 2))  # returns alternate +a, -a
    last = featurize_many(make_candles(closes)).iloc[-1]
    for name in ("har_1h", "har_4h", "har_24h"):
        assert last[name] == pytest.approx(60 * a * a, rel=1e-12)
    assert last["rv_60m"] ** 2 == pytest.approx(last["har_1h"], rel=1e-12)
    assert last["lhar_4h"] == pytest.approx(math.log(60 * a * a), rel=1e-12)


def test_har_168h_from_hourly_aggregates(make_candles):
    a = 0.001
    minutes = 168 * 60 + 30
    quiet = set(range(2000, 2100))  # a quiet stretch: zero returns inside the week
    steps = np.where([(k in quiet) for k in range(minutes)], 0.0, a * (np.arange(minutes) % 2))
    closes = 100 * np.exp(steps)
    out = featurize_many(make_candles(closes, drop=[5000]))
    last = out.iloc[-1]
    r = np.diff(np.log(closes))
    time_of_last = int(last["time"])
    start = time_of_last - time_of_last % 3600 - 167 * 3600
    times = out["time"].iloc[0] + 60 * np.arange(1, minutes)
    used = (times >= start) & (times != out["time"].iloc[0] + 5000 * 60)
    used &= times != out["time"].iloc[0] + 5001 * 60
    expected = (r[used] ** 2).sum() * 60 / used.sum()
    assert last["har_168h"] == pytest.approx(expected, rel=1e-9)
    assert math.isnan(out.iloc[100]["har_168h"])  # 101 of ~10k minutes: far below coverage
