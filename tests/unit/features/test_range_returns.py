"""Parkinson, Garman-Klass and log returns: hand-computed cases and gaps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.common.features import featurize_many


def test_parkinson_constant_range(make_candles):
    closes = np.full(300, 100.0)
    out = featurize_many(make_candles(closes, high=101.0, low=99.0))
    hl2 = math.log(101 / 99) ** 2
    last = out.iloc[-1]
    for w in (15, 60, 240):
        assert last[f"pk_{w}m"] == pytest.approx(math.sqrt(w * hl2 / (4 * math.log(2))), rel=1e-12)
        assert last[f"lpk_{w}m"] == pytest.approx(math.log(last[f"pk_{w}m"]), rel=1e-12)


def test_garman_klass_with_open_close_move(make_candles):
    closes = np.full(100, 100.5)
    out = featurize_many(make_candles(closes, open_=100.0, high=101.0, low=99.0))
    term = 0.5 * math.log(101 / 99) ** 2 - (2 * math.log(2) - 1) * math.log(100.5 / 100) ** 2
    assert out.iloc[-1]["gk_15m"] == pytest.approx(math.sqrt(15 * term), rel=1e-12)
    assert out.iloc[-1]["gk_60m"] == pytest.approx(math.sqrt(60 * term), rel=1e-12)


def test_garman_klass_clipped_at_zero_and_flat_range_is_zero(make_candles):
    closes = np.full(100, 101.0)  # open 100, close 101, no extra range: GK term < 0
    out = featurize_many(make_candles(closes, open_=100.0, high=101.0, low=100.0))
    last = out.iloc[-1]
    assert last["gk_15m"] >= 0.0
    flat = featurize_many(make_candles(np.full(100, 7.0))).iloc[-1]
    assert flat["pk_60m"] == 0.0 and flat["gk_60m"] == 0.0 and math.isnan(flat["lpk_60m"])


def test_range_window_uses_present_candles(make_candles):
    high = np.where(np.arange(40) % 2 == 0, 101.0, 102.0)
    out = featurize_many(make_candles(np.full(40, 100.0), high=high, low=99.0, drop=[35]))
    window = [k for k in range(25, 40) if k != 35]
    terms = [math.log(high[k] / 99) ** 2 / (4 * math.log(2)) for k in window]
    expected = math.sqrt(sum(terms) * 15 / len(terms))
    assert out.iloc[-1]["pk_15m"] == pytest.approx(expected, rel=1e-12)


def test_log_returns_need_both_minutes(make_candles):
    closes = 100 * np.exp(0.001 * np.arange(1500))
    out = featurize_many(make_candles(closes, drop=[1494]))
    last = out.iloc[-1]  # minute 1499
    for lag in (1, 15, 60, 1440):
        assert last[f"ret_{lag}m"] == pytest.approx(0.001 * lag, rel=1e-9)
    assert math.isnan(last["ret_5m"])  # minute 1494 is missing
    assert math.isnan(out.iloc[0]["ret_1m"])  # no earlier candle
