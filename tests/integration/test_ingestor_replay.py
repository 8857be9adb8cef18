"""Replay of real history into ticks.raw through the real broker."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from services.common.settings import Settings
from services.ingestor.app import run
from services.ingestor.settings import IngestorSettings
from tests.conftest import CC_DIR, TWO_YEAR_FILE
from tests.integration.test_ingestor_support import consume_raw, run_consume, volstream

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_two_year_replay_puts_every_candle_on_ticks_raw(
    settings: Settings, service_env: dict[str, str]
) -> None:
    replay = ("ingest", "replay", "--file", str(TWO_YEAR_FILE), "--speed", "max")
    volstream(*replay, env=service_env, timeout=400)
    batches = run_consume(settings, idle_s=3.0)
    times = [c["time"] for _, _, b in batches for c in b.candles]
    assert len(times) == 1_052_560  # counted by consuming, not by end offsets
    assert times == sorted(times) and len(set(times)) == len(times)  # in order, no repeats
    assert {k for k, _, _ in batches} == {"BTC"} and {b.symbol for _, _, b in batches} == {"BTC"}
    assert len({p for _, p, _ in batches}) == 1  # one key, one partition: order kept
    assert {b.source for _, _, b in batches} == {"replay"}
    assert max(len(b.candles) for _, _, b in batches) == 500
    assert len({b.batch_id for _, _, b in batches}) == len(batches)


async def test_paced_json_replay_with_symbol_override(settings: Settings) -> None:
    """The March-2020 crash week (a CryptoCompare v2 response) as ETH, paced at 120,000x."""
    cfg = IngestorSettings(
        mode="replay",
        replay_file=CC_DIR / "cc_histominute_BTCUSDT_2020-03-09_7d.json",
        replay_symbol="ETH",
        replay_speed="120000",
        metrics_port=0,
    )
    sent = await run(settings, cfg, asyncio.Event())
    assert sent == 10080
    batches = await consume_raw(settings, idle_s=2.0)
    times = [c["time"] for _, _, b in batches for c in b.candles]
    assert times == list(range(1583712000, 1583712000 + 10080 * 60, 60))
    assert {k for k, _, _ in batches} == {"ETH"}
    # paced: many small batches (one per half-second tick of 1,000 simulated minutes)
    assert (
        len(batches) > 10
        and Counter(len(b.candles) for _, _, b in batches).most_common(1)[0][0] <= 1000
    )


async def test_replay_resume_skips_what_was_published(settings: Settings) -> None:
    path = CC_DIR / "cc_histominute_BTCUSDT_2024-03-01_7d.json"
    cfg = IngestorSettings(mode="replay", replay_file=path, metrics_port=0)
    from services.ingestor.checkpoint import CheckpointStore

    CheckpointStore.under(settings.data_dir, "replay").save("BTC", 1709251200 + 9000 * 60)
    resumed = cfg.model_copy(update={"replay_resume": True})
    assert await run(settings, resumed, asyncio.Event()) == 10080 - 9001
    batches = await consume_raw(settings, idle_s=2.0)
    assert batches[0][2].candles[0]["time"] == 1709251200 + 9001 * 60
