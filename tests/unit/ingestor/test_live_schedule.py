"""Live mode against the in-process emulator on a real-time clock: warm from the first minute,
then each closed minute polled as soon as the API shows it, within the API's rate limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from devstack.emulator import DEFAULT_FILES, Emulator
from devstack.emulator_core import Dataset, RateLimits, SimClock, floor_minute
from services.ingestor.app import Poller, Publisher
from services.ingestor.checkpoint import CheckpointStore
from services.ingestor.client import CryptoCompareClient, RetryPolicy, rate_limiter
from services.ingestor.settings import IngestorSettings
from tests.unit.conftest import DAY, SHARED, Recorder

pytestmark = pytest.mark.slow  # real seconds: each test waits for a minute to close


class StampedRecorder(Recorder):
    """Keeps each record with the (simulated wall) time it was sent."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self.clock = clock
        self.sent_at: list[float] = []

    async def __call__(self, records: list[tuple[bytes, bytes]]) -> int:
        self.sent_at += [self.clock()] * len(records)
        return await super().__call__(records)


def live_setup(
    symbols: list[str], lag_s: float, rate: dict[str, int] | None = None
) -> tuple[Emulator, Callable[[], float], int]:
    """An emulator whose clock is the wall clock shifted to 1.5 s before a minute ``boundary``
    (so the test need not wait for the real one); its data starts 6 days before that."""
    wall = time.time()
    boundary = floor_minute(wall) + 600
    offset = boundary - 1.5 - wall
    base = Dataset.from_file("BTC", SHARED / DEFAULT_FILES["BTC"], boundary - 6 * DAY)
    datasets = {s: Dataset(s, base.rows, base.shift) for s in symbols}
    emu = Emulator(
        datasets, SimClock(wall + offset, 1.0), lag_s=lag_s, rate_limits=RateLimits(rate or {})
    )
    return emu, (lambda: time.time() + offset), boundary


def make_poller(
    emu: Emulator, clock: Callable[[], float], tmp_path: Path, limiter=None, **cfg
) -> tuple[Poller, StampedRecorder]:
    client = CryptoCompareClient(
        "http://emulator",
        transport=httpx.ASGITransport(app=emu.app()),
        timeout_s=2.0,
        retry=RetryPolicy(attempts=3, budget_s=5.0, initial_s=0.05, max_s=0.2),
        limiter=limiter,
    )
    rec = StampedRecorder(clock)
    pub = Publisher(rec, CheckpointStore(tmp_path / "ckpt"), chunk_size=500)
    settings = IngestorSettings(metrics_port=0, align_retry_s=0.2, **cfg)
    return Poller(client, pub, settings, clock=clock), rec


async def run_until(poller: Poller, symbols: list[str], done: Callable[[], bool], limit_s: float):
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run_live(symbols, stop))
    deadline = time.monotonic() + limit_s
    while not done() and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 30)
    await poller.client.aclose()


async def test_warm_history_first_then_the_closed_minute_as_soon_as_it_shows(tmp_path) -> None:
    lag = 1.0
    emu, clock, boundary = live_setup(["BTC"], lag_s=lag)
    p, rec = make_poller(emu, clock, tmp_path, warmup_days=7)
    closing = boundary - 60  # the minute that ends at the boundary
    calls: list[float] = []
    ask = p.client.histominute

    async def spy(*args, **kw):
        calls.append(clock())
        return await ask(*args, **kw)

    p.client.histominute = spy  # type: ignore[method-assign]

    def published(t: int) -> bool:
        return any(c["time"] == t for c in rec.candles("BTC"))

    await run_until(p, ["BTC"], lambda: published(closing), 20)
    batches = rec.batches("BTC")
    warm = [c["time"] for b in batches if b.source == "backfill" for c in b.candles]
    live = [c["time"] for b in batches if b.source == "live" for c in b.candles]
    # the whole recorded history up to the last closed minute, oldest first, before any live poll
    first = emu.datasets["BTC"].first
    assert warm == list(range(first, closing, 60))
    assert [b.source for b in batches] == sorted((b.source for b in batches), reverse=False)
    assert live == [closing], "the live poll publishes the minute that just closed, nothing else"
    # ... not before the API shows it closed, and within the retry window after that (not at the
    # next regular tick a minute later)
    sent = rec.sent_at[-1]
    assert boundary + lag <= sent < boundary + p.cfg.align_window_s
    tries = [t for t in calls if boundary <= t <= sent]
    assert len(tries) >= 2, f"it retried while the minute was still open: {tries}"
    assert tries[0] < boundary + lag, "the first try came right after the minute ended"


async def test_fifty_symbols_stay_within_the_rate_limit(tmp_path) -> None:
    symbols = [f"S{i:02d}" for i in range(50)]
    caps = {"second": 20, "minute": 300}
    emu, clock, boundary = live_setup(symbols, lag_s=0.5, rate=caps)
    shipped = IngestorSettings(metrics_port=0)  # the default caps, below the API's
    limiter = rate_limiter(shipped.rate_per_second, shipped.rate_per_minute)
    p, _ = make_poller(emu, clock, tmp_path, limiter=limiter, warmup_days=1)
    closing = boundary - 60

    def all_closed() -> bool:
        return all(p.publisher.store.load(s) == closing for s in symbols)

    await run_until(p, symbols, all_closed, 40)
    assert emu.rate_limits.refused == 0, f"{emu.rate_limits.refused} calls over the API's limit"
    late = {s: (p.publisher.store.load(s) or 0) - closing for s in symbols}
    assert all_closed(), {s: d for s, d in late.items() if d}
