"""Recover checkpoints from the log itself, closing the window a kill -9 can leave.

The checkpoint file is written right after the broker acknowledges a batch. A kill between the
ack (or even the send) and that write leaves batches on ``ticks.raw`` that the file does not know,
and a restart would publish them again. So at start-up the ingestor reads the tail of every
``ticks.raw`` partition and moves each symbol's checkpoint up to the newest candle already there.

The tail is read from a little before the reported end offset to the true end
(:func:`services.common.kafka.read_log`, which does not trust the embedded broker's reported end
offsets: they can undercount).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import orjson

from services.common import kafka
from services.common.kafka import Until
from services.common.settings import Settings
from services.common.topics import TICKS_RAW
from services.ingestor.checkpoint import CheckpointStore
from services.ingestor.core import newest_time

log = logging.getLogger(__name__)


def newest_per_symbol(values: Iterable[bytes], sources: tuple[str, ...]) -> dict[str, int]:
    """The newest candle time per symbol among RawBatch values from ``sources``.

    >>> v = [b'{"symbol":"BTC","source":"live","candles":[{"time":60},{"time":120}]}',
    ...      b'{"symbol":"BTC","source":"replay","candles":[{"time":999}]}', b'not json']
    >>> newest_per_symbol(v, ("live", "backfill"))
    {'BTC': 120}
    """
    newest: dict[str, int] = {}
    for value in values:
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(doc, dict) or doc.get("source") not in sources:
            continue
        symbol, candles = doc.get("symbol"), doc.get("candles")
        t = newest_time(candles) if isinstance(candles, list) else None
        if isinstance(symbol, str) and t is not None and t > newest.get(symbol, t - 1):
            newest[symbol] = t
    return newest


async def tail_values(settings: Settings, lookback: int = 200) -> list[bytes]:
    """The last ``lookback`` (or more) values of every ``ticks.raw`` partition."""
    consumer = kafka.make_consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        tps = await kafka.topic_partitions(consumer, TICKS_RAW)
        if not tps:
            return []
        begins, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        start = {tp: max(begins[tp], ends[tp] - lookback) for tp in tps}
        return [
            r.value
            async for batch in kafka.read_log(consumer, start, Until.end())
            for r in batch
            if r.value
        ]
    finally:
        await consumer.stop()


async def reconcile(
    settings: Settings, store: CheckpointStore, sources: tuple[str, ...] = ("live", "backfill")
) -> dict[str, int]:
    """Move checkpoints up to what ``ticks.raw`` already holds; returns the ones moved."""
    moved = {}
    for symbol, t in newest_per_symbol(await tail_values(settings), sources).items():
        current = store.load(symbol)
        if current is None or t > current:
            store.save(symbol, t)
            moved[symbol] = t
            log.warning(
                "checkpoint advanced to what ticks.raw already holds",
                extra={"symbol": symbol, "candle_time": t, "file_checkpoint": current},
            )
    return moved
