"""Volume, RSI, MACD and calendar features: hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from services.common.features import featurize_many
from services.common.features.spec import EMA_LOOKBACK


def test_constant_volume(make_candles):
    last = featurize_many(make_candles(np.full(1500, 10.0), volumeto=500.0)).iloc[-1]
    assert last["lqv_60m"] == pytest.approx(math.log1p(60 * 500.0), rel=1e-12)
    assert last["qv_ratio_24h"] == pytest.approx(1.0, rel=1e-12)
    assert math.isnan(last["qv_z_24h"])  # no dispersion: a z-score is undefined


def test_volume_ratio_and_z_score(make_candles):
    volume = np.where(np.arange(1500) >= 1440, 4000.0, 1000.0 + np.arange(1500) % 7)
    out = featurize_many(make_candles(np.full(1500, 10.0), volumeto=volume))
    last = out.iloc[-1]
    day = volume[-1440:]
    assert last["qv_ratio_24h"] == pytest.approx(volume[-60:].sum() / (day.sum() / 24), rel=1e-12)
    logs = np.log1p(day)
    z = (logs[-1] - logs.mean()) / logs.std(ddof=1)
    assert last["qv_z_24h"] == pytest.approx(z, rel=1e-9)


def _wilder_rsi(closes: np.ndarray) -> float:
    gain = loss = 0.0
    for d in np.diff(closes[-EMA_LOOKBACK - 1 :]):
        gain += (max(d, 0.0) - gain) / 14
        loss += (max(-d, 0.0) - loss) / 14
    return 100 * gain / (gain + loss)


def test_rsi_extremes_and_reference(make_candles):
    up = featurize_many(make_candles(np.linspace(100, 200, 400))).iloc[-1]
    down = featurize_many(make_candles(np.linspace(200, 100, 400))).iloc[-1]
    flat = featurize_many(make_candles(np.full(400, 5.0))).iloc[-1]
    assert (up["rsi_14"], down["rsi_14"], flat["rsi_14"]) == (100.0, 0.0, 50.0)
    closes = 100 + np.cumsum(np.sin(np.arange(400) * 0.37) + 0.1)
    last = featurize_many(make_candles(closes)).iloc[-1]
    assert last["rsi_14"] == pytest.approx(_wilder_rsi(closes), rel=1e-12)


def _ema(xs: np.ndarray, period: int) -> np.ndarray:
    alpha, out = 2 / (period + 1), [xs[0]]
    for x in xs[1:]:
        out.append(out[-1] + alpha * (x - out[-1]))
    return np.array(out)


def test_macd_reference_and_flat(make_candles):
    closes = 100 + np.cumsum(np.cos(np.arange(400) * 0.21))
    last = featurize_many(make_candles(closes)).iloc[-1]
    window = closes[-EMA_LOOKBACK:]
    macd = _ema(window, 12) - _ema(window, 26)
    signal = _ema(macd, 9)
    assert last["macd"] == pytest.approx(macd[-1] / closes[-1], rel=1e-9)
    assert last["macd_signal"] == pytest.approx(signal[-1] / closes[-1], rel=1e-9)
    assert last["macd_hist"] == pytest.approx((macd[-1] - signal[-1]) / closes[-1], rel=1e-9)
    flat = featurize_many(make_candles(np.full(400, 3.0))).iloc[-1]
    assert flat["macd"] == 0.0 and flat["macd_hist"] == 0.0


def test_momentum_undefined_below_coverage(make_candles):
    out = featurize_many(make_candles(np.linspace(1, 2, 400), drop=range(100, 200)))
    assert math.isnan(out.iloc[-1]["rsi_14"]) and math.isnan(out.iloc[-1]["macd"])
    assert math.isnan(out.iloc[50]["rsi_14"])  # 51 closes of 300: undefined too


MONDAY = 1_733_097_600  # 2024-12-02 00:00 UTC


def test_calendar(make_candles):
    out = featurize_many(make_candles(np.ones(400), start=MONDAY + 6 * 3600 - 60 * 399))
    last = out.iloc[-1]  # Monday 06:00 UTC: the next hour is centred on 06:30
    assert last["hod_sin"] == pytest.approx(math.sin(2 * math.pi * 6.5 / 24))
    assert last["hod_cos"] == pytest.approx(math.cos(2 * math.pi * 6.5 / 24))
    assert last["dow_sin"] == pytest.approx(0.0, abs=1e-12) and last["dow_cos"] == pytest.approx(
        1.0
    )
    sunday = featurize_many(make_candles(np.ones(2), start=MONDAY - 120)).iloc[0]
    assert sunday["dow_sin"] == pytest.approx(math.sin(2 * math.pi * 6 / 7))
    assert sunday["hod_cos"] == pytest.approx(math.cos(2 * math.pi * (28 / 60) / 24))  # 00:28


@pytest.mark.parametrize(
    ("utc", "weekday", "open_min"),
    [
        ("2024-11-01 13:00", 1.0, 0),  # Friday, EDT (UTC-4): the window's middle is 09:30
        ("2024-11-04 13:00", 1.0, -60),  # Monday after the change to EST (UTC-5): 08:30
        ("2024-11-04 14:00", 1.0, 0),  # the open moved to 14:30 UTC
        ("2024-11-03 14:00", 0.0, 0),  # Sunday: same clock, not a weekday
        ("2024-11-02 03:40", 0.0, -560),  # Friday 23:40 EDT + 30 min is Saturday 00:10
    ],
)
def test_new_york_calendar_follows_daylight_saving(make_candles, utc, weekday, open_min):
    t = int(pd.Timestamp(utc, tz="UTC").timestamp())
    row = featurize_many(make_candles(np.ones(2), start=t - 60)).iloc[-1]
    assert row["ny_weekday"] == weekday and row["ny_open_min"] == open_min
    hour = (9.5 + open_min / 60) % 24
    assert row["nyh_sin"] == pytest.approx(math.sin(2 * math.pi * hour / 24), abs=1e-12)
    assert row["nyh_cos"] == pytest.approx(math.cos(2 * math.pi * hour / 24), abs=1e-12)
