"""The dedup watermarks and emitted history, recovered from ticks.clean: the output is the truth.

A crash between producing candles and committing the input offset replays the batch; the candles
already on ticks.clean set the symbol's mark, so the replay emits nothing twice. A symbol's
:class:`History` is looked up lazily, the first time it is seen after start-up or a rebalance, by
reading its ticks.clean partition backwards in windows until its last candle turns up, and on
until a candle older than the history's window (or the partition's start): so the values of
every minute emitted in the window come back too, and a revision after a restart is still seen.

Tansu reports a partition's end offset as the base offset of its last record batch plus one (see
shared/MEASURED.md), so the newest window is read to the true end with
:func:`services.common.kafka.read_log`, which takes the end from the fetch's high watermark.
"""

from __future__ import annotations

import logging

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition

from services.common.kafka import Until, read_log
from services.validator.core import WINDOW_S, History, Mark, Values, values_of

log = logging.getLogger(__name__)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the default (murmur2) partitioner gives ``key``: where its candles are.

    >>> partition_for(b"BTC", 3) == partition_for(b"BTC", 3)
    True
    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Marks:
    """Each symbol's emitted :class:`History`, recovered once from the output topic."""

    def __init__(
        self,
        reader: AIOKafkaConsumer,
        topic: str,
        window: int = 2000,
        history_s: int = WINDOW_S,
    ) -> None:
        self.reader = reader
        self.topic = topic
        self.window = window
        self.history_s = history_s
        self._marks: dict[str, History] = {}

    def forget(self) -> None:
        """Drop every history (after a rebalance: another instance may have emitted since)."""
        self._marks.clear()

    def set(self, symbol: str, history: History) -> None:
        self._marks[symbol] = history

    def known(self, symbol: str) -> bool:
        """Whether the symbol's history is at hand (no read of ticks.clean needed)."""
        return symbol in self._marks

    def cached(self, symbol: str) -> History:
        """The symbol's history, once :meth:`get` recovered it."""
        return self._marks[symbol]

    async def get(self, symbol: str) -> History:
        """The symbol's history, read from ticks.clean the first time it is asked for."""
        if symbol not in self._marks:
            found = self._marks[symbol] = await self.recover(symbol)
            log.info(
                "mark recovered",
                extra={
                    "symbol": symbol,
                    "mark": found.mark,
                    "minutes": len(found.values),
                    "topic": self.topic,
                },
            )
        return self._marks[symbol]

    async def recover(self, symbol: str) -> History:
        """Scan the symbol's partition backwards, window by window, until the history is whole."""
        key = symbol.encode()
        empty = History(window_s=self.history_s)
        parts = self.reader.partitions_for_topic(self.topic)
        if not parts:
            await self.reader.topics()  # refreshes the metadata
            parts = self.reader.partitions_for_topic(self.topic)
        if not parts:
            return empty
        tp = TopicPartition(self.topic, partition_for(key, len(parts)))
        begin = (await self.reader.beginning_offsets([tp]))[tp]
        end_hint = (await self.reader.end_offsets([tp]))[tp]
        lo, hi = max(begin, end_hint - 1 - self.window), None
        found: dict[int, tuple[Values, float]] = {}
        while True:
            found.update(await self._scan(tp, lo, hi, key))
            if found:
                horizon = max(found) - self.history_s
                if min(found) < horizon:
                    return self._history(found, horizon)
            if lo <= begin:
                return self._history(found, 0) if found else empty
            lo, hi = max(begin, lo - self.window), lo

    def _history(self, found: dict[int, tuple[Values, float]], since: int) -> History:
        """The history of the candles found (``since``: from when the record is whole)."""
        newest = max(found)
        horizon = newest - self.history_s
        values = {t: found[t][0] for t in sorted(found) if t >= horizon}
        mark = Mark(newest, found[newest][1])
        return History(mark, values, max(since, horizon), self.history_s)

    async def _scan(
        self, tp: TopicPartition, lo: int, hi: int | None, key: bytes
    ) -> dict[int, tuple[Values, float]]:
        """The candles keyed ``key`` in offsets [lo, hi) (hi None: to the end), by time."""
        until = Until.end() if hi is None else Until.at({tp: hi})
        out: dict[int, tuple[Values, float]] = {}
        async for batch in read_log(self.reader, {tp: lo}, until, max_records=5000):
            for rec in batch:
                if rec.key == key:
                    _add(out, rec.value)
        return out


def _add(out: dict[int, tuple[Values, float]], value: bytes | None) -> None:
    """Note the candle in ``value`` (a non-candle is ignored)."""
    try:
        doc = orjson.loads(value or b"")
        out[int(doc["time"])] = (values_of(doc), float(doc["close"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return
