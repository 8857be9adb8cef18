"""Snapshots freeze exactly the asked window of a real hive-partitioned lake."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from services.common.lake import day_dir
from services.common.schemas import CANDLE_FIELDS
from trainer.snapshot import SnapshotError, seed_lake, snapshot

from .conftest import DAY, DAY0


@pytest.fixture()
def lake(tmp_path: Path, candles: pd.DataFrame) -> Path:
    """A data dir whose lake holds the two real days for BTC and one day for ETH."""
    seed_lake(candles, tmp_path, "BTC")
    seed_lake(candles.head(1440), tmp_path, "ETH")
    return tmp_path


def test_lake_layout_is_hive_partitioned_by_symbol_and_day(
    lake: Path, candles: pd.DataFrame
) -> None:
    assert seed_lake(candles, lake, "BTC") == 0  # seeding merges like the archiver: no repeats
    files = sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*.parquet"))
    assert files == [
        "lake/candles/symbol=BTC/date=2024-03-01/part-0.parquet",
        "lake/candles/symbol=BTC/date=2024-03-02/part-0.parquet",
        "lake/candles/symbol=ETH/date=2024-03-01/part-0.parquet",
    ]


def test_snapshot_selects_the_half_open_window_across_days(
    lake: Path, tmp_path: Path, candles: pd.DataFrame
) -> None:
    start, end = DAY0 + DAY - 3600, DAY0 + DAY + 1800
    result = snapshot(lake, "BTC", start, end, tmp_path / "snap.parquet")
    got = pd.read_parquet(result.path)
    want = candles[(candles["time"] >= start) & (candles["time"] < end)].reset_index(drop=True)
    assert result.rows == 90 and result.dropped_replays == 0
    assert list(got.columns) == list(CANDLE_FIELDS)
    pd.testing.assert_frame_equal(got, want[list(CANDLE_FIELDS)])
    assert pq.read_schema(result.path).field("time").type == "int64"


def test_snapshot_keeps_symbols_apart(lake: Path, tmp_path: Path) -> None:
    result = snapshot(lake, "ETH", DAY0, DAY0 + 2 * DAY, tmp_path / "eth.parquet")
    assert result.rows == 1440


def test_replayed_rows_are_dropped_conflicting_ones_kept(
    lake: Path, tmp_path: Path, candles: pd.DataFrame
) -> None:
    day = day_dir(lake, "BTC", "2024-03-01")
    replay = candles.iloc[10:15][list(CANDLE_FIELDS)]
    replay.to_parquet(day / "replay.parquet", index=False)
    replay.assign(close=replay["close"] + 1).to_parquet(day / "conflict.parquet", index=False)
    result = snapshot(lake, "BTC", DAY0, DAY0 + DAY, tmp_path / "snap.parquet")
    got = pd.read_parquet(result.path)
    assert result.dropped_replays == 5
    assert result.rows == 1440 + 5
    assert got["time"].is_monotonic_increasing


def test_empty_window_and_missing_lake_raise(lake: Path, tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="no BTC candles"):
        snapshot(lake, "BTC", DAY0 - DAY, DAY0, tmp_path / "x.parquet")
    with pytest.raises(SnapshotError, match="no candle lake"):
        snapshot(tmp_path / "nowhere", "BTC", DAY0, DAY0 + DAY, tmp_path / "x.parquet")
    with pytest.raises(SnapshotError, match="empty window"):
        snapshot(lake, "BTC", DAY0, DAY0, tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()
