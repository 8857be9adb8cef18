"""Read back a partition of ``ticks.clean``: the input of a state rebuild.

A plain, group-less aiokafka consumer assigned to one partition reads from the log start up to
(not including) a given offset, with :func:`services.common.kafka.read_log`. ``ticks.clean`` keeps
14 days, more than the week of history the online features need.
"""

from __future__ import annotations

import logging

from aiokafka.structs import TopicPartition

from services.common import kafka
from services.common.kafka import Until
from services.common.settings import Settings
from services.common.topics import TICKS_CLEAN
from services.featurizer.core import Record

log = logging.getLogger(__name__)


async def read_partition(
    settings: Settings, partition: int, upto: int, stall_s: float = 60.0
) -> list[Record]:
    """The records of ``ticks.clean[partition]`` with offsets below ``upto``, in order.

    Raises :class:`~services.common.errors.BrokerError` when the read stops progressing for
    ``stall_s``, rather than rebuilding from a short history.
    """
    tp = TopicPartition(TICKS_CLEAN, partition)
    consumer = kafka.make_consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        start = (await consumer.beginning_offsets([tp]))[tp]
        if upto <= start:
            return []
        return [
            Record(partition, r.offset, r.key, r.value or b"")
            async for batch in kafka.read_log(
                consumer, {tp: start}, Until.at({tp: upto}), stall_s=stall_s
            )
            for r in batch
        ]
    finally:
        await consumer.stop()
