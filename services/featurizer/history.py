"""Read back the part of a ``ticks.clean`` partition a state rebuild needs: no more.

A rebuild replays a partition's log into a fresh state, and the state keeps only the last
``HISTORY_MINUTES`` of each symbol's candles (:meth:`~services.featurizer.core.Featurizer.rebuild`).
So the read starts where each symbol's kept history starts, not at the partition's start: its cost
follows the history the features need, not the retention nor the log's length.

Where to start is found on the candles' own ``time``, by a binary search over offsets that reads
one record per probe (:func:`first_offset_at`). Not by ``offsets_for_times``: the broker timestamp
is the publish time (a replayed or backfilled history is stamped "now"), and the embedded Tansu
broker answers offset 0 for every timestamp anyway.

Exactness. The triage is per symbol and the validator publishes each symbol's candles in
increasing time, so a rebuild from offset ``S`` keeps what a rebuild from the partition's start
keeps as soon as, for every symbol, the read holds one of its candles at or before its newest
time minus the history (everything of it before ``S`` is then older, and dropped by the rebuild
either way). :func:`uncovered` checks exactly that after each read; a symbol it names gets the
search again, further back, and if that cannot help (a symbol with less history than the
window) the rest of the partition is read: slower, never wrong. A symbol with no candle at all
after ``S`` goes unseen by that check, so a sample of the log before ``S`` must hold no candle
newer than the cut (:func:`_out_of_order`; a backfill laid out per symbol fails it, and the rest
is read). A symbol silent since before ``S`` in a log in time order is silent for longer than
the window: its next candle has no earlier candle within any feature window either.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import aclosing

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from services.common import kafka
from services.common.features.spec import HISTORY_MINUTES
from services.common.kafka import Until
from services.common.settings import Settings
from services.common.topics import TICKS_CLEAN
from services.featurizer.core import Record

log = logging.getLogger(__name__)

#: Read this much further back than the newest candle asks: symbols a little behind the newest
#: one are then covered by the first search, without a second (~0.6 % more records).
MARGIN_S = 3600
#: Candles sampled before the start found, to catch a log not laid out in time order.
SAMPLES = 8
#: The search stops this many records short of the exact start: reading them costs less than
#: the probes it would take to skip them.
TOLERANCE = 2048


async def read_partition(
    settings: Settings,
    partition: int,
    upto: int,
    history_s: int = HISTORY_MINUTES * 60,
    stall_s: float = 60.0,
) -> list[Record]:
    """The records of ``ticks.clean[partition]`` below ``upto`` that a rebuild keeping
    ``history_s`` of each symbol needs, in offset order (see the module docstring).

    Raises :class:`~services.common.errors.BrokerError` when a read stops progressing for
    ``stall_s``, rather than rebuilding from a short history.
    """
    tp = TopicPartition(TICKS_CLEAN, partition)
    consumer = kafka.make_consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        begin = (await consumer.beginning_offsets([tp]))[tp]
        if upto <= begin:
            return []
        start, records = await _history(consumer, tp, begin, upto, history_s, stall_s)
        log.info(
            "history read",
            extra={
                "topic": TICKS_CLEAN,
                "partition": partition,
                "offset": upto,
                "from_offset": start,
                "log_start": begin,
                "records": len(records),
            },
        )
        return records
    finally:
        await consumer.stop()


async def _history(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    begin: int,
    upto: int,
    history_s: int,
    stall_s: float,
) -> tuple[int, list[Record]]:
    """Where the read started, and the records from there to ``upto``."""
    newest = await _time_at(consumer, tp, upto - 1, upto, stall_s)
    if newest is None:
        return begin, await _read(consumer, tp, begin, upto, stall_s)
    cut = newest - history_s - MARGIN_S
    start, records = upto, list[Record]()
    while start > begin:
        hi, start = start, await first_offset_at(consumer, tp, begin, start, cut, stall_s)
        records = await _read(consumer, tp, start, hi, stall_s) + records
        short = uncovered(records, history_s)
        if not short:
            if not await _out_of_order(consumer, tp, begin, start, cut + MARGIN_S, stall_s):
                return start, records
        elif (needed := min(short.values()) - MARGIN_S) < cut and start < hi:
            cut = needed  # search again, further back, for the symbols behind
            continue
        # the search cannot be trusted here: read the rest
        return begin, await _read(consumer, tp, begin, start, stall_s) + records
    return start, records


async def _out_of_order(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    lo: int,
    hi: int,
    late: int,
    stall_s: float,
    probes: int = SAMPLES,
) -> bool:
    """Whether a sample of the candles in [lo, hi) holds one at or after ``late``: candles laid
    out out of time order (e.g. a backfill per symbol), where the search may skip a symbol."""
    step = max(1, (hi - lo) // probes)
    for offset in range(lo, hi, step):
        t = await _time_at(consumer, tp, offset, min(hi, offset + step), stall_s)
        if t is not None and t >= late:
            return True
    return False


async def first_offset_at(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    lo: int,
    hi: int,
    cut: int,
    stall_s: float,
    tolerance: int = TOLERANCE,
) -> int:
    """An offset in [lo, hi] at most ``tolerance`` before the first one whose candle time is
    >= ``cut`` (``hi`` when none is), times taken as increasing with offset; one record read
    per probe.

    Interpolation on the probed times (a steady log is close to linear in time) takes a few
    probes; a step that does not halve the range is followed by a bisection, so it never takes
    more than about twice a binary search. A probe that finds no candle counts as late enough:
    the search errs towards reading more.
    """
    t_lo: int | None = None  # the candle time just below lo, when probed
    t_hi: int | None = None  # the candle time at hi, when probed
    interpolate = False
    while hi - lo > tolerance:
        width = hi - lo
        mid = (lo + hi) // 2
        if interpolate and t_lo is not None and t_hi is not None and t_hi > t_lo:
            mid = lo + int((cut - t_lo) / (t_hi - t_lo) * width)
            mid = min(max(mid, lo), hi - 1)
        t = await _time_at(consumer, tp, mid, hi, stall_s)
        if t is None or t >= cut:
            hi, t_hi = mid, t
        else:
            lo, t_lo = mid + 1, t
        interpolate = hi - lo <= width // 2
    return lo


def uncovered(records: Sequence[Record], history_s: int) -> dict[str, int]:
    """Symbols whose oldest candle in ``records`` is later than their newest minus
    ``history_s``, each with the time its history should reach back to.

    >>> def rec(off, sym, t):
    ...     return Record(0, off, sym.encode(), b'{"symbol":"%s","time":%d}' % (sym.encode(), t))
    >>> uncovered([rec(0, "A", 0), rec(1, "B", 180), rec(2, "A", 600), rec(3, "B", 660)], 540)
    {'B': 120}
    """
    first: dict[bytes | None, int] = {}
    last: dict[bytes | None, int] = {}
    for i, rec in enumerate(records):
        first.setdefault(rec.key, i)
        last[rec.key] = i
    short = {}
    for key, i in first.items():
        old = _first_time(records, range(i, last[key] + 1), key)
        new = _first_time(records, range(last[key], i - 1, -1), key)
        if old is not None and new is not None and old > new - history_s:
            short[(key or b"").decode(errors="replace")] = new - history_s
    return short


def _first_time(records: Sequence[Record], indices: range, key: bytes | None) -> int | None:
    """The candle time of the first record keyed ``key`` at ``indices`` holding one."""
    for i in indices:
        if records[i].key == key and (t := _candle_time(records[i].value)) is not None:
            return t
    return None


def _candle_time(value: bytes | None) -> int | None:
    try:
        t = orjson.loads(value or b"")["time"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return t if isinstance(t, int) else None


async def _time_at(
    consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, hi: int, stall_s: float = 60.0
) -> int | None:
    """The candle time of the first record at or after ``offset`` (below ``hi``) holding one."""
    until = Until.at({tp: hi})
    probe = kafka.read_log(consumer, {tp: offset}, until, max_records=1, stall_s=stall_s)
    async with aclosing(probe) as log_:
        async for batch in log_:
            for rec in batch:
                if (t := _candle_time(rec.value)) is not None:
                    return t
    return None


async def _read(
    consumer: AIOKafkaConsumer, tp: TopicPartition, lo: int, hi: int, stall_s: float
) -> list[Record]:
    if lo >= hi:
        return []
    return [
        Record(tp.partition, r.offset, r.key, r.value or b"")
        async for batch in kafka.read_log(consumer, {tp: lo}, Until.at({tp: hi}), stall_s=stall_s)
        for r in batch
    ]
