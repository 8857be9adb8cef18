"""Start-up recovery: checkpoints catch up with batches already on ticks.raw (kill -9 window)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common import kafka
from services.common.settings import Settings
from services.ingestor.app import Publisher
from services.ingestor.checkpoint import CheckpointStore
from services.ingestor.recover import reconcile

pytestmark = pytest.mark.integration


def rows(first: int, n: int) -> list[dict]:
    return [{"time": first + 60 * i, "close": 1.0} for i in range(n)]


async def test_checkpoints_move_up_to_the_log(settings: Settings, tmp_path: Path) -> None:
    await kafka.ensure_topics(settings)
    producer = kafka.make_producer(settings)
    await producer.start()
    try:
        # what a killed ingestor got acknowledged but never recorded in its checkpoint file
        lost = Publisher.to_kafka(producer, CheckpointStore(tmp_path / "lost"), chunk_size=1)
        await lost.publish("BTC", rows(0, 300), "live")  # 300 batches: more than the look-back
        await lost.publish("ETH", rows(6000, 10), "backfill")
        await lost.publish("BTC", rows(10**6, 5), "replay")  # replay has its own checkpoint
    finally:
        await producer.stop()
    store = CheckpointStore.under(settings.data_dir)
    store.save("BTC", 60 * 100)  # the file lags behind the log
    store.save("SOL", 42)  # a symbol with nothing on the log keeps its checkpoint
    assert await reconcile(settings, store) == {"BTC": 60 * 299, "ETH": 6000 + 60 * 9}
    assert (store.load("BTC"), store.load("ETH"), store.load("SOL")) == (60 * 299, 6540, 42)
    assert await reconcile(settings, store) == {}  # idempotent


async def test_empty_topic_moves_nothing(settings: Settings) -> None:
    await kafka.ensure_topics(settings)
    store = CheckpointStore.under(settings.data_dir)
    assert await reconcile(settings, store) == {}
