"""The lake archiver end to end: real broker, a real archiver process, real candles."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pandas as pd
import pytest

from services.common import kafka
from services.common.lake import read_lake
from services.common.schemas import CANDLE_FIELDS
from services.common.settings import REPO_ROOT, Settings
from services.featurizer.replay import load_candles, produce, to_candles

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_archiver_writes_each_candle_once_despite_replays(
    settings: Settings, service_env: dict[str, str], tmp_path: Path
) -> None:
    frame = load_candles(settings.shared_data_dir / "btcusdt_1m_2023-2024.parquet", "2024-12-01", 2)
    await kafka.ensure_topics(settings)
    candles = to_candles(frame, "BTC")
    # an upstream retry re-publishes the first day: the lake must not hold it twice
    sent = await produce(settings, candles + candles[:1440] + to_candles(frame.iloc[:500], "SOL"))
    log_path = tmp_path / "archiver.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.archiver"],
            env=service_env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        await _wait_flushed(log_path, sent)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(proc.wait, 30)
    assert rc == 0, (tmp_path / "archiver.log").read_text()
    back = read_lake(settings.data_dir, "BTC")
    pd.testing.assert_frame_equal(back[list(CANDLE_FIELDS)], frame[list(CANDLE_FIELDS)])
    assert not list(settings.data_dir.rglob("*.tmp"))
    assert os.path.isdir(settings.data_dir / "lake" / "candles" / "symbol=SOL" / "date=2024-12-01")


async def _wait_flushed(log_path: Path, n: int, timeout_s: float = 120) -> None:
    """Until the archiver logged flushes covering ``n`` candles (replays included)."""
    deadline = time.monotonic() + timeout_s
    done = 0
    while time.monotonic() < deadline:
        lines = log_path.read_text(errors="replace").splitlines()
        done = sum(orjson.loads(x)["candles"] for x in lines if '"lake flushed"' in x)
        if done >= n:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"archiver flushed {done} of {n} candles")
