"""The streaming featurizer's I/O shell: a faust-streaming app over ``ticks.clean``.

One agent reads adaptive micro-batches (:func:`.batching.take_until_idle`), rebuilds the state
of partitions it has not seen (or that moved on elsewhere) from the log, computes features with
:mod:`.core`,
publishes FeatureVectors and dead letters with one gathered send, waits for the broker's acks,
and only then commits the input offsets itself. The source topic has Faust's acks disabled, so
Faust's own periodic commit never runs ahead of a flush (the prototype's lost candle). Any
failure to publish or commit crashes the worker: it restarts from the committed offsets and
rebuilds its state exactly, re-publishing at most one batch (duplicates with equal values).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from faust.types import TP

from services.common import kafka, ledger
from services.common.committer import Committer
from services.common.settings import Settings
from services.common.topics import FEATURES, TICKS_CLEAN, TICKS_DLQ
from services.featurizer import metrics, transport
from services.featurizer.batching import Busy, take_until_idle
from services.featurizer.core import Featurizer, Outcome, RecordLike
from services.featurizer.history import read_partition
from services.featurizer.settings import FeaturizerSettings

log = logging.getLogger(__name__)

#: Handovers queued for the agent (Faust's ``stream_buffer_maxsize``). Faust stops handing a
#: partition over once 80 % of this is queued, and live, while a batch is processed, every
#: fetch queues a chunk of one or a few candles: 8 paused partitions under load and doubled the
#: latency (see ``transport.DRAIN_TIMEOUT_S``). Under a backlog chunks hold ``batch_size``
#: records, so this also bounds the records held in memory (~25 batches).
HANDOVERS_BUFFERED = 32


class FeaturizerApp(faust.App):
    """A Faust app that carries the consumer settings read by :mod:`.transport`: the fetch
    wait, and which topics are handed to their agent in chunks of how many records."""

    fetch_max_wait_ms: int = transport.DEFAULT_FETCH_MAX_WAIT_MS
    handover_topics: frozenset[str] = frozenset()
    handover_max_records: int = transport.DEFAULT_HANDOVER_MAX_RECORDS


def internal_topics(fs: FeaturizerSettings) -> list[tuple[str, int]]:
    """Faust's own topics, created up front (Tansu would give auto-created ones 4 partitions)."""
    return [(f"{fs.app_id}-__assignor-__leader", 1)]


def new_engine() -> Featurizer:
    """The pure featurizer over the shared feature definitions."""
    from services.common import features

    return Featurizer(
        online_factory=features.OnlineFeatures,
        feature_version=features.FEATURE_VERSION,
        history_minutes=features.HISTORY_MINUTES,
    )


def make_app(settings: Settings, fs: FeaturizerSettings) -> FeaturizerApp:
    """The configured Faust app (no agents yet)."""
    scheme = transport.register()
    brokers = [f"{scheme}://{hp.strip()}" for hp in settings.bootstrap_servers.split(",")]
    app = FeaturizerApp(
        fs.app_id,
        broker=brokers,
        broker_client_id=f"{fs.app_id}-{fs.worker_id}",
        broker_session_timeout=fs.session_timeout_s,
        broker_heartbeat_interval=1.0,
        broker_max_poll_records=fs.fetch_max_records,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        stream_buffer_maxsize=HANDOVERS_BUFFERED,
        store="memory://",
        web_enabled=fs.web_port > 0,
        web_port=fs.web_port or 6066,
        web_bind="127.0.0.1",
        producer_acks=-1,
        Monitor=transport.QuietMonitor,
    )
    app.fetch_max_wait_ms = fs.fetch_max_wait_ms
    app.handover_topics = frozenset({TICKS_CLEAN})
    app.handover_max_records = fs.batch_size
    return app


