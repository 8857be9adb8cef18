"""The one-row path (``features.single``): a live candle per call gives the batch path's values
bit for bit (``==``, not a tolerance), through gaps, flat windows, clock hours, grid trims and a
week of hour aggregates."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from services.common.features import FEATURE_NAMES, OnlineFeatures, featurize_many, online

DAYS = 9
START = 1_733_097_600 + 17 * 60  # off the hour: the grid's hours start mid-stream


def _walk(seed: int) -> pd.DataFrame:
    """Nine days of 1-minute candles: scattered missing minutes in the first five days, a
    gap-free stretch (MACD's linear weights), a 40-minute outage, a 90-minute flat stretch."""
    minutes = DAYS * 1440
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, minutes)))
    flat = slice(7 * 1440 + 100, 7 * 1440 + 190)
    close[flat] = close[flat.start - 1]
    high = close * (1 + rng.uniform(0, 2e-3, minutes))
    low = close * (1 - rng.uniform(0, 2e-3, minutes))
    high[flat], low[flat] = close[flat], close[flat]
    frame = pd.DataFrame(
        {
            "time": START + 60 * np.arange(minutes),
            "open": np.clip(close * (1 + rng.normal(0, 1e-4, minutes)), low, high),
            "high": high,
            "low": low,
            "close": close,
            "volumefrom": 1.0,
            "volumeto": rng.lognormal(10, 1, minutes),
        }
    )
    scattered = rng.choice(5 * 1440, 5 * 1440 // 40, replace=False)
    outage = np.arange(6 * 1440 + 500, 6 * 1440 + 540)
    return frame.drop(index=np.concatenate((scattered, outage))).reset_index(drop=True)


@pytest.mark.parametrize("seed", [3, 4])
def test_one_candle_per_call_equals_the_batch_path_exactly(seed, monkeypatch):
    frame = _walk(seed)
    records = frame.to_dict("records")
    calls = []
    row = online.compute_one
    monkeypatch.setattr(online, "compute_one", lambda *a: calls.append(a[1]) or row(*a))
    state = OnlineFeatures("BTC")
    rows = state.update_many(records[:1500])  # the array kernel; one candle per call after it
    for record in records[1500:]:
        rows += state.update_many([record])
    assert len(calls) > 0.98 * (len(records) - 1500), "the one-row path was not taken"
    batch = featurize_many(frame)
    assert [(r.time, r.warm) for r in rows] == list(zip(batch["time"], batch["warm"], strict=True))
    got = np.array([[np.nan if v is None else v for v in r.features.values()] for r in rows])
    want = batch[list(FEATURE_NAMES)].to_numpy()
    tail = slice(-1440, None)  # the last day: every feature defined, the weekly ones included
    assert np.isfinite(want[tail]).mean(axis=0).min() > 0.9, "equal NaNs would prove nothing"
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    bad = {FEATURE_NAMES[j]: int((~same[:, j]).sum()) for j in np.flatnonzero(~same.all(0))}
    assert not bad, f"features not bit-identical to featurize_many: {bad}"
    flat = next(r for r in rows if r.time == START + (7 * 1440 + 189) * 60)
    assert flat.features["rv_60m"] == 0.0 and flat.features["lrv_60m"] is None
    assert not math.isnan(flat.features["har_168h"])
