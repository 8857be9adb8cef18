"""The Kafka side of the predictor: the scoring loop on ``features`` and the side consumer of
``ticks.clean`` (realized volatility) and ``model.events`` (reload triggers).

No model yet: **wait-then-score**. The loop does not join the ``predictor`` group until a
champion is loaded, so nothing is consumed and no vector is lost: the features wait in Kafka
(retained for a week) and are scored from the group's committed offsets once a model arrives.
Offsets are committed only after every prediction and dead letter of a micro-batch is acked.

**Publish and move on.** Live traffic is 1-3 vectors every ~10 ms, so whatever the loop does
after scoring delays the next candle. A batch's predictions are queued on the producer and the
loop goes back to ``getmany``: a background :class:`~services.common.committer.Committer` awaits
the acks batch after batch, in order, and commits the positions reached (coalesced, at most every
``COMMIT_INTERVAL_S``), so a position is committed only once every output below it is durable
(at-least-once; the producer keeps one request in flight per broker, so keyed output stays in
order). The bookkeeping (drift window and PSI, live accuracy, prediction metrics) is folded in
every :data:`BOOKKEEPING_S`, over all the batches since, instead of once per batch; the ring
(``GET /predictions``) is fed at once. Before partitions are revoked, the in-flight batches are
acked and committed. After a poll that brought nothing the loop's fetch wait backs off to
``PREDICTOR_IDLE_FETCH_MAX_WAIT_MS`` until vectors come again (live, they come once a minute).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from services.common import kafka
from services.common.committer import Committer
from services.common.features import HORIZON_MINUTES
from services.common.schemas import ModelEvent, Prediction, candle_close
from services.common.settings import Settings
from services.common.topics import FEATURES, MODEL_EVENTS, PREDICTIONS, TICKS_CLEAN, TICKS_DLQ
from services.predictor.accuracy import BaselineForecast, LiveAccuracy, Resolved
from services.predictor.core import BatchResult, Record, process
from services.predictor.metrics import PredictorMetrics, observe_many
from services.predictor.models import ModelHolder, ModelSet
from services.predictor.ring import PredictionRing
from services.predictor.settings import PredictorSettings

log = logging.getLogger(__name__)

#: Seconds between two folds of the drift/accuracy bookkeeping (after the first batch since):
#: a fold has a fixed cost (drift state, baseline, metric children) that live traffic of one
#: vector at a time would otherwise pay every few vectors; the gauges lag by at most this.
BOOKKEEPING_S = 0.2
#: Batches up to this many records are scored on the event loop: the thread hop costs more.
INLINE_MAX = 64
#: The side consumer's fetch wait: closes are joined an hour later and a model event has the
#: 30 s poll as fallback, so a quarter second costs nothing, while the hot path's few ms would
#: keep ~200 empty fetches/s (~5 % of a core) on the event loop that serves HTTP.
SIDE_FETCH_WAIT_MS = 250


class _Assignment(ConsumerRebalanceListener):
    """Tracks whether the group has handed us partitions (part of readiness); before a
    revocation, waits for ``before_revoke`` (the in-flight batches' acks and commits)."""

    def __init__(self) -> None:
        self.joined = False
        self.partitions: set[Any] = set()
        self.before_revoke: Callable[[], Awaitable[None]] | None = None

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if self.before_revoke is not None:
            await self.before_revoke()
        self.partitions -= set(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.partitions = set(assigned)
        self.joined = True
        log.info("partitions assigned", extra={"partitions": sorted(str(p) for p in assigned)})


def records_of(batch: dict[Any, list[Any]]) -> list[Record]:
    """aiokafka's getmany result as one list of its records (they are read as they are)."""
    if len(batch) == 1:
        return next(iter(batch.values()))
    return [r for recs in batch.values() for r in recs]


def next_positions(batch: dict[Any, list[Any]]) -> dict[int, int]:
    """The position to commit per partition once a getmany result is handled (last offset + 1)."""
    return {tp.partition: recs[-1].offset + 1 for tp, recs in batch.items() if recs}


class StreamWorker:
    """Consumes feature vectors, scores them, publishes predictions and dead letters."""

    def __init__(
        self,
        settings: Settings,
        psettings: PredictorSettings,
        holder: ModelHolder,
        ring: PredictionRing,
        accuracy: LiveAccuracy,
        metrics: PredictorMetrics,
    ) -> None:
        self.settings, self.psettings = settings, psettings
        self.holder, self.ring, self.accuracy, self.metrics = holder, ring, accuracy, metrics
        self.assignment = _Assignment()
        self.committer: Committer | None = None
        self._backlog: list[tuple[BatchResult, ModelSet]] = []
        self._wake = asyncio.Event()
        self._failure: BaseException | None = None
        self.backoff: kafka.IdleBackoff | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Wait for a champion, then score until ``stop`` is set."""
        if not await _wait_either(self.holder.loaded, stop):
            return
        producer = kafka.make_producer(self.settings)
        consumer = kafka.make_consumer(
            group_id=self.psettings.consumer_group, settings=self.settings
        )
        consumer.subscribe([FEATURES], listener=self.assignment)
        await producer.start()
        try:
            await consumer.start()
            try:
                await self.serve(consumer, producer, stop)
            finally:
                self.assignment.joined = False
                await consumer.stop()
        finally:
            await producer.stop()

    async def serve(
        self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, stop: asyncio.Event
    ) -> None:
        """The loop on started clients; on stop, flushes: acks, commits, bookkeeping."""
        self.start_committer(consumer)
        wait_ms = kafka.CONSUMER_DEFAULTS["fetch_max_wait_ms"]
        self.backoff = kafka.IdleBackoff(consumer, wait_ms, self.psettings.idle_fetch_max_wait_ms)
        bookkeeper = asyncio.create_task(self._bookkeeper(), name="predictor-bookkeeping")
        try:
            while not stop.is_set():
                await self.step(consumer, producer)
        finally:
            try:
                await self.stop_committer()
            finally:
                bookkeeper.cancel()
                self.fold()

    def start_committer(self, consumer: AIOKafkaConsumer) -> None:
        async def commit(positions: Mapping[int, int]) -> None:
            offsets = {TopicPartition(FEATURES, p): o for p, o in positions.items()}
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:  # the partitions moved on
                log.warning("commit refused (rebalance): replayed", extra={"error": str(exc)})

        self._failure = None
        self.committer = Committer(commit, on_error=self._fail, name="predictor-committer")
        self.committer.start()
        self.assignment.before_revoke = self.committer.drain

    async def stop_committer(self) -> None:
        committer, self.committer = self.committer, None
        self.assignment.before_revoke = None
        if committer is not None:
            await committer.close()

    def _fail(self, exc: BaseException) -> None:
        self._failure = exc

    async def step(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> int:
        """One micro-batch: fetch, score, queue the outputs and their commit. Returns the
        records handled. Raises a failed send or commit of an earlier batch."""
        if self._failure is not None:
            raise self._failure
        assert self.committer is not None, "start_committer() first"
        batch = await consumer.getmany(timeout_ms=100, max_records=self.psettings.batch_max)
        records = records_of(batch)
        if self.backoff is not None:
            self.backoff.update(bool(records))
        if not records:
            return 0
        models = self.holder.models  # one snapshot for the whole batch
        assert models.champion is not None  # run() waits for it
        challenger = models.challenger.bundle if models.challenger else None
        level = self.psettings.interval_level
        shadow_iv = models.challenger.intervals if models.challenger else None
        adaptive = (models.champion.intervals, shadow_iv)
        args = (records, models.champion.bundle, challenger, HORIZON_MINUTES, level, adaptive)
        if len(records) <= INLINE_MAX:
            result = process(*args)
        else:
            result = await asyncio.to_thread(process, *args)
        encoded = result.encoded  # once: Kafka and the ring
        keyed = [(p.symbol.encode(), b) for p, b in zip(result.predictions, encoded, strict=True)]
        dead = [((d.key or "").encode(), d.to_bytes()) for d in result.dead]
        futures = await kafka.queue_packed(producer, PREDICTIONS, keyed)
        futures += await kafka.queue_packed(producer, TICKS_DLQ, dead)
        await self.committer.submit(futures, next_positions(batch))
        champ = [i for i, p in enumerate(result.predictions) if p.role == "champion"]
        self.ring.extend([result.predictions[i] for i in champ], [encoded[i] for i in champ])
        self._backlog.append((result, models))
        self._wake.set()
        return len(records)

    async def _bookkeeper(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(BOOKKEEPING_S)
            self._wake.clear()
            self.fold()

    def fold(self) -> None:
        """Metrics, drift and live accuracy of every batch since the last fold, at once."""
        backlog, self._backlog = self._backlog, []
        if not backlog:
            return
        m = self.metrics
        preds: list[Prediction] = []
        tracked: list[Any] = []  # forecasts of the current champion's set, for live accuracy
        current = self.holder.models.champion
        # the current champion's scored batches: drift and the baseline take them at once
        by_champion: dict[int, tuple[ModelSet, list[BatchResult]]] = {}
        outcomes: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        scoring = m.prediction_latency.labels("stream")
        for result, models in backlog:
            outcomes["scored"] += sum(p.role == "champion" for p in result.predictions)
            outcomes["cold"] += result.cold
            outcomes["dead"] += len(result.dead)
            for d in result.dead:
                reasons[d.reasons[0].code] += 1
                log.warning("dead letter", extra=_dead_extra(d))
            if not result.predictions:
                continue
            scoring.observe(result.scoring_s)
            preds.extend(result.predictions)
            if models.champion is None or models.champion is not current:
                continue  # scored by a model swapped out since: not the new windows' business
            tracked.extend(result.predictions)
            if result.matrix is not None:
                by_champion.setdefault(id(current), (models, []))[1].append(result)
        for outcome in ("scored", "cold", "dead"):
            m.vectors.labels(outcome).inc(outcomes[outcome])
        for code, n in reasons.items():
            m.dead_letters.labels(code).inc(n)
        if not preds:
            return
        observe_predictions(m, preds)
        for models, results in by_champion.values():
            merged = merge_results(results)
            tracked.extend(baseline_forecasts(models, merged))
            observe_drift(m, models, merged, self.psettings)
        observe_accuracy(m, self.accuracy, self.accuracy.joiner.add_predictions(tracked))


def _dead_extra(d: Any) -> dict[str, Any]:
    return {
        "reason": d.reasons[0].code,
        "symbol": d.symbol,
        "candle_time": d.event_time,
        "topic": d.source_topic,
        "partition": d.source_partition,
        "offset": d.source_offset,
        "key": d.key,
    }


def observe_predictions(m: PredictorMetrics, preds: list[Prediction]) -> None:
    """Prediction gauges and the pipeline latencies (to publish, i.e. now), summed per fold:
    each gauge is set once (to its last value), each counter incremented once, each latency
    histogram updated once per bucket (:func:`~services.predictor.metrics.observe_many`)."""
    latest: dict[tuple[str, str], float] = {}
    from_close: list[float] = []
    from_ingest: list[float] = []
    for p in preds:
        latest[(p.symbol, p.role)] = p.rv
        if p.role != "champion":
            continue
        from_close.append(max(0.0, p.emitted_at - p.time - 60))
        if p.ingested_at is not None:
            from_ingest.append(max(0.0, p.emitted_at - p.ingested_at))
    observe_many(m.pipeline_latency.labels("from_candle_close"), from_close)
    observe_many(m.pipeline_latency.labels("from_ingest"), from_ingest)
    for (symbol, role), rv in latest.items():
        m.prediction_value.labels(symbol, role).set(rv)
    m.predictions.labels("champion").inc(len(from_close))
    m.predictions.labels("shadow").inc(len(preds) - len(from_close))


def merge_results(results: list[BatchResult]) -> BatchResult:
    """Scored batches as one: their predictions and feature rows in order (one array call
    per fold for the baseline and the drift monitor instead of one per batch)."""
    if len(results) == 1:
        return results[0]
    matrices = [r.matrix for r in results if r.matrix is not None]
    return BatchResult(
        predictions=[p for r in results for p in r.predictions], matrix=np.vstack(matrices)
    )


def baseline_forecasts(models: ModelSet, result: BatchResult) -> list[BaselineForecast]:
    """The champion's HAR-seasonal baseline on the vectors the champion scored."""
    champ = models.champion
    if champ is None or champ.baseline is None or result.matrix is None:
        return []
    scored = [p for p in result.predictions if p.role == "champion"]
    times = np.array([p.time for p in scored], dtype=np.int64)
    log_rv = champ.baseline.log_rv(result.matrix, times)
    return [
        BaselineForecast(p.symbol, p.time, float(lr))
        for p, lr in zip(scored, log_rv.tolist(), strict=True)
        if math.isfinite(lr)
    ]


def observe_drift(
    m: PredictorMetrics, models: ModelSet, result: BatchResult, ps: PredictorSettings
) -> None:
    """Feed the champion's drift monitor and export OOD counts, then (once its longest window
    has been filled) PSI and its limit per feature and the drift ratio."""
    assert models.champion is not None and result.matrix is not None
    drift = models.champion.drift
    for feature, n in drift.update_many(result.matrix, last=True).ood.items():
        m.feature_ood.labels(feature).inc(n)
    ratio = drift.drift_ratio()
    if ratio is None:
        return
    limits = drift.threshold_of()
    for feature, value in drift.psi().items():
        m.feature_psi.labels(feature).set(value)
        m.feature_drift_threshold.labels(feature).set(limits[feature])
    m.drift_ratio.labels(models.champion.bundle.version).set(ratio)


def observe_accuracy(m: PredictorMetrics, acc: LiveAccuracy, resolved: list[Resolved]) -> None:
    """Fold resolved predictions into the rolling accuracy and export the roles whose window
    is full enough (``ACCURACY_MIN_FILL``)."""
    if not resolved:
        return
    m.concept_drift.inc(acc.observe(resolved))
    for role, n in Counter(r.prediction.role for r in resolved).items():
        m.resolved.labels(role).inc(n)  # once per role, not per prediction
    for role, roll in acc.ready().items():
        m.live_qlike.labels(role).set(roll.qlike())
        m.live_rmse.labels(role).set(roll.rmse())
        if roll.intervals():
            m.interval_coverage.labels(role).set(roll.coverage())


class SideConsumer:
    """Group-less reader of ``ticks.clean`` (closes for live accuracy) and ``model.events``."""

    def __init__(
        self,
        settings: Settings,
        psettings: PredictorSettings,
        holder: ModelHolder,
        accuracy: LiveAccuracy,
        metrics: PredictorMetrics,
    ) -> None:
        self.settings, self.psettings = settings, psettings
        self.holder, self.accuracy, self.metrics = holder, accuracy, metrics
        self.reload_task: asyncio.Task[bool] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        consumer = kafka.make_consumer(
            TICKS_CLEAN,
            MODEL_EVENTS,
            group_id=None,
            settings=self.settings,
            auto_offset_reset=self.psettings.realized_offset_reset,
            fetch_max_wait_ms=SIDE_FETCH_WAIT_MS,
        )
        await consumer.start()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                self.handle(records_of(batch))
        finally:
            await consumer.stop()

    def handle(self, records: Iterable[Record]) -> None:
        """Closes go to the realized-RV joiner; a matching model event triggers a reload."""
        closes = []
        for rec in records:
            if rec.topic == MODEL_EVENTS:
                self._on_event(rec)
                continue
            close = candle_close(rec.value or b"")
            if close is not None:  # else the validator already dead-lettered it: not ours
                closes.append(close)
        if closes:
            observe_accuracy(self.metrics, self.accuracy, self.accuracy.joiner.add_closes(closes))

    def _on_event(self, rec: Record) -> None:
        try:
            event = ModelEvent.from_bytes(rec.value or b"")
        except ValueError:
            log.warning("unreadable model event", extra={"topic": rec.topic, "offset": rec.offset})
            return
        if event.model_name != self.settings.model_name or event.event not in (
            "promoted",
            "reload",
        ):
            return
        log.info("model event: reloading", extra={"event": event.event, "version": event.version})
        self.reload_task = asyncio.create_task(self.holder.reload(force=event.event == "reload"))


async def poll_models(
    holder: ModelHolder, psettings: PredictorSettings, stop: asyncio.Event
) -> None:
    """Load the champion as soon as one exists, then poll the aliases (the reload fallback)."""
    while not stop.is_set():
        await holder.reload()
        every = psettings.model_poll_s if holder.models.champion else psettings.model_wait_s
        await _wait_either(stop, None, timeout=every)


async def _wait_either(
    first: asyncio.Event, second: asyncio.Event | None, timeout: float | None = None
) -> bool:
    """Wait until ``first`` (True) or ``second`` (False) is set, or the timeout passes (False)."""
    waits = [asyncio.create_task(first.wait())]
    if second is not None:
        waits.append(asyncio.create_task(second.wait()))
    _done, pending = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    return first.is_set()
