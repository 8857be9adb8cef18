"""Live polling and backfill against the in-process emulator: closed, new, gap-free, no repeats."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from devstack.emulator import Emulator
from devstack.emulator_core import Faults
from services.ingestor.app import Poller, Publisher
from services.ingestor.checkpoint import CheckpointStore
from services.ingestor.client import CryptoCompareClient, RetryPolicy
from services.ingestor.settings import IngestorSettings
from tests.unit.conftest import DAY, START, Recorder, make_emulator

FIELDS = ("time", "open", "high", "low", "close", "volumefrom", "volumeto")


def poller(client: CryptoCompareClient, tmp_path: Path, **cfg) -> tuple[Poller, Recorder]:
    rec = Recorder()
    pub = Publisher(rec, CheckpointStore(tmp_path / "ckpt"), chunk_size=500)
    settings = IngestorSettings(poll_limit=60, metrics_port=0, **cfg)
    return Poller(client, pub, settings), rec


def complete(rows: list[dict]) -> list[dict]:
    return [r for r in rows if all(isinstance(r.get(k), int | float) for k in FIELDS)]


def assert_recorded(em: Emulator, symbol: str, rows: list[dict]) -> None:
    ds = em.datasets[symbol]
    for row in complete(rows):
        assert row == ds.row(row["time"]), "candles are published exactly as served"


async def test_first_poll_publishes_only_closed_candles(client, emulator, tmp_path) -> None:
    p, rec = poller(client, tmp_path)
    assert await p.poll("BTC") == "ok"
    times = [c["time"] for c in rec.candles("BTC")]
    assert times == list(range(START - 3600, START, 60))  # 60 closed; the open minute is not
    assert p.publisher.store.load("BTC") == START - 60
    assert await p.poll("BTC") == "empty"  # nothing closed since
    assert_recorded(emulator, "BTC", rec.candles("BTC"))


async def test_outage_is_paged_back_without_gap_or_repeat(client, emulator, tmp_path) -> None:
    p, rec = poller(client, tmp_path, page_limit=500)
    await p.poll("BTC")
    emulator.clock.set(advance_s=2 * DAY + 17 * 60)  # 2 days 17 minutes later
    assert await p.poll("BTC") == "ok"
    times = [c["time"] for c in rec.candles("BTC")]
    assert times == list(range(START - 3600, START + 2 * DAY + 17 * 60, 60))
    assert max(len(b.candles) for b in rec.batches()) <= 500
    # batches are published oldest first
    firsts = [b.candles[0]["time"] for b in rec.batches()]
    assert firsts == sorted(firsts)
    assert_recorded(emulator, "BTC", rec.candles("BTC"))


@pytest.mark.parametrize("history_days", [6.5, 7.5])
async def test_gap_older_than_the_api_keeps_stops_at_the_api_gap(tmp_path, history_days) -> None:
    """A 9-day outage: filled back to the API's 7-day limit or the start of its history."""
    em = make_emulator(history_days=history_days)

    c = CryptoCompareClient(
        "http://e",
        transport=httpx.ASGITransport(app=em.app()),
        retry=RetryPolicy(initial_s=0.001, max_s=0.01),
    )
    p, rec = poller(c, tmp_path)
    p.publisher.store.save("BTC", START - 9 * DAY)  # an outage of 9 days
    assert await p.poll("BTC") == "ok"
    times = [c["time"] for c in rec.candles("BTC")]
    current = int(em.now()) // 60 * 60  # (the clock stops at the end of the recorded week)
    first = max(em.datasets["BTC"].first, current - 7 * DAY)
    assert times == list(range(first, current, 60))  # no zero rows, no gap but the API's own
    await c.aclose()


