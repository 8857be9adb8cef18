"""Candle sources: the shared Parquet layout, CryptoCompare JSON and the lake."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from services.common.schemas import CANDLE_FIELDS, Candle
from trainer.sources import read_candles, read_lake

CC_FILE = "cryptocompare/cc_histominute_BTCUSDT_2024-03-01_7d.json"


def test_reads_cryptocompare_v2_json(shared_data: Path):
    df = read_candles(shared_data / CC_FILE)
    assert list(df.columns) == list(CANDLE_FIELDS)
    assert len(df) == 10_080 and df["time"].dtype == "int64"
    assert (df["time"].diff().dropna() == 60).all()


def test_reads_parquet_and_filters_a_symbol_column(tmp_path: Path):
    rows = [
        {"symbol": s, "time": 60 * i, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5,
         "volumefrom": 1.0, "volumeto": 1.5}
        for i, s in enumerate(["BTC", "ETH", "BTC"])
    ]  # fmt: skip
    pd.DataFrame(rows).to_parquet(tmp_path / "c.parquet")
    df = read_candles(tmp_path / "c.parquet", "BTC")
    assert df["time"].tolist() == [0, 120]
    pd.DataFrame({"time": [0]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="lack columns"):
        read_candles(tmp_path / "bad.parquet")


def test_reads_the_lake_window(tmp_path: Path, shared_data: Path):
    from services.common.lake import write_candles

    src = read_candles(shared_data / CC_FILE).head(2 * 1440)
    write_candles(tmp_path, [Candle(symbol="BTC", **r) for r in src.to_dict("records")])
    day = read_lake(tmp_path, "BTC", "2024-03-02", "2024-03-03")
    assert len(day) == 1440
    assert day["time"].min() == int(pd.Timestamp("2024-03-02", tz="UTC").timestamp())
    with pytest.raises(FileNotFoundError):
        read_lake(tmp_path, "ETH")
