"""Batched publishing lands each key on the partition ``producer.send`` picks (real broker)."""

from __future__ import annotations

import asyncio

import pytest

from services.common import kafka
from services.common.settings import Settings
from services.common.topics import FEATURES

pytestmark = pytest.mark.integration

KEYS = [k.encode() for k in ("BTC", "ETH", "SOL", "XRP", "ADA", "DOGE", "BNB", "LTC", "DOT")]


async def test_queue_packed_matches_the_default_partitioner(settings: Settings) -> None:
    await kafka.ensure_topics(settings)
    producer = kafka.make_producer(settings)
    await producer.start()
    try:
        for k in KEYS:
            await (await producer.send(FEATURES, b"one", k))
        await asyncio.gather(
            *await kafka.queue_packed(producer, FEATURES, [(k, b"batched") for k in KEYS])
        )
    finally:
        await producer.stop()
    consumer = kafka.make_consumer(FEATURES, group_id=None, settings=settings)
    await consumer.start()
    seen: dict[bytes, dict[bytes, int]] = {}
    try:
        async with asyncio.timeout(30):
            while sum(len(v) for v in seen.values()) < 2 * len(KEYS):
                for tp, recs in (await consumer.getmany(timeout_ms=300)).items():
                    for r in recs:
                        seen.setdefault(r.key, {})[r.value] = tp.partition
    finally:
        await consumer.stop()
    assert set(seen) == set(KEYS)
    assert all(parts[b"one"] == parts[b"batched"] for parts in seen.values())
    assert len({parts[b"one"] for parts in seen.values()}) > 1
