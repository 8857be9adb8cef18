"""The main job's data feed (``volstream up --demo``, what ``make run`` starts).

1. Replays a warm-up slice of the real history at full speed, so the featurizer's longest
   window (a week) is covered and predictions start at once.
2. Trains and registers a first champion on the 2-year file, if there is none.
3. Keeps replaying the real candles that follow at an accelerated rate (``DEMO_SPEED`` times real
   time), so predictions keep flowing.

The 2-year file is ``../shared/data/btcusdt_1m_2023-2024.parquet`` (``SHARED_DATA_DIR``) or, away
from that folder, the same file fetched from Binance's public archives into ``DATA_FETCH_DIR``
(``volstream data fetch``; ``make run`` says how, see ``devstack.data_fetch.demo_data``).

Each step runs the public CLI (``volstream ingest replay``, ``volstream train``), exactly what a
user would type.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from pydantic_settings import BaseSettings, SettingsConfigDict

from devstack.data_fetch import demo_data
from devstack.data_fetch.settings import DataFetchSettings
from services.common.logging import configure_logging
from services.common.settings import get_settings
from trainer.versioning import init_standalone

log = logging.getLogger("volstream.demo")


class DemoSettings(BaseSettings):
    """``DEMO_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="DEMO_", frozen=True)

    warmup_days: float = 8.0
    """``DEMO_WARMUP_DAYS``: history replayed at full speed before the live-like feed."""
    live_start: str = "2024-12-27T00:00:00Z"
    """``DEMO_LIVE_START``: first candle of the accelerated feed (UTC)."""
    speed: float = 60.0
    """``DEMO_SPEED``: the accelerated feed's rate, in multiples of real time."""
    symbol: str = "BTC"


def slice_history(source: Path, start: int, end: int, out: Path) -> int:
    """Write the candles with start <= time < end to ``out`` (shared layout); returns the count."""
    table = pq.read_table(source, filters=[("time", ">=", start), ("time", "<", end)])
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return table.num_rows


def volstream(*args: str, env: dict[str, str] | None = None) -> None:
    """Run a ``volstream`` command, raising if it fails (its output goes to this job's log)."""
    cmd = [sys.executable, "-m", "devstack.cli", *args]
    log.info("running", extra={"cmd": " ".join(args)})
    subprocess.run(cmd, check=True, env=None if env is None else {**os.environ, **env})


def dataset_env(work: Path) -> dict[str, str]:
    """Version the demo's training set in its own DVC repository under ``var/``, not in git's tree.

    ``volstream train`` DVC-adds and pushes every dataset it builds; run from the project's tree
    that leaves a new ``.dvc`` pointer and a ``.gitignore`` edit in ``data/datasets/`` after each
    ``make run``. The demo's repository is outside git (``dvc init --no-scm``), with its own
    local remote.
    """
    root = init_standalone(work / "dvc")
    return {
        "TRAINER_DATASETS_DIR": str(root / "datasets"),
        "TRAINER_DVC_REMOTE": str(work / "dvc-remote"),
    }


def has_champion() -> bool:
    from services.common.registry import alias_version

    return alias_version("champion", get_settings()) is not None


def main() -> None:
    configure_logging(get_settings().log_level)
    settings, demo = get_settings(), DemoSettings()
    found = demo_data.locate(settings.shared_data_dir, DataFetchSettings().dir)
    if found is None:
        log.error(demo_data.missing_message(settings.shared_data_dir, DataFetchSettings().dir))
        raise SystemExit(3)
    source = found / demo_data.DEMO_FILE
    log.info("demo history", extra={"file": str(source)})
    live_start = int(pd.Timestamp(demo.live_start).timestamp())
    warm_start = live_start - int(demo.warmup_days * 86400)
    work = settings.data_dir / "demo"
    warm = work / "warmup.parquet"
    n = slice_history(source, warm_start, live_start, warm)
    log.info("replaying the warm-up slice at full speed", extra={"candles": n})
    volstream("ingest", "replay", "--file", str(warm), "--symbol", demo.symbol, "--speed", "max")
    if not has_champion():
        log.info("no champion yet: training one on the 2-year history")
        t0 = time.monotonic()
        volstream("train", "--data", str(source), env=dataset_env(work))
        log.info("champion trained", extra={"seconds": round(time.monotonic() - t0, 1)})
    feed = work / "feed.parquet"
    n = slice_history(source, live_start, live_start + 10 * 86400, feed)
    log.info("accelerated feed", extra={"candles": n, "speed": demo.speed})
    volstream(
        "ingest", "replay", "--file", str(feed), "--symbol", demo.symbol, "--speed", str(demo.speed)
    )
    log.info("demo feed finished: the recorded history is exhausted")


if __name__ == "__main__":
    main()
