"""Targets, baseline inputs and splits: hand-computed values and no leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer.dataset import build_dataset, point_in_time_rows
from trainer.settings import TrainerSettings
from trainer.targets import (
    HAR_COLUMNS,
    assign_splits,
    baseline_inputs,
    clean_candles,
    ewma_log_rv,
    log_rv_target,
    minute_grid,
    origin_times,
    past_log_rv,
)

DAY = 86400


def candles_from_closes(closes: np.ndarray, t0: int = 1_704_067_200) -> pd.DataFrame:
    """Minute candles with the given closes (open=previous close, a small range)."""
    closes = np.asarray(closes, dtype=float)
    opens = np.concatenate(([closes[0]], closes[:-1]))
    return pd.DataFrame(
        {
            "time": t0 + 60 * np.arange(len(closes)),
            "open": opens,
            "high": np.maximum(opens, closes) * 1.0005,
            "low": np.minimum(opens, closes) * 0.9995,
            "close": closes,
            "volumefrom": 1.0 + np.arange(len(closes)) % 7,
            "volumeto": 100.0 + np.arange(len(closes)) % 11,
        }
    )


def random_walk(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))


def test_target_is_rv_of_the_next_hour_by_hand():
    closes = random_walk(200)
    grid = minute_grid(candles_from_closes(closes))
    t0 = 1_704_067_200
    r = np.diff(np.log(closes))
    for k in (0, 17, 100):
        expected = np.log(np.sqrt(np.sum(r[k : k + 60] ** 2)))
        got = log_rv_target(grid, np.array([t0 + 60 * k]))[0]
        assert got == pytest.approx(expected, rel=1e-12)


def test_target_undefined_when_a_future_minute_is_missing_and_floored_when_flat():
    df = candles_from_closes(random_walk(200))
    gappy = df.drop(index=90)
    grid = minute_grid(gappy)
    t0 = int(df["time"][0])
    y = log_rv_target(grid, t0 + 60 * np.array([0, 29, 30, 31, 91, 140]))
    assert np.isfinite(y[0]) and np.isfinite(y[1])  # windows 1..60 and 30..89 are complete
    assert np.isnan(y[2]) and np.isnan(y[3])  # windows hold minute 90 or its successor's return
    assert np.isfinite(y[4])  # 92..151: every return's candles exist
    assert np.isnan(y[5])  # runs past the data
    flat = minute_grid(candles_from_closes(np.full(100, 5.0)))
    assert log_rv_target(flat, np.array([t0]), floor=1e-5)[0] == pytest.approx(np.log(1e-5))


def test_past_components_are_per_hour_and_use_only_the_past():
    closes = random_walk(600)
    grid = minute_grid(candles_from_closes(closes))
    t0 = 1_704_067_200
    r = np.diff(np.log(closes))
    origin = t0 + 60 * 300  # candle 300: returns 1..300 are known
    four_hours = 0.5 * np.log(np.sum(r[60:300] ** 2) / 4)
    assert past_log_rv(grid, np.array([origin]), 4)[0] == pytest.approx(four_hours, rel=1e-12)
    assert np.isnan(past_log_rv(grid, np.array([origin]), 24)[0])  # under 80% covered


def test_ewma_matches_the_recursion():
    closes = random_walk(50)
    r2 = np.diff(np.log(closes)) ** 2
    lam, s = 0.9, r2[0]
    for x in r2:
        s = lam * s + (1 - lam) * x
    grid = minute_grid(candles_from_closes(closes))
    got = ewma_log_rv(grid, np.array([1_704_067_200 + 60 * 49]), lam, horizon=60)[0]
    assert got == pytest.approx(0.5 * np.log(60 * s), rel=1e-12)


def test_origins_are_full_hours_and_splits_are_embargoed_in_order():
    times = 1_704_067_200 + 60 * np.arange(3 * 24 * 60)
    origins = origin_times(times)
    assert (origins % 3600 == 0).all() and len(origins) == 72
    labels = assign_splits(origins, (int(origins[40]), int(origins[60])), 60, 60)
    order = {"train": 0, "valid": 1, "test": 2}
    kept = [order[s] for s in labels if s]
    assert kept == sorted(kept)  # time-ordered, never shuffled
    # origin 38's target (to 39 h) plus the 60-minute embargo end exactly at validation
    assert list(labels[38:41]) == ["train", "", "valid"]
    assert list(labels[58:61]) == ["valid", "", "test"]


def test_clean_candles_sorts_and_deduplicates():
    df = candles_from_closes(random_walk(5))
    messy = pd.concat([df.iloc[::-1], df.iloc[[2]].assign(close=1.0)])
    out = clean_candles(messy)
    assert out["time"].is_monotonic_increasing and len(out) == 5
    assert out["close"].iloc[2] == 1.0  # the last duplicate wins


def test_no_leakage_future_candles_do_not_change_past_rows():
    """Changing every candle after T changes no feature, target or baseline input of origins
    whose target window ends at or before T."""
    n = 8 * 24 * 60 + 600
    df = candles_from_closes(random_walk(n, seed=3))
    cut = int(df["time"].iloc[n - 300])
    changed = df.copy()
    after = changed["time"] > cut
    changed.loc[after, ["open", "high", "low", "close"]] *= 1.5
    changed.loc[after, ["volumefrom", "volumeto"]] *= 3.0
    ts = TrainerSettings()
    origins = origin_times(df["time"].to_numpy(), 15)
    a, names, _ = point_in_time_rows(df, origins, (0.97,), ts)
    b, _, _ = point_in_time_rows(changed, origins, (0.97,), ts)
    safe = a["time"] + 3600 <= cut
    assert safe.sum() >= 20
    cols = ["y", *HAR_COLUMNS, "b_ewma_0.97", *names]
    pd.testing.assert_frame_equal(a.loc[safe, cols], b.loc[safe, cols])
    assert not np.allclose(a.loc[~safe, "y"], b.loc[~safe, "y"])  # the later ones do change


def test_build_dataset_splits_by_fraction_on_a_short_file():
    n = 12 * 24 * 60
    ds = build_dataset(candles_from_closes(random_walk(n, seed=5)), TrainerSettings())
    assert ds.split_mode == "fractions"
    assert set(ds.frame["split"]) == {"train", "valid", "test"}
    assert ds.frame["time"].is_monotonic_increasing
    assert (ds.part("test")["time"] % 3600 == 0).all()  # scored hourly
    assert (ds.part("valid")["time"] % 3600 == 0).all()
    assert (ds.part("train")["time"] % 3600 != 0).any()  # fitted on denser origins
    assert ds.x().shape == (len(ds.frame), len(ds.feature_names))


def test_baseline_inputs_have_calendar_columns():
    grid = minute_grid(candles_from_closes(random_walk(120)))
    out = baseline_inputs(grid, np.array([1_704_067_200 + 3600]), (0.9,))
    assert out["b_hour"].tolist() == [1] and out["b_dow"].tolist() == [0]  # 2024-01-01: Monday
