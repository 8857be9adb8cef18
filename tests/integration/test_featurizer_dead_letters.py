"""The featurizer's late path sends each dead letter once, across restarts (real broker).

A worker that dies after publishing and before committing is restarted on the same records: its
engine re-judges them and finds the same late candles again; only the first incarnation's letters
may reach ticks.dlq."""

from __future__ import annotations

import asyncio

import pytest

from services.common import kafka
from services.common.schemas import Candle, DeadLetter
from services.common.settings import Settings
from services.common.topics import TICKS_CLEAN, TICKS_DLQ
from services.featurizer.app import StreamFeaturizer, new_engine
from services.featurizer.core import Record
from tests.integration.test_validator import read_all

pytestmark = pytest.mark.integration

T0 = 1_733_011_200


def candle(t: int, close: float = 100.0) -> bytes:
    return Candle(
        symbol="BTC",
        time=t,
        open=100.0,
        high=max(close, 100.0) + 1,
        low=min(close, 100.0) - 1,
        close=close,
        volumefrom=1.0,
        volumeto=close,
    ).to_bytes()


async def test_late_letters_are_sent_once_by_restarted_workers(settings: Settings) -> None:
    await kafka.ensure_topics(settings)
    records = [Record(0, i, b"BTC", candle(T0 + 60 * i)) for i in range(30)]
    late = [Record(0, 30 + j, b"BTC", candle(T0 + 60 * (5 * j), close=99.0)) for j in range(3)]
    for _ in range(3):  # each incarnation processes the uncommitted records from the start
        worker = StreamFeaturizer(None, settings, new_engine())  # type: ignore[arg-type]
        worker.producer = kafka.make_producer(settings)
        await worker.producer.start()
        try:
            out = worker.engine.process([*records, *late])
            assert [d.codes for d in out.dead] == [["late"]] * 3
            await asyncio.gather(*await worker._publish(out))
        finally:
            await worker.producer.stop()
    letters = [DeadLetter.from_bytes(x) for x in await read_all(settings, TICKS_DLQ, expect=3)]
    assert sorted(d.letter_id or "" for d in letters) == [
        f"{TICKS_CLEAN}:0:{30 + j}:-" for j in range(3)
    ]
    assert worker.letters.skipped == 3
