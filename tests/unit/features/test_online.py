"""The online path: equal to the batch path whatever the micro-batching, restorable, strict."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from services.common.features import (
    FEATURE_NAMES,
    HISTORY_MINUTES,
    WARMUP_MINUTES,
    FeatureRow,
    OnlineFeatures,
    featurize_many,
)
from services.common.schemas import Candle


def _walk(minutes: int, seed: int = 11, start: int = 1_733_097_600) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, minutes)))
    close[200:280] = close[min(199, minutes - 1)]
    frame = pd.DataFrame(
        {
            "time": start + 60 * np.arange(minutes),
            "open": close * (1 + rng.normal(0, 1e-4, minutes)),
            "high": close * 1.001,
            "low": close * 0.999,
            "close": close,
            "volumefrom": 1.0,
            "volumeto": rng.lognormal(10, 1, minutes),
        }
    )
    gone = set(rng.choice(minutes, minutes // 40, replace=False)) | set(range(1700, 1790))
    gone = {g for g in gone if g < minutes}
    return frame.drop(index=sorted(gone)).reset_index(drop=True)


def _stream(state: OnlineFeatures, frame: pd.DataFrame, sizes: list[int]) -> list[FeatureRow]:
    records, rows, i = frame.to_dict("records"), [], 0
    for k, size in enumerate(sizes * len(records)):
        if i >= len(records):
            break
        rows += state.update_many(records[i : i + size])
        i += size
        assert state.last_time == records[min(i, len(records)) - 1]["time"], k
    return rows


def _assert_equal(rows: list[FeatureRow], batch: pd.DataFrame) -> None:
    assert [r.time for r in rows] == batch["time"].tolist()
    assert [r.warm for r in rows] == batch["warm"].tolist()
    for row, (_, expected) in zip(rows, batch.iterrows(), strict=True):
        for name in FEATURE_NAMES:
            got, want = row.features[name], expected[name]
            assert (got is None and math.isnan(want)) or got == want, (row.time, name)


def test_any_micro_batching_equals_batch():
    frame = _walk(2200)
    batch = featurize_many(frame)
    _assert_equal(_stream(OnlineFeatures("BTC"), frame, [1, 7, 500, 2, 1300, 64]), batch)


def test_zero_return_window_is_exactly_zero_online():
    rows = _stream(OnlineFeatures("BTC"), _walk(300), [41, 7])
    at = next(r for r in rows if r.time == 1_733_097_600 + 279 * 60)
    assert at.features["rv_60m"] == 0.0 and at.features["lrv_60m"] is None


def test_gap_longer_than_every_window_between_batches():
    frame = _walk(4400)
    frame = frame[(frame["time"] < frame["time"][0] + 1500 * 60) | (frame.index > 4100)]
    _assert_equal(_stream(OnlineFeatures("BTC"), frame, [900]), featurize_many(frame))


def test_restore_then_update_equals_an_uninterrupted_run():
    frame = _walk(WARMUP_MINUTES + 400, seed=5)
    full = _stream(OnlineFeatures("BTC"), frame, [1000])
    cut = len(frame) - 300
    last = int(frame["time"].iloc[cut - 1])
    history = frame.iloc[:cut]
    history = history[history["time"] > last - HISTORY_MINUTES * 60]
    restored = OnlineFeatures("BTC")
    restored.restore(history.to_dict("records"))
    assert restored.last_time == last
    tail = restored.update_many(frame.iloc[cut:].to_dict("records"))
    assert all(r.warm for r in tail)
    assert tail == full[cut:]


def test_candles_and_dicts_give_the_same_rows():
    frame = _walk(200)
    objs = [Candle(symbol="BTC", **r) for r in frame.to_dict("records")]
    assert OnlineFeatures("BTC").update_many(objs) == OnlineFeatures("BTC").update_many(
        frame.to_dict("records")
    )


def test_rejects_late_duplicate_or_unaligned_candles_without_changing_state():
    state = OnlineFeatures("BTC")
    records = _walk(50).to_dict("records")
    state.update_many(records[:20])
    for bad in (records[19:21], records[5:6], [{**records[20], "time": records[20]["time"] + 1}]):
        with pytest.raises(ValueError):
            state.update_many(bad)
        assert state.last_time == records[19]["time"]
    assert state.update_many([]) == []
    assert [r.time for r in state.update_many(records[20:])] == [r["time"] for r in records[20:]]


def _table(rows: list[FeatureRow]) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in r.features.values()] for r in rows])


@pytest.mark.parametrize("seed", [1, 2])
def test_random_splits_equal_one_call(seed):
    """The incremental grid (appends, hour restarts, moves, a gap longer than every window, a
    week of hour aggregates) gives every row the value one call over the same candles gives,
    whatever the splits; a stretch of single candles crosses several clock hours."""
    frame = _walk(9 * 1440, seed=seed)
    frame = frame[(frame.index < 3000) | (frame.index >= 4500)]  # 25 h: longer than any window
    records = frame.to_dict("records")
    whole = OnlineFeatures("BTC").update_many(records)
    rng = np.random.default_rng(seed)
    state, parts, i = OnlineFeatures("BTC"), [], 0
    while i < len(records):
        size = 1 if 9000 <= i < 9400 else int(rng.choice([1, 2, 7, 59, 61, 1000]))
        size = min(size, 9000 - i) if i < 9000 else size  # the single stretch is not skipped
        parts += state.update_many(records[i : i + size])
        i += size
    assert [(r.time, r.warm) for r in parts] == [(r.time, r.warm) for r in whole]
    want, got = _table(whole), _table(parts)
    defined = np.isfinite(want[-2000:]).mean(axis=0)  # week-long ones (168 h) included
    assert defined.min() > 0.5, "equal NaNs would prove nothing"
    assert np.isclose(got, want, rtol=1e-9, atol=0.0, equal_nan=True).all()
