"""Replay sources (the real files), pacing, and the durable checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.common.errors import ConfigError
from services.ingestor.checkpoint import CheckpointStore
from services.ingestor.replay import after_checkpoint, iter_slices, paced
from tests.unit.conftest import SHARED


def test_parquet_is_read_in_slices_oldest_first() -> None:
    it = iter_slices(SHARED / "btcusdt_1m_2023-2024.parquet", 1000)
    first, second = next(it), next(it)
    assert len(first) == len(second) == 1000
    assert first[0] == {
        "time": 1672531200,
        "open": 16541.77,
        "high": 16544.76,
        "low": 16538.45,
        "close": 16543.67,
        "volumefrom": 83.08143,
        "volumeto": 1374268.8488616,
    }
    assert second[0]["time"] == first[-1]["time"] + 60


@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("cryptocompare/cc_histominute_BTCUSDT_2020-03-09_7d.json", 10080),  # v2 envelope
        ("cryptocompare/histominute_envelope_sample.json", 2001),  # v1 envelope
        ("cryptocompare/histohour_btcusd_2019-04_data-array.json", 2001),  # bare Data array
    ],
)
def test_json_sources(name: str, rows: int) -> None:
    slices = list(iter_slices(SHARED / name, 500))
    assert sum(map(len, slices)) == rows
    assert max(map(len, slices)) == 500


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        next(iter_slices(tmp_path / "nope.parquet", 10))


def test_paced_groups_follow_the_replay_clock() -> None:
    rows = [{"time": 60 * i} for i in range(600)]
    groups = list(paced([rows[:250], rows[250:]], speed=600.0, tick_s=0.5, max_rows=100))
    # 600x: one simulated minute every 0.1 s, so 5 candles a half-second tick
    assert [len(g) for _, g in groups] == [5] * 120
    dues = [due for due, _ in groups]
    assert dues == [0.5 * (i + 1) for i in range(120)]
    assert [r for _, g in groups for r in g] == rows


def test_paced_groups_respect_max_rows() -> None:
    rows = [{"time": 60 * i} for i in range(50)]
    assert max(len(g) for _, g in paced([rows], speed=1e6, tick_s=1.0, max_rows=7)) == 7


def test_after_checkpoint_resumes() -> None:
    rows = [{"time": 60 * i} for i in range(5)]
    assert after_checkpoint(rows, 120) == rows[3:]
    assert after_checkpoint(rows, None) == rows


def test_checkpoint_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    store = CheckpointStore.under(tmp_path)
    assert store.load("BTC") is None
    store.save("BTC", 1_700_000_000)
    store.save("BTC", 1_700_000_060)
    assert store.load("BTC") == 1_700_000_060
    assert CheckpointStore.under(tmp_path, "replay").load("BTC") is None  # separate streams
    assert sorted(os.listdir(store.directory)) == ["live-BTC.json"]  # no temp file left


def test_unreadable_checkpoint_is_a_config_error(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.path("ETH").write_text("{tor")
    with pytest.raises(ConfigError):
        store.load("ETH")