async def test_backfill_pages_2000_rows_oldest_first(client, emulator, tmp_path) -> None:
    p, rec = poller(client, tmp_path)
    assert await p.backfill(["ETH"], days=0.5) == {"ETH": "ok"}
    batches = rec.batches("ETH")
    assert {b.source for b in batches} == {"backfill"}
    times = [c["time"] for c in rec.candles("ETH")]
    assert times == list(range(START - DAY // 2, START, 60))
    # then live polling continues from the backfill's checkpoint
    emulator.clock.set(advance_s=300)
    await p.poll("ETH")
    assert [c["time"] for c in rec.candles("ETH")][-5:] == list(range(START, START + 300, 60))


async def test_every_fault_kind_never_stops_polling_and_leaves_no_gap(
    client, emulator, tmp_path
) -> None:
    p, rec = poller(client, tmp_path)
    kinds = (
        "http_500",
        "http_429",
        "rate_limit",
        "malformed",
        "slow",
        "duplicate",
        "out_of_order",
        "null_fields",
    )
    for symbol in ("BTC", "ETH"):
        assert await p.poll(symbol) == "ok"  # a clean start at START - 1 h
    emulator.faults = Faults(dict.fromkeys(kinds, 0.07), seed=7, slow_s=0.3, retry_after_s=0)
    outcomes = Counter()
    for i in range(40):
        emulator.clock.set(advance_s=60 * (1 + i % 4))
        for symbol in ("BTC", "ETH"):
            outcomes[await p.poll(symbol)] += 1
    assert set(emulator.faults.injected) == set(kinds)
    assert outcomes["skipped"] > 0 and outcomes["ok"] > 0
    dup = Counter(emulator.faults.duplicated)
    emulator.faults = Faults()  # the faults stop
    for symbol in ("BTC", "ETH"):
        assert await p.poll(symbol) in ("ok", "empty")
    now_minute = int(emulator.now()) // 60 * 60
    for symbol in ("BTC", "ETH"):
        rows = rec.candles(symbol)
        counts = Counter(r["time"] for r in complete(rows))
        assert sorted(counts) == list(range(START - 3600, now_minute, 60)), "no gap"
        repeated = {t for t, n in counts.items() if n > 1}
        assert all((symbol, t) in dup for t in repeated), "only injected duplicates repeat"
        assert_recorded(emulator, symbol, rows)
    # bad rows (null/missing fields) reached the output, to be judged by the validator
    assert any(not complete([r]) for s in ("BTC", "ETH") for r in rec.candles(s))


async def test_a_long_rate_limit_pauses_polling(client, emulator, tmp_path) -> None:
    """Type 99 asks for a longer wait than the poll interval: polls pause, burning no calls."""
    p, _ = poller(client, tmp_path, poll_interval_s=0.1)
    emulator.faults = Faults({"rate_limit": 1.0})
    assert await p.poll("BTC") == "skipped"
    requests = emulator.requests
    assert await p.poll("BTC") == "cooldown"
    assert emulator.requests == requests


def sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_count_polls_errors_candles_and_lag(client, emulator, tmp_path) -> None:
    p, _ = poller(client, tmp_path)
    before = {
        "ok": sample("ingestor_polls_total", symbol="ETH", outcome="ok"),
        "skipped": sample("ingestor_polls_total", symbol="ETH", outcome="skipped"),
        "candles": sample("ingestor_candles_published_total", symbol="ETH", source="live"),
        "http_5xx": sample("ingestor_api_errors_total", kind="http_5xx"),
        "requests": sample(
            "ingestor_http_request_duration_seconds_count", endpoint="/data/v2/histominute"
        ),
    }
    t0 = time.time()
    await p.poll("ETH")
    t1 = time.time()
    emulator.faults = Faults({"http_500": 1.0})
    await p.poll("ETH")
    assert sample("ingestor_polls_total", symbol="ETH", outcome="ok") == before["ok"] + 1
    assert sample("ingestor_polls_total", symbol="ETH", outcome="skipped") == before["skipped"] + 1
    published = sample("ingestor_candles_published_total", symbol="ETH", source="live")
    assert published == before["candles"] + 60
    attempts = p.client.retry.attempts
    assert sample("ingestor_api_errors_total", kind="http_5xx") == before["http_5xx"] + attempts
    latency_count = sample(
        "ingestor_http_request_duration_seconds_count", endpoint="/data/v2/histominute"
    )
    assert latency_count == before["requests"] + 1 + attempts
    # lag: wall-clock now minus the close of the newest published candle (START - 60 + 60)
    assert t0 - START <= sample("ingestor_lag_seconds", symbol="ETH") <= t1 - START


async def test_warm_up_after_an_outage_fills_the_gap(client, emulator, tmp_path) -> None:
    p, rec = poller(client, tmp_path)
    p.publisher.store.save("BTC", START - 2 * 3600 - 60)  # the last candle before a 2 h outage
    assert await p.warm_up("BTC", asyncio.Event())
    times = [c["time"] for c in rec.candles("BTC")]
    assert times == list(range(START - 2 * 3600, START, 60))  # the gap, oldest first, no more
    assert {b.source for b in rec.batches()} == {"backfill"}


async def test_warm_up_without_checkpoint_takes_the_lake_first(client, emulator, tmp_path) -> None:
    from services.common.lake import write_candles
    from services.common.schemas import Candle

    first = emulator.datasets["BTC"].first  # the API's history begins here (a day back)
    lake_rows = [
        Candle(symbol="BTC", time=t, open=1, high=2, low=0.5, close=1.5, volumefrom=1, volumeto=3)
        for t in range(first - 3600, first, 60)
    ]
    write_candles(tmp_path / "data", lake_rows)
    p, rec = poller(client, tmp_path)
    p.data_dir, p.clock = tmp_path / "data", lambda: float(START)
    assert await p.warm_up("BTC", asyncio.Event())
    times = [c["time"] for c in rec.candles("BTC")]
    assert times == list(range(first - 3600, START, 60))  # the lake's hour, then the API's day
    assert_recorded(emulator, "BTC", [c for c in rec.candles("BTC") if c["time"] >= first])
