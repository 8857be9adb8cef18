"""The dead-letter tools' Kafka side: read ticks.dlq to its end, re-send to ticks.raw.

"The end" is the true end (:func:`services.common.kafka.read_log`): Tansu under-reports end
offsets (shared/MEASURED.md).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from services.common import kafka, lake
from services.common.errors import SchemaError
from services.common.kafka import Until
from services.common.schemas import DeadLetter
from services.common.settings import Settings
from services.common.topics import TICKS_DLQ, TICKS_RAW
from services.validator import dlq

log = logging.getLogger(__name__)

#: The consumer group whose committed offsets remember which dead letters were replayed.
REPLAY_GROUP = "dlq-replay"
#: The same, for the letters taken into the lake (its own position: both paths may run).
LAKE_GROUP = "dlq-lake"


async def _starts(consumer: AIOKafkaConsumer, from_start: bool) -> dict[TopicPartition, int]:
    """Every ticks.dlq partition with the group's offset (or its beginning)."""
    tps = await kafka.topic_partitions(consumer, TICKS_DLQ)
    begins = await consumer.beginning_offsets(tps) if tps else {}
    starts = {}
    for tp in tps:
        committed = None if from_start else await consumer.committed(tp)
        starts[tp] = begins[tp] if committed is None else committed
    return starts


async def _drain(
    consumer: AIOKafkaConsumer, from_start: bool
) -> tuple[list[DeadLetter], dict[TopicPartition, int]]:
    """Read to the end; returns the letters and the next offset per partition read."""
    letters: list[DeadLetter] = []
    positions: dict[TopicPartition, int] = {}
    async for batch in kafka.read_log(consumer, await _starts(consumer, from_start), Until.end()):
        for rec in batch:
            try:
                letters.append(DeadLetter.from_bytes(rec.value or b""))
            except SchemaError:
                log.warning(
                    "not a dead letter",
                    extra={"topic": rec.topic, "partition": rec.partition, "offset": rec.offset},
                )
            positions[TopicPartition(rec.topic, rec.partition)] = rec.offset + 1
    return letters, positions


async def read_letters(settings: Settings) -> list[DeadLetter]:
    """Every dead letter on ticks.dlq, oldest first per partition."""
    consumer = kafka.make_consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        letters, _ = await _drain(consumer, from_start=True)
    finally:
        await consumer.stop()
    return letters


@asynccontextmanager
async def _taken(
    settings: Settings, group: str, from_start: bool
) -> AsyncIterator[tuple[list[DeadLetter], Callable[[], Awaitable[None]]]]:
    """The letters the group has not taken yet (all with ``from_start``), and a ``commit`` to
    call once they are safely elsewhere."""
    await kafka.ensure_topics(settings)
    consumer = kafka.make_consumer(group_id=group, settings=settings)
    await consumer.start()
    try:
        letters, positions = await _drain(consumer, from_start)

        async def commit() -> None:
            if positions:
                await consumer.commit(positions)

        yield letters, commit
    finally:
        await consumer.stop()


async def replay_letters(
    settings: Settings, codes: set[str], from_start: bool, dry_run: bool
) -> tuple[int, int]:
    """Re-send the letters not replayed yet (all with ``from_start``); commit after the acks."""
    async with _taken(settings, REPLAY_GROUP, from_start) as (letters, commit):
        records, skipped = dlq.replay_records(letters, codes or None)
        if not dry_run:
            await kafka.publish(TICKS_RAW, records, settings)
            await commit()
    return len(records), skipped


async def replay_to_lake(
    settings: Settings, codes: set[str], from_start: bool, dry_run: bool
) -> tuple[int, int]:
    """Write the candles of the ``revised`` / ``late`` letters not taken yet into the lake
    (``DATA_DIR``), where the newest copy of a minute wins; commit after the write."""
    async with _taken(settings, LAKE_GROUP, from_start) as (letters, commit):
        candles, skipped = dlq.lake_candles(letters, codes or None)
        if not dry_run:
            lake.write_candles(settings.data_dir, candles)
            await commit()
    return len(candles), skipped
