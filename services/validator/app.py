"""The validator's I/O shell: poll ticks.raw, judge, send candles and dead letters, then commit.

Delivery is at-least-once: the input offsets are committed only after every output of the poll is
acknowledged (``send_batch`` raises otherwise, and the process exits for the supervisor to restart
it). A replay after a crash is harmless, because the marks come back from ticks.clean.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError
from aiokafka.structs import TopicPartition

from services.common import kafka, ledger
from services.common.schemas import DeadLetterReason
from services.common.settings import Settings
from services.common.topics import TICKS_CLEAN, TICKS_DLQ, TICKS_RAW
from services.validator import core
from services.validator.marks import Marks
from services.validator.metrics import ValidatorMetrics
from services.validator.settings import ValidatorSettings

log = logging.getLogger(__name__)


class _ForgetOnAssign(ConsumerRebalanceListener):
    """After a rebalance another instance may have emitted for our symbols: re-read the marks."""

    def __init__(self, marks: Marks, letters: ledger.Ledger) -> None:
        self.marks = marks
        self.letters = letters

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.marks.forget()
        self.letters.forget()


class Validator:
    """The stage: one consumer (group ``validator``), one producer, one reader for the marks."""

    def __init__(
        self,
        settings: Settings,
        options: ValidatorSettings,
        metrics: ValidatorMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.options = options
        self.rules = options.rules()
        self.metrics = metrics
        self.clock = clock
        # the clients need the running loop: they are made in start()
        self.consumer: AIOKafkaConsumer
        self.producer: AIOKafkaProducer
        self.marks: Marks
        self.letters = ledger.Ledger(settings, TICKS_RAW)

    async def start(self) -> None:
        """Create the topics if needed, then the clients; join the group."""
        await kafka.ensure_topics(self.settings)
        self.consumer = kafka.make_consumer(group_id=self.options.group_id, settings=self.settings)
        self.producer = kafka.make_producer(self.settings)
        reader = kafka.make_consumer(group_id=None, settings=self.settings)
        self.marks = Marks(
            reader, TICKS_CLEAN, self.options.recover_window, self.options.revision_window_s
        )
        self.consumer.subscribe([TICKS_RAW], listener=_ForgetOnAssign(self.marks, self.letters))
        await asyncio.gather(self.consumer.start(), self.producer.start(), reader.start())

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; each poll is committed before the next one starts."""
        await self.start()
        log.info("validator started", extra={"topic": TICKS_RAW, "group": self.options.group_id})
        try:
            while not stop.is_set():
                await self.step()
        finally:
            await self.consumer.stop()
            await self.producer.stop()
            await self.marks.reader.stop()
            log.info("validator stopped")

    async def step(self) -> int:
        """One poll: judge every message, send all outputs, wait for the acks, commit."""
        polled = await self.consumer.getmany(
            timeout_ms=200, max_records=self.options.poll_max_records
        )
        if not polled:
            return 0
        started = time.perf_counter()
        verdicts = [await self.judge(tp, rec) for tp, recs in polled.items() for rec in recs]
        await self.send(verdicts)
        await self.commit({tp: recs[-1].offset + 1 for tp, recs in polled.items()})
        for v in verdicts:
            self.metrics.observe(v)
        self.metrics.processing.observe(time.perf_counter() - started)
        return len(verdicts)

    async def judge(self, tp: TopicPartition, rec: ConsumerRecord[Any, Any]) -> core.Verdict:
        """The verdict on one message; a symbol's mark advances with every accepted batch."""
        key = rec.key.decode("utf-8", "replace") if rec.key is not None else None
        source = core.Source(tp.topic, tp.partition, rec.offset, key)
        payload = rec.value or b""
        batch = core.parse(payload)
        if isinstance(batch, DeadLetterReason):
            verdict = core.malformed(payload, source, batch)
        else:
            history = await self.marks.get(batch.symbol)
            verdict = core.judge_batch(batch, payload, source, history, self.rules, self.clock())
            if verdict.history is not None:
                self.marks.set(batch.symbol, verdict.history)
        _log_verdict(verdict, source)
        return verdict

    async def send(self, verdicts: list[core.Verdict]) -> None:
        """Send candles (keyed by symbol) and dead letters together; raise unless all are acked.

        A dead letter whose id is already on ticks.dlq (sent before a crash) is not sent again."""
        clean = [(v.symbol.encode(), c) for v in verdicts if v.symbol for c in v.clean]
        fresh = await self.letters.fresh([d for v in verdicts for d in v.dead_letters])
        letters = [ledger.record(d) for d in fresh]
        await asyncio.gather(
            kafka.send_batch_packed(self.producer, TICKS_CLEAN, clean),
            kafka.send_batch_packed(self.producer, TICKS_DLQ, letters),
        )

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit; a rebalance in between only means the new owner replays (dedup covers it)."""
        try:
            await self.consumer.commit(offsets)
        except CommitFailedError as exc:
            log.warning("commit failed after a rebalance; the batch will replay", exc_info=exc)
            self.marks.forget()
            self.letters.forget()


def _log_verdict(v: core.Verdict, source: core.Source) -> None:
    where = {"topic": source.topic, "partition": source.partition, "offset": source.offset}
    if v.outcome != "accepted":
        codes = [c for d in v.dead_letters for c in d.codes]
        log.warning(
            f"batch {v.outcome}",
            extra={**where, "symbol": v.symbol, "batch_id": v.batch_id, "codes": codes},
        )
    elif v.dead_letters or v.total("dropped"):
        bad = v.total("dead_letter") + v.total("dropped")
        log.info("bad rows in an accepted batch", extra={**where, "symbol": v.symbol, "rows": bad})
    for before, after, minutes in v.gaps:
        log.info(
            "gap in candles",
            extra={
                **where,
                "symbol": v.symbol,
                "candle_time": after,
                "after": before,
                "minutes": minutes,
            },
        )
