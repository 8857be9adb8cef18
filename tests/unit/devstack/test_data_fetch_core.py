"""The pure core of ``volstream data fetch`` on real candles: plans, units, CSV, checksums, gaps."""

from __future__ import annotations

import doctest
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from devstack.data_fetch import core
from devstack.data_fetch.core import Archive, BadArchive, ChecksumMismatch

DAY = 86400


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> pd.DataFrame:
    return pd.read_parquet(shared_data / "btcusdt_1m_2023-2024.parquet")


def _period(frame: pd.DataFrame, archive: Archive) -> pd.DataFrame:
    lo, hi = archive.bounds
    return frame[(frame["time"] >= lo) & (frame["time"] < hi)].reset_index(drop=True)


def test_doctests() -> None:
    assert doctest.testmod(core).failed == 0


def test_plan_months_then_the_current_months_complete_days() -> None:
    plan = core.plan_archives("ETHUSDT", "2024-10", "2024-12", today=date(2024, 12, 3))
    assert [a.path for a in plan] == [
        "data/spot/monthly/klines/ETHUSDT/1m/ETHUSDT-1m-2024-10.zip",
        "data/spot/monthly/klines/ETHUSDT/1m/ETHUSDT-1m-2024-11.zip",
        "data/spot/daily/klines/ETHUSDT/1m/ETHUSDT-1m-2024-12-01.zip",
        "data/spot/daily/klines/ETHUSDT/1m/ETHUSDT-1m-2024-12-02.zip",
    ]
    with pytest.raises(ValueError, match="future"):
        core.plan_archives("BTCUSDT", "2024-12", "2025-01", today=date(2024, 12, 3))
    with pytest.raises(ValueError, match="after"):
        core.plan_archives("BTCUSDT", "2024-12", "2024-11", today=date(2025, 1, 3))
    with pytest.raises(ValueError, match="YYYY-MM"):
        core.plan_archives("BTCUSDT", "2024-13", "2024-12", today=date(2025, 1, 3))


def test_period_bounds_cover_leap_february_and_a_day() -> None:
    lo, hi = Archive("BTCUSDT", "2024-02").bounds
    assert (hi - lo) // DAY == 29
    lo, hi = Archive("BTCUSDT", "2024-12-31").bounds
    assert hi - lo == DAY and hi == Archive("BTCUSDT", "2025-01").bounds[0]


@pytest.mark.parametrize("unit", [1, 1_000, 1_000_000])
def test_the_unit_is_read_from_the_values_of_the_file(candles: pd.DataFrame, unit: int) -> None:
    """A December 2024 file written in microseconds (or seconds) still parses: values decide."""
    archive = Archive("BTCUSDT", "2024-12-30")
    day = _period(candles, archive)
    back = core.parse_klines(core.to_kline_csv(day, unit), archive)
    pd.testing.assert_frame_equal(back, day)


def test_mixed_units_and_a_wrong_period_are_refused(candles: pd.DataFrame) -> None:
    archive = Archive("BTCUSDT", "2024-12-30")
    day = _period(candles, archive)
    mixed = core.to_kline_csv(day.iloc[:10], 1_000) + core.to_kline_csv(day.iloc[10:20], 1_000_000)
    with pytest.raises(BadArchive, match="mix units"):
        core.parse_klines(mixed, archive)
    with pytest.raises(BadArchive, match=r"BTCUSDT-1m-2024-12-29\.zip.*not 1-minute candles"):
        core.parse_klines(core.to_kline_csv(day), Archive("BTCUSDT", "2024-12-29"))


def test_a_header_line_is_accepted(candles: pd.DataFrame) -> None:
    archive = Archive("BTCUSDT", "2023-03-11")
    day = _period(candles, archive)
    header = (",".join(core.KLINE_COLUMNS) + "\n").encode()
    pd.testing.assert_frame_equal(core.parse_klines(header + core.to_kline_csv(day), archive), day)


def test_garbage_is_a_bad_archive_naming_the_file() -> None:
    with pytest.raises(BadArchive, match=r"BTCUSDT-1m-2024-01\.zip"):
        core.parse_klines(b"1,2,3\n", Archive("BTCUSDT", "2024-01"))


def test_checksums_in_sha256sum_format() -> None:
    archive = Archive("BTCUSDT", "2024-01")
    data = b"zip bytes"
    line = core.checksum_line(data, archive.name)
    assert line.endswith(f"  {archive.name}\n")
    core.verify(data, core.parse_checksum(line, archive), archive)
    with pytest.raises(ChecksumMismatch, match=r"BTCUSDT-1m-2024-01\.zip: checksum mismatch"):
        core.verify(data + b"!", core.parse_checksum(line, archive), archive)
    with pytest.raises(BadArchive, match="another file"):
        core.parse_checksum(core.checksum_line(data, "ETHUSDT-1m-2024-01.zip"), archive)
    with pytest.raises(BadArchive, match="not a sha256sum line"):
        core.parse_checksum("<html>404</html>", archive)


def test_lake_symbol_rule_and_override() -> None:
    assert [core.lake_symbol(p) for p in ("BTCUSDT", "ethusdc", "SOLFDUSD", "XRPUSD")] == [
        "BTC",
        "ETH",
        "SOL",
        "XRP",
    ]
    assert core.lake_symbol("BTCUSDT", {"BTCUSDT": "xbt"}) == "XBT"
    with pytest.raises(ValueError, match="PAIR=SYMBOL"):
        core.lake_symbol("ETHBTC")


def test_gaps_are_counted_not_filled_on_the_real_2023_outage(candles: pd.DataFrame) -> None:
    year = candles[candles["time"] < Archive("BTCUSDT", "2024-01").bounds[0]]
    summary = core.summarize("BTCUSDT", year)
    steps = np.diff(year["time"].to_numpy())
    assert summary.gaps == int((steps > 60).sum()) == 1
    assert summary.missing_minutes == int(steps.max()) // 60 - 1
    assert summary.candles == len(year) == 365 * 1440 - summary.missing_minutes


def test_combine_sorts_and_keeps_the_later_copy(candles: pd.DataFrame) -> None:
    a = candles.iloc[100:110].reset_index(drop=True)
    b = candles.iloc[105:115].reset_index(drop=True)
    b.loc[0, "close"] = -1.0
    both = core.combine([b, a.iloc[::-1]])
    assert both["time"].is_monotonic_increasing and len(both) == 15
    assert both.set_index("time")["close"].loc[b["time"][0]] == a.iloc[5]["close"] != -1.0
    assert (both.dtypes == candles.dtypes).all()
