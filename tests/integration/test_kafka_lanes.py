"""Packed publishing hands a micro-batch to the producer without waiting for the broker, and
keeps each partition's records in call order (real broker)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.structs import TopicPartition

from services.common import kafka
from services.common.settings import Settings

pytestmark = pytest.mark.integration

TOPIC = "lanes"


async def test_queue_packed_returns_before_the_broker_and_keeps_call_order(
    settings: Settings,
) -> None:
    await kafka.ensure_topics(settings, specs=[], extra=[(TOPIC, 1)])
    # small batches: every call spans many batches on the one partition, so the producer needs
    # many round trips for each (aiokafka takes a partition's next batch only once the
    # previous one left in a request)
    producer = kafka.make_producer(settings, max_batch_size=2048)
    await producer.start()
    calls = [[(b"k", f"{c}:{i}".encode() * 20) for i in range(60)] for c in range(5)]
    futures = []
    try:
        await producer.partitions_for(TOPIC)  # metadata known: nothing left to wait for
        for records in calls:
            coro = kafka.queue_packed(producer, TOPIC, records)
            # the call completes without suspending once: it never waits for the producer
            with pytest.raises(StopIteration) as done:
                coro.send(None)
            futures += done.value.value
        await asyncio.wait_for(asyncio.gather(*futures), 30)
    finally:
        await producer.stop()
    consumer = kafka.make_consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        tp = TopicPartition(TOPIC, 0)
        got = [
            r.value
            async for batch in kafka.read_log(consumer, {tp: 0}, kafka.Until.end())
            for r in batch
        ]
    finally:
        await consumer.stop()
    assert got == [v for records in calls for _, v in records]
