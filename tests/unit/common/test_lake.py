"""The Parquet lake: layout, idempotent merges, reads by time range (real candles, no broker)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from services.common.lake import lake_root, read_lake, write_candles
from services.common.schemas import CANDLE_FIELDS
from services.common.settings import REPO_ROOT
from services.featurizer.replay import load_candles, to_candles

DATA = REPO_ROOT.parent / "shared" / "data" / "btcusdt_1m_2023-2024.parquet"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    if not DATA.exists():
        pytest.skip("real data missing")
    return load_candles(DATA, "2024-12-01", 3)


def test_layout_is_hive_partitioned_by_symbol_and_utc_day(
    tmp_path: Path, frame: pd.DataFrame
) -> None:
    assert write_candles(tmp_path, to_candles(frame, "BTC")) == len(frame)
    root = lake_root(tmp_path)
    days = sorted(p.name for p in (root / "symbol=BTC").iterdir())
    assert days == ["date=2024-12-01", "date=2024-12-02", "date=2024-12-03"]
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table().to_pandas()
    assert len(table) == len(frame)
    assert set(table["symbol"]) == {"BTC"}
    assert set(CANDLE_FIELDS) <= set(table.columns)
    assert not list(root.rglob("*.tmp"))


def test_replay_and_overlap_add_no_duplicates(tmp_path: Path, frame: pd.DataFrame) -> None:
    candles = to_candles(frame, "ETH")
    assert write_candles(tmp_path, candles[:2000]) == 2000
    assert write_candles(tmp_path, candles[1500:]) == len(frame) - 2000
    assert write_candles(tmp_path, candles) == 0
    back = read_lake(tmp_path, "ETH")
    pd.testing.assert_frame_equal(back[list(CANDLE_FIELDS)], frame[list(CANDLE_FIELDS)])


def test_newest_copy_of_a_minute_wins(tmp_path: Path, frame: pd.DataFrame) -> None:
    candles = to_candles(frame.iloc[:10], "BTC")
    write_candles(tmp_path, candles)
    fixed = candles[4].model_copy(update={"close": 123.0})
    assert write_candles(tmp_path, [fixed]) == 0
    back = read_lake(tmp_path, "BTC")
    assert back.loc[4, "close"] == 123.0 and len(back) == 10


def test_read_by_range_and_symbols_kept_apart(tmp_path: Path, frame: pd.DataFrame) -> None:
    write_candles(tmp_path, to_candles(frame, "BTC") + to_candles(frame.iloc[:100], "SOL"))
    part = read_lake(tmp_path, "BTC", "2024-12-02", "2024-12-02 06:00")
    assert len(part) == 360 and part["time"].iloc[0] == 1733097600
    assert part.equals(read_lake(tmp_path, "BTC", 1733097600, 1733097600 + 6 * 3600))
    assert len(read_lake(tmp_path, "SOL")) == 100
    empty = read_lake(tmp_path, "XRP")
    assert empty.empty and list(empty.columns) == ["symbol", *CANDLE_FIELDS]
