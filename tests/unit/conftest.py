"""An in-process emulator on the real recorded weeks, reached through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from devstack.emulator import DEFAULT_FILES, Emulator, load_datasets
from devstack.emulator_core import SimClock
from services.common.schemas import RawBatch
from services.ingestor.client import CryptoCompareClient, RetryPolicy

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
START = 1_800_000_000  # the simulated "now" at start (a minute boundary)
DAY = 86400


def make_emulator(history_days: float = 1.0, api_key: str | None = None) -> Emulator:
    """BTC and ETH weeks, their first candle ``history_days`` before START; the clock frozen."""
    files = {s: SHARED / rel for s, rel in DEFAULT_FILES.items()}
    datasets = load_datasets(files, first_time=int(START - history_days * DAY))
    return Emulator(datasets, SimClock(START + 30, speed=0.0), api_key=api_key)


@pytest.fixture()
def emulator() -> Emulator:
    return make_emulator()


@pytest.fixture()
async def client(emulator: Emulator) -> AsyncIterator[CryptoCompareClient]:
    c = CryptoCompareClient(
        "http://emulator",
        transport=httpx.ASGITransport(app=emulator.app()),
        timeout_s=0.2,
        retry=RetryPolicy(attempts=3, budget_s=2.0, initial_s=0.001, max_s=0.01),
    )
    yield c
    await c.aclose()


class Recorder:
    """A ``Send`` that keeps the records in memory (the broker's job in production)."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    async def __call__(self, records: list[tuple[bytes, bytes]]) -> int:
        self.records += records
        return len(records)

    def batches(self, symbol: str | None = None) -> list[RawBatch]:
        out = [RawBatch.from_bytes(v) for _, v in self.records]
        return [b for b in out if symbol is None or b.symbol == symbol]

    def candles(self, symbol: str) -> list[dict]:
        return [c for b in self.batches(symbol) for c in b.candles]
