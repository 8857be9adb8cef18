"""The dedup watermarks, recovered from ticks.clean itself: the output is the source of truth.

A crash between producing candles and committing the input offset replays the batch; the candles
already on ticks.clean set the symbol's mark, so the replay emits nothing twice. A mark is looked
up lazily, the first time a symbol is seen after start-up or a rebalance, by reading the symbol's
ticks.clean partition backwards in windows until its last candle turns up.

Tansu reports a partition's end offset as the base offset of its last record batch plus one (see
shared/MEASURED.md), so the newest window is read until the partition runs dry rather than up to
the reported end; on Kafka/Redpanda the same read is simply exact.
"""

from __future__ import annotations

import logging

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition

from services.validator.core import Mark

log = logging.getLogger(__name__)

#: How long an empty fetch must stay empty before a partition counts as read to its end.
DRY_MS = 300


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the default (murmur2) partitioner gives ``key``: where its candles are.

    >>> partition_for(b"BTC", 3) == partition_for(b"BTC", 3)
    True
    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Marks:
    """Last emitted (time, close) per symbol, each recovered once from the output topic."""

    def __init__(self, reader: AIOKafkaConsumer, topic: str, window: int = 2000) -> None:
        self.reader = reader
        self.topic = topic
        self.window = window
        self._marks: dict[str, Mark | None] = {}

    def forget(self) -> None:
        """Drop every mark (after a rebalance: another instance may have emitted since)."""
        self._marks.clear()

    def set(self, symbol: str, mark: Mark) -> None:
        self._marks[symbol] = mark

    async def get(self, symbol: str) -> Mark | None:
        """The symbol's mark, read from ticks.clean the first time it is asked for."""
        if symbol not in self._marks:
            self._marks[symbol] = await self.recover(symbol)
            log.info(
                "mark recovered",
                extra={"symbol": symbol, "mark": self._marks[symbol], "topic": self.topic},
            )
        return self._marks[symbol]

    async def recover(self, symbol: str) -> Mark | None:
        """Scan the symbol's partition backwards, window by window, for its newest candle."""
        key = symbol.encode()
        parts = self.reader.partitions_for_topic(self.topic)
        if not parts:
            await self.reader.topics()  # refreshes the metadata
            parts = self.reader.partitions_for_topic(self.topic)
        if not parts:
            return None
        tp = TopicPartition(self.topic, partition_for(key, len(parts)))
        self.reader.assign([tp])
        begin = (await self.reader.beginning_offsets([tp]))[tp]
        end_hint = (await self.reader.end_offsets([tp]))[tp]
        lo, hi = max(begin, end_hint - 1 - self.window), None
        while True:
            found = await self._scan(tp, lo, hi, key)
            if found is not None or lo <= begin:
                return found
            lo, hi = max(begin, lo - self.window), lo

    async def _scan(self, tp: TopicPartition, lo: int, hi: int | None, key: bytes) -> Mark | None:
        """The newest candle keyed ``key`` in offsets [lo, hi) (hi None: to the end)."""
        self.reader.seek(tp, lo)
        best: Mark | None = None
        while True:
            got = (await self.reader.getmany(tp, timeout_ms=DRY_MS, max_records=5000)).get(tp, [])
            if not got:
                return best
            for rec in got:
                if hi is not None and rec.offset >= hi:
                    return best
                if rec.key == key:
                    best = _newer(best, rec.value)


def _newer(best: Mark | None, value: bytes | None) -> Mark | None:
    """The later of ``best`` and the candle in ``value`` (a non-candle is ignored)."""
    try:
        doc = orjson.loads(value or b"")
        mark = Mark(int(doc["time"]), float(doc["close"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return best
    return mark if best is None or mark.time > best.time else best
