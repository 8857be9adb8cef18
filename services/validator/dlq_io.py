"""The dead-letter tools' Kafka side: read ticks.dlq to its end, re-send to ticks.raw.

"The end" is when a fetch stays empty: Tansu under-reports end offsets (shared/MEASURED.md).
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from services.common import kafka
from services.common.errors import SchemaError
from services.common.schemas import DeadLetter
from services.common.settings import Settings
from services.common.topics import TICKS_DLQ, TICKS_RAW
from services.validator import dlq

log = logging.getLogger(__name__)

#: The consumer group whose committed offsets remember which dead letters were replayed.
REPLAY_GROUP = "dlq-replay"
DRY_MS = 1000


async def _assign(consumer: AIOKafkaConsumer, from_start: bool) -> list[TopicPartition]:
    """Every ticks.dlq partition, positioned at the group's offset (or the beginning)."""
    await consumer.topics()
    tps = [
        TopicPartition(TICKS_DLQ, p) for p in sorted(consumer.partitions_for_topic(TICKS_DLQ) or ())
    ]
    consumer.assign(tps)
    for tp in tps:
        committed = None if from_start else await consumer.committed(tp)
        if committed is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)
    return tps


async def _drain(consumer: AIOKafkaConsumer) -> tuple[list[DeadLetter], dict[TopicPartition, int]]:
    """Read until a fetch stays empty; returns the letters and the next offset per partition."""
    letters: list[DeadLetter] = []
    positions: dict[TopicPartition, int] = {}
    while batch := await consumer.getmany(timeout_ms=DRY_MS, max_records=10_000):
        for tp, records in batch.items():
            for rec in records:
                try:
                    letters.append(DeadLetter.from_bytes(rec.value or b""))
                except SchemaError:
                    log.warning(
                        "not a dead letter",
                        extra={"topic": tp.topic, "partition": tp.partition, "offset": rec.offset},
                    )
            positions[tp] = records[-1].offset + 1
    return letters, positions


async def read_letters(settings: Settings) -> list[DeadLetter]:
    """Every dead letter on ticks.dlq, oldest first per partition."""
    consumer = kafka.make_consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        await _assign(consumer, from_start=True)
        letters, _ = await _drain(consumer)
    finally:
        await consumer.stop()
    return letters


async def replay_letters(
    settings: Settings, codes: set[str], from_start: bool, dry_run: bool
) -> tuple[int, int]:
    """Re-send the letters not replayed yet (all with ``from_start``); commit after the acks."""
    await kafka.ensure_topics(settings)
    consumer = kafka.make_consumer(group_id=REPLAY_GROUP, settings=settings)
    await consumer.start()
    try:
        await _assign(consumer, from_start)
        letters, positions = await _drain(consumer)
        records, skipped = dlq.replay_records(letters, codes or None)
        if dry_run:
            return len(records), skipped
        await kafka.publish(TICKS_RAW, records, settings)
        if positions:
            await consumer.commit(positions)
    finally:
        await consumer.stop()
    return len(records), skipped
