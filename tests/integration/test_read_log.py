"""The one log reader (services.common.kafka.read_log) against the embedded Tansu broker,
one test per stopping rule, plus the broker's undercounted end offsets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from services.common import kafka
from services.common.errors import BrokerError
from services.common.kafka import Until, read_log
from services.common.settings import Settings

pytestmark = pytest.mark.integration

TOPIC = "readlog"
PARTS = 3


@pytest.fixture()
async def consumer(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    await kafka.ensure_topics(settings, specs=(), extra=[(TOPIC, PARTS)])
    c = kafka.make_consumer(group_id=None, settings=settings)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


def tps() -> list[TopicPartition]:
    return [TopicPartition(TOPIC, p) for p in range(PARTS)]


async def fill(settings: Settings, batches: int, per_batch: int) -> dict[int, int]:
    """Publish ``batches`` packed batches of ``per_batch`` records to each partition (values
    ``p:n`` counting up per partition); returns the record count per partition."""
    producer = kafka.make_producer(settings)
    await producer.start()
    counts = dict.fromkeys(range(PARTS), 0)
    try:
        for _ in range(batches):
            futures = []
            for p in range(PARTS):
                batch = producer.create_batch()
                for _ in range(per_batch + p):  # unequal partitions
                    assert batch.append(key=None, value=b"%d:%d" % (p, counts[p]), timestamp=None)
                    counts[p] += 1
                futures.append(await producer.send_batch(batch, TOPIC, partition=p))
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return counts


async def read_all(consumer: AIOKafkaConsumer, partitions: object, until: Until) -> list:
    return [r async for batch in read_log(consumer, partitions, until) for r in batch]  # type: ignore[arg-type]


def assert_contiguous(records: list, want: dict[int, range]) -> None:
    """Exactly the offsets ``want[p]`` of each partition, in order, carrying their own values."""
    for p, offsets in want.items():
        got = [r for r in records if r.partition == p]
        assert [r.offset for r in got] == list(offsets), f"partition {p}"
        assert [r.value for r in got] == [b"%d:%d" % (p, o) for o in offsets]
    assert len(records) == sum(len(o) for o in want.values())


async def test_end_reads_every_record_although_reported_ends_undercount(
    settings: Settings, consumer: AIOKafkaConsumer
) -> None:
    counts = await fill(settings, batches=40, per_batch=500)  # ~60k records in 120 batches
    reported = await consumer.end_offsets(tps())
    # the quirk this rule must survive (shared/MEASURED.md): ListOffsets answers short
    assert any(reported[tp] < counts[tp.partition] for tp in tps()), reported
    records = await read_all(consumer, tps(), Until.end())
    assert_contiguous(records, {p: range(n) for p, n in counts.items()})


async def test_end_from_given_offsets_and_on_an_empty_partition(
    settings: Settings, consumer: AIOKafkaConsumer
) -> None:
    counts = await fill(settings, batches=3, per_batch=100)
    await kafka.ensure_topics(settings, specs=(), extra=[("readlog.empty", 1)])
    empty = TopicPartition("readlog.empty", 0)
    start = {tps()[0]: 250, tps()[1]: 0, tps()[2]: counts[2], empty: 0}
    records = await read_all(consumer, start, Until.end())
    assert_contiguous(records, {0: range(250, counts[0]), 1: range(counts[1]), 2: range(0)})


async def test_at_stops_at_each_explicit_offset(
    settings: Settings, consumer: AIOKafkaConsumer
) -> None:
    counts = await fill(settings, batches=5, per_batch=400)
    stops = {tps()[0]: 777, tps()[1]: 0, tps()[2]: counts[2]}
    records = await read_all(consumer, {tp: 0 for tp in tps()}, Until.at(stops))
    assert_contiguous(records, {0: range(777), 1: range(0), 2: range(counts[2])})
    with pytest.raises(ValueError, match="no offset"):
        await read_all(consumer, tps(), Until.at({tps()[0]: 1}))


async def test_at_past_the_end_raises_rather_than_returning_short(
    settings: Settings, consumer: AIOKafkaConsumer
) -> None:
    await fill(settings, batches=1, per_batch=10)
    with pytest.raises(BrokerError, match="stalled at offset 10 of 50"):
        async for _ in read_log(consumer, [tps()[0]], Until.at({tps()[0]: 50}), stall_s=1.0):
            pass


async def test_idle_waits_for_a_topic_still_being_fed(
    settings: Settings, consumer: AIOKafkaConsumer
) -> None:
    async def feed() -> dict[int, int]:
        total = dict.fromkeys(range(PARTS), 0)
        for _ in range(5):  # gaps well under the idle period
            await asyncio.sleep(0.3)
            for p, n in (await fill_more(settings, total)).items():
                total[p] = n
        return total

    feeder = asyncio.create_task(feed())
    records = await read_all(consumer, tps(), Until.idle(1500))
    counts = await feeder
    assert_contiguous(records, {p: range(n) for p, n in counts.items()})


async def fill_more(settings: Settings, counts: dict[int, int]) -> dict[int, int]:
    """One more batch of 50 per partition, continuing the ``p:n`` numbering."""
    producer = kafka.make_producer(settings)
    await producer.start()
    try:
        records = [(p, b"%d:%d" % (p, counts[p] + i)) for p in range(PARTS) for i in range(50)]
        await asyncio.gather(
            *[await producer.send(TOPIC, value=v, partition=p) for p, v in records]
        )
    finally:
        await producer.stop()
    return {p: counts[p] + 50 for p in range(PARTS)}


async def test_follow_keeps_reading_until_the_caller_breaks(
    settings: Settings, consumer: AIOKafkaConsumer
) -> None:
    counts = await fill(settings, batches=2, per_batch=100)
    seen = 0
    async with asyncio.timeout(30):
        async for batch in read_log(consumer, tps(), Until.follow()):
            seen += len(batch)
            if seen == sum(counts.values()):
                break
    more = await fill_more(settings, counts)
    tail = await read_all(consumer, {tp: counts[tp.partition] for tp in tps()}, Until.end())
    assert_contiguous(tail, {p: range(counts[p], more[p]) for p in range(PARTS)})
