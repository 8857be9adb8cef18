"""Read back a partition of ``ticks.clean``: the input of a state rebuild.

A plain, group-less aiokafka consumer assigned to one partition reads from the log start up to
(not including) a given offset. ``ticks.clean`` keeps 14 days, more than the week of history the
online features need.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from services.common import kafka
from services.common.errors import BrokerError
from services.common.settings import Settings
from services.common.topics import TICKS_CLEAN
from services.featurizer.core import Record

log = logging.getLogger(__name__)


async def read_partition(
    settings: Settings, partition: int, upto: int, timeout_s: float = 120.0
) -> list[Record]:
    """The records of ``ticks.clean[partition]`` with offsets below ``upto``, in order."""
    tp = TopicPartition(TICKS_CLEAN, partition)
    consumer = kafka.make_consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        consumer.assign([tp])
        start = (await consumer.beginning_offsets([tp]))[tp]
        if upto <= start:
            return []
        consumer.seek(tp, start)
        return await _drain(consumer, tp, upto, timeout_s)
    finally:
        await consumer.stop()


async def _drain(
    consumer: AIOKafkaConsumer, tp: TopicPartition, upto: int, timeout_s: float
) -> list[Record]:
    out: list[Record] = []
    deadline = time.monotonic() + timeout_s
    last = -1
    while last < upto - 1:
        if time.monotonic() > deadline:
            raise BrokerError(f"{tp}: history read stalled at offset {last} of {upto}")
        batch = await consumer.getmany(tp, timeout_ms=500, max_records=20_000)
        for rec in batch.get(tp, ()):
            last = rec.offset
            if rec.offset < upto:
                out.append(Record(tp.partition, rec.offset, rec.key, rec.value or b""))
        await asyncio.sleep(0)
    return out
