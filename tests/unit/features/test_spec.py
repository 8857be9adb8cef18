"""The public contract: names, version, input hygiene of the batch path."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from services.common.features import (
    FEATURE_NAMES,
    FEATURE_SET_NAME,
    FEATURE_VERSION,
    HISTORY_MINUTES,
    WARMUP_MINUTES,
    featurize_many,
    spec,
)


def test_names_are_unique_and_cover_the_minimum_set():
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    required = {"rv_5m", "rv_1440m", "har_168h", "pk_240m", "gk_15m", "ret_1440m", "lqv_60m"}
    required |= {"qv_ratio_24h", "qv_z_24h", "rsi_14", "macd", "hod_sin", "dow_cos", "lrv_60m"}
    assert required <= set(FEATURE_NAMES)
    assert HISTORY_MINUTES == 168 * 60 + 60 > WARMUP_MINUTES == math.ceil(0.8 * 168 * 60)


def test_warm_means_every_feature_is_defined_on_a_stream_that_just_started(shared_data):
    """The March 2020 crash week is all the history there is: warm rows must come out of it."""
    doc = json.loads(
        (shared_data / "cryptocompare/cc_histominute_BTCUSDT_2020-03-09_7d.json").read_bytes()
    )
    week = pd.DataFrame(doc["Data"]["Data"])[
        ["time", "open", "high", "low", "close", "volumefrom", "volumeto"]
    ]
    out = featurize_many(week)
    warm = out[out["warm"]]
    assert len(warm) == len(week) - WARMUP_MINUTES > 0
    assert not warm[list(FEATURE_NAMES)].isna().any().any()  # every feature defined once warm
    # before, the weekly component is undefined (its 80 % need varies with the hour's phase)
    assert out["har_168h"].iloc[: WARMUP_MINUTES - 60].isna().all()


def test_version_changes_with_any_definition(monkeypatch):
    assert spec._version() == FEATURE_VERSION
    assert FEATURE_VERSION.startswith(f"{FEATURE_SET_NAME}-") and len(FEATURE_VERSION) > 12
    monkeypatch.setattr(spec, "RV_WINDOWS", (5, 15, 30, 60, 240))
    assert spec._version() != FEATURE_VERSION
    monkeypatch.setattr(spec, "RV_WINDOWS", (5, 15, 30, 60, 240, 1440))
    monkeypatch.setattr(spec, "MIN_COVERAGE", 0.9)
    assert spec._version() != FEATURE_VERSION


def test_unsorted_duplicated_input_is_normalised(make_candles):
    frame = make_candles(100 * np.exp(0.001 * np.arange(30)))
    stale = frame.iloc[[10]].assign(close=1.0)  # an earlier copy of minute 10: the last wins
    reordered = pd.concat([stale, frame.iloc[::-1]])  # reversed, the stale copy first
    pd.testing.assert_frame_equal(featurize_many(reordered), featurize_many(frame))
    replaced = featurize_many(pd.concat([frame, stale]))  # the stale copy last: it wins
    assert replaced["ret_1m"][10] == pytest.approx(math.log(1.0 / frame["close"][9]))


def test_rejects_unaligned_times_and_missing_columns(make_candles):
    frame = make_candles([1.0, 2.0])
    with pytest.raises(ValueError, match="minute-aligned"):
        featurize_many(frame.assign(time=frame["time"] + 1))
    with pytest.raises(ValueError, match="volumeto"):
        featurize_many(frame.drop(columns="volumeto"))


def test_empty_input_and_at_without_candles(make_candles):
    assert featurize_many(make_candles([])).columns.tolist() == ["time", "warm", *FEATURE_NAMES]
    frame = make_candles([1.0, 2.0, 3.0])
    assert featurize_many(frame, at=[int(frame["time"][0]) + 30, 7]).empty
    row = featurize_many(frame, at=[int(frame["time"][2])]).iloc[0]
    assert row["ret_1m"] == pytest.approx(math.log(1.5))