class StreamFeaturizer:
    """Micro-batch handler: state, publish, commit. Owned by the agent of :func:`build`."""

    def __init__(self, app: FeaturizerApp, settings: Settings, engine: Featurizer) -> None:
        self.app = app
        self.settings = settings
        self.engine = engine
        self.producer: AIOKafkaProducer | None = None
        self.committer: Committer | None = None
        self._crash: asyncio.Future[None] | None = None
        self.letters = ledger.Ledger(settings, TICKS_CLEAN)  # dead letters once per id

    async def start(self) -> None:
        self.producer = kafka.make_producer(self.settings)
        await self.producer.start()
        self.committer = Committer(self._commit, on_error=self._fatal)
        self.committer.start()

    async def stop(self) -> None:
        """Flush: wait for the acks of published batches, commit them, close the producer."""
        committer, self.committer = self.committer, None
        producer, self.producer = self.producer, None
        try:
            if committer is not None:
                await committer.close()
        finally:
            if producer is not None:
                await producer.stop()

    def on_assigned(self, assigned: set[TP]) -> None:
        """Drop the state of partitions this worker no longer owns."""
        mine = {tp.partition for tp in assigned if tp.topic == TICKS_CLEAN}
        self.engine.retain(mine)
        self.letters.forget()
        metrics.STATE_PARTITIONS.set(len(self.engine.partitions))
        metrics.STATE_SYMBOLS.set(self.engine.symbol_count)
        log.info("partitions assigned", extra={"topic": TICKS_CLEAN, "partitions": sorted(mine)})

    async def handle(self, records: Sequence[RecordLike]) -> Outcome:
        """Process one micro-batch and publish it; its offsets commit once its outputs are acked."""
        assert self.committer is not None, "start() first"
        t0 = time.perf_counter()
        for partition, upto in self.engine.stale(records).items():
            await self._rebuild(partition, upto)
        out = self.engine.process(records)
        futures = await self._publish(out)
        await self.committer.submit(futures, out.commit)
        seconds = time.perf_counter() - t0
        self._observe(out, len(records), seconds)
        log.debug("batch", extra={"candles": len(records), "seconds": round(seconds, 4)})
        return out

    async def _commit(self, positions: Mapping[int, int]) -> None:
        offsets = {TP(TICKS_CLEAN, p): o for p, o in positions.items()}
        if not await self.app.consumer.commit_offsets(offsets):  # type: ignore[attr-defined]
            log.info("commit refused (rebalance); replays will be skipped or deduplicated")

    def _fatal(self, exc: BaseException) -> None:
        """An output was not acknowledged: crash, restart from the committed offsets."""
        self._crash = asyncio.ensure_future(self.app.crash(exc))

    async def _rebuild(self, partition: int, upto: int) -> None:
        t0 = time.perf_counter()
        history = await read_partition(self.settings, partition, upto)
        self.engine.rebuild(partition, history, upto)
        metrics.REBUILDS.inc()
        symbols = sorted(self.engine.partitions[partition].symbols)
        log.info(
            "state rebuilt from history",
            extra={
                "topic": TICKS_CLEAN,
                "partition": partition,
                "offset": upto,
                "records": len(history),
                "symbols": symbols,
                "seconds": round(time.perf_counter() - t0, 3),
            },
        )

    async def _publish(self, out: Outcome) -> list[asyncio.Future[Any]]:
        """Send the batch's outputs without waiting for acks; returns their futures."""
        assert self.producer is not None, "start() first"
        futures = await kafka.queue_packed(self.producer, FEATURES, out.published)
        for d in await self.letters.fresh(out.dead):
            key, value = ledger.record(d)
            futures.append(await self.producer.send(TICKS_DLQ, value, key))
            log.warning(
                "dead-lettered",
                extra={
                    "symbol": d.symbol,
                    "candle_time": d.event_time,
                    "topic": TICKS_CLEAN,
                    "partition": d.source_partition,
                    "offset": d.source_offset,
                    "reason": d.codes[0],
                },
            )
        return futures

    def _observe(self, out: Outcome, n: int, seconds: float) -> None:
        metrics.PROCESSING_SECONDS.observe(seconds)
        metrics.BATCH_CANDLES.observe(n)
        for symbol, k in out.emitted.items():
            metrics.FEATURES_EMITTED.labels(symbol).inc(k)
        for symbol, k in out.late.items():
            metrics.LATE_CANDLES.labels(symbol).inc(k)
        for symbol, k in out.replayed.items():
            metrics.REPLAYED_CANDLES.labels(symbol).inc(k)
        metrics.BAD_RECORDS.inc(sum(1 for d in out.dead if d.codes[0] != "late"))
        metrics.STATE_PARTITIONS.set(len(self.engine.partitions))
        metrics.STATE_SYMBOLS.set(self.engine.symbol_count)


def build(settings: Settings, fs: FeaturizerSettings, engine: Featurizer | None = None) -> Any:
    """The Faust app with its agent wired to a :class:`StreamFeaturizer`."""
    app = make_app(settings, fs)
    handler = StreamFeaturizer(app, settings, engine or new_engine())
    source = app.topic(
        TICKS_CLEAN,
        schema=transport.RawSchema(),
        acks=False,
        partitions=settings.topic_partitions,
    )

    @app.agent(source, name="featurize")
    async def featurize(stream: faust.StreamT) -> None:
        await handler.start()
        try:
            async for chunks in take_until_idle(
                stream,
                fs.batch_size,
                within=fs.batch_within_s,
                linger=fs.batch_linger_s,
                weight=transport.chunk_weight,
                busy=Busy(rate=fs.batch_busy_rate, linger=fs.batch_busy_linger_s),
            ):
                await handler.handle(transport.records_of(chunks))
        except Exception as exc:
            log.exception("featurizer batch failed; crashing the worker to recover from log")
            await app.crash(exc)
            raise
        finally:
            await handler.stop()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(sender: Any, assigned: set[TP], **_: Any) -> None:
        handler.on_assigned(assigned)

    app.featurizer = handler  # type: ignore[attr-defined]
    return app
