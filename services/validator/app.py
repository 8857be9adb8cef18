"""The validator's I/O shell: poll ticks.raw, judge, send candles and dead letters, then commit.

Delivery is at-least-once: the input offsets are committed only after every output of the poll is
acknowledged (a failed send raises, and the process exits for the supervisor to restart it). A
replay after a crash is harmless, because the marks come back from ticks.clean.

**Publish and move on.** A poll's outputs are queued on the producer and the loop goes back to
``getmany``: a :class:`~services.common.committer.Committer` awaits the acks poll after poll, in
order, and commits the positions reached, so a live candle never waits for the previous one's
acks and commit. Whatever is read back from the output topics (a symbol's marks, the ledger of
dead letters) is read only once nothing is in flight, and before partitions are revoked the
in-flight polls are acked and committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError
from aiokafka.structs import TopicPartition

from services.common import kafka, ledger
from services.common.committer import Committer
from services.common.schemas import DeadLetterReason
from services.common.settings import Settings
from services.common.topics import TICKS_CLEAN, TICKS_DLQ, TICKS_RAW
from services.validator import core
from services.validator.marks import Marks
from services.validator.metrics import ValidatorMetrics
from services.validator.settings import ValidatorSettings

log = logging.getLogger(__name__)


class _ForgetOnAssign(ConsumerRebalanceListener):
    """After a rebalance another instance may have emitted for our symbols: re-read the marks.
    Before a revocation, the in-flight polls are acked and committed (``before_revoke``)."""

    def __init__(self, marks: Marks, letters: ledger.Ledger) -> None:
        self.marks = marks
        self.letters = letters
        self.before_revoke: Callable[[], Awaitable[None]] | None = None

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if self.before_revoke is not None:
            await self.before_revoke()

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
        self.committer: Committer | None = None
        self.backoff: kafka.IdleBackoff | None = None
        self._failure: BaseException | None = None

    async def start(self) -> None:
        """Create the topics if needed, then the clients; join the group."""
        await kafka.ensure_topics(self.settings)
        self.consumer = kafka.make_consumer(group_id=self.options.group_id, settings=self.settings)
        self.producer = kafka.make_producer(self.settings)
        reader = kafka.make_consumer(group_id=None, settings=self.settings)
        self.marks = Marks(
            reader, TICKS_CLEAN, self.options.recover_window, self.options.revision_window_s
        )
        listener = _ForgetOnAssign(self.marks, self.letters)
        self.consumer.subscribe([TICKS_RAW], listener=listener)
        await asyncio.gather(self.consumer.start(), self.producer.start(), reader.start())
        wait_ms = kafka.CONSUMER_DEFAULTS["fetch_max_wait_ms"]
        self.backoff = kafka.IdleBackoff(
            self.consumer, wait_ms, self.options.idle_fetch_max_wait_ms
        )
        self._failure = None
        self.committer = Committer(self._commit, on_error=self._fail, name="validator-committer")
        self.committer.start()
        listener.before_revoke = self.committer.drain

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set, then flush: every poll's outputs acked, then committed."""
        await self.start()
        log.info("validator started", extra={"topic": TICKS_RAW, "group": self.options.group_id})
        try:
            while not stop.is_set():
                await self.step()
        finally:
            try:
                await self.stop_committer()
            finally:
                await self.consumer.stop()
                await self.producer.stop()
                await self.marks.reader.stop()
                log.info("validator stopped")

    async def stop_committer(self) -> None:
        """Commit every poll whose outputs are acked (re-raises a failed send or commit)."""
        committer, self.committer = self.committer, None
        if committer is not None:
            await committer.close()

    def _fail(self, exc: BaseException) -> None:
        self._failure = exc

    async def step(self) -> int:
        """One poll: judge every message, queue all outputs and the poll's commit (after their
        acks). Raises a failed send or commit of an earlier poll."""
        if self._failure is not None:
            raise self._failure
        polled = await self.consumer.getmany(
            timeout_ms=200, max_records=self.options.poll_max_records
        )
        if self.backoff is not None:
            self.backoff.update(bool(polled))
        if not polled:
            return 0
        started = time.perf_counter()
        messages = [
            (_source(tp, rec), rec.value or b"") for tp, recs in polled.items() for rec in recs
        ]
        parsed = [core.parse(payload) for _, payload in messages]
        await self.recall({b.symbol for b in parsed if not isinstance(b, DeadLetterReason)})
        verdicts = [
            self.judge(source, payload, batch)
            for (source, payload), batch in zip(messages, parsed, strict=True)
        ]
        positions = {tp.partition: recs[-1].offset + 1 for tp, recs in polled.items()}
        await self.send(verdicts, positions)
        self.metrics.observe(verdicts)
        self.metrics.processing.observe(time.perf_counter() - started)
        return len(verdicts)

    async def recall(self, symbols: set[str]) -> None:
        """Make sure the marks of ``symbols`` are known; those read back from ticks.clean are
        read once every earlier output is acked, so the read sees them."""
        unknown = [s for s in symbols if not self.marks.known(s)]
        if unknown:
            await self.settle()
            for symbol in unknown:
                await self.marks.get(symbol)

    async def settle(self) -> None:
        """Wait until nothing is in flight (acked and committed)."""
        if self.committer is not None:
            await self.committer.drain()

    def judge(
        self, source: core.Source, payload: bytes, batch: core.RawBatch | DeadLetterReason
    ) -> core.Verdict:
        """The verdict on one message; a symbol's mark advances with every accepted batch."""
        if isinstance(batch, DeadLetterReason):
            verdict = core.malformed(payload, source, batch)
        else:
            history = self.marks.cached(batch.symbol)
            verdict = core.judge_batch(batch, payload, source, history, self.rules, self.clock())
            if verdict.history is not None:
                self.marks.set(batch.symbol, verdict.history)
        _log_verdict(verdict, source)
        return verdict

    async def send(self, verdicts: list[core.Verdict], positions: Mapping[int, int]) -> None:
        """Queue candles (keyed by symbol) and dead letters together, and the commit of
        ``positions`` once all of them are acked.

        A dead letter whose id is already on ticks.dlq (sent before a crash) is not sent again."""
        assert self.committer is not None, "start() first"
        clean = [(v.symbol.encode(), c) for v in verdicts if v.symbol for c in v.clean]
        dead = [d for v in verdicts for d in v.dead_letters]
        if dead and self.letters.ids is None:
            await self.settle()  # the ledger is read back from ticks.dlq: nothing in flight
        letters = [ledger.record(d) for d in await self.letters.fresh(dead)]
        futures = await kafka.queue_packed(self.producer, TICKS_CLEAN, clean)
        futures += await kafka.queue_packed(self.producer, TICKS_DLQ, letters)
        await self.committer.submit(futures, positions)

    async def _commit(self, positions: Mapping[int, int]) -> None:
        await self.commit({TopicPartition(TICKS_RAW, p): o for p, o in positions.items()})

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit; a rebalance in between only means the new owner replays (dedup covers it)."""
        try:
            await self.consumer.commit(offsets)
        except CommitFailedError as exc:
            log.warning("commit failed after a rebalance; the batch will replay", exc_info=exc)
            self.marks.forget()
            self.letters.forget()


def _source(tp: TopicPartition, rec: ConsumerRecord[Any, Any]) -> core.Source:
    key = rec.key.decode("utf-8", "replace") if rec.key is not None else None
    return core.Source(tp.topic, tp.partition, rec.offset, key)


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
