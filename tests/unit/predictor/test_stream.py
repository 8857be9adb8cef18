"""The stream loop on a real broker: publish and move on, commit only what is acked, in order."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from services.common import kafka
from services.common.schemas import Prediction
from services.common.settings import Settings
from services.common.topics import FEATURES, PREDICTIONS
from services.predictor.app import build_service
from services.predictor.settings import PredictorSettings
from services.predictor.stream import StreamWorker


async def _produce(settings: Settings, vecs: list) -> None:
    await kafka.publish(FEATURES, [(v.symbol.encode(), v.to_bytes()) for v in vecs], settings)


async def _read(settings: Settings, topic: str, count: int, timeout_s: float = 20.0) -> list:
    consumer = kafka.make_consumer(topic, group_id=None, settings=settings)
    await consumer.start()
    out: list = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(out) < count:
                batch = await consumer.getmany(timeout_ms=200)
                out += [r for recs in batch.values() for r in recs]
    finally:
        await consumer.stop()
    return out


async def _committed(settings: Settings, group: str) -> dict[int, int]:
    consumer = kafka.make_consumer(group_id=group, settings=settings)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(FEATURES) or await _parts(consumer)
        out = {}
        for p in parts:
            pos = await consumer.committed(TopicPartition(FEATURES, p))
            out[p] = pos if pos is not None else 0
        return out
    finally:
        await consumer.stop()


async def _parts(consumer) -> set[int]:
    await consumer.topics()
    return consumer.partitions_for_topic(FEATURES) or set()


async def _worker(settings: Settings, registry) -> StreamWorker:
    service = build_service(settings, PredictorSettings(), registry)
    assert await service.holder.reload()
    return service.worker


async def test_stream_publishes_in_order_commits_everything_and_folds_the_bookkeeping(
    settings: Settings, registry, calm_features, to_vectors
) -> None:
    await kafka.ensure_topics(settings)
    warm = calm_features[calm_features["warm"]].iloc[-60:]
    vecs = [v for s in ("BTC", "ETH", "SOL") for v in to_vectors(warm, symbol=s)]
    worker = await _worker(settings, registry)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        for i in range(0, len(vecs), 3):  # live-like: a few vectors at a time
            await _produce(settings, vecs[i : i + 3])
        preds = [Prediction.from_bytes(r.value) for r in await _read(settings, PREDICTIONS, 180)]
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    for s in ("BTC", "ETH", "SOL"):
        times = [p.time for p in preds if p.symbol == s]
        assert times == sorted(times) and len(times) == 60  # keyed output in input order
    # every position was committed (once acked) and the bookkeeping of every batch folded in
    committed = await _committed(settings, worker.psettings.consumer_group)
    assert sum(committed.values()) == 180
    m = worker.metrics
    assert m.vectors.labels("scored")._value.get() == 180
    assert m.predictions.labels("champion")._value.get() == 180  # summed per fold
    assert m.predictions.labels("shadow")._value.get() == 0
    close = m.registry.get_sample_value(
        "pipeline_latency_seconds_count", {"stage": "from_candle_close"}
    )
    assert close == 180  # one observation per prediction
    last = {
        s: max((p for p in preds if p.symbol == s), key=lambda p: p.time)
        for s in ["BTC", "ETH", "SOL"]
    }
    for s, p in last.items():  # each gauge holds its symbol's newest prediction
        assert m.prediction_value.labels(s, "champion")._value.get() == p.rv
    champion = worker.holder.models.champion
    assert champion is not None and champion.drift.n == 180  # every vector reached the monitor
    assert len(worker.ring.query("BTC", limit=1000)) == 60


async def test_step_returns_before_the_acks_and_a_failed_send_stops_the_next_step(
    settings: Settings, registry, calm_features, to_vectors
) -> None:
    await kafka.ensure_topics(settings)
    worker = await _worker(settings, registry)
    consumer = kafka.make_consumer(group_id="t", settings=settings)
    consumer.subscribe([FEATURES], listener=worker.assignment)
    producer = kafka.make_producer(settings)
    await producer.start()
    await consumer.start()
    try:
        worker.start_committer(consumer)
        assert worker.committer is not None
        loop = asyncio.get_running_loop()
        never = loop.create_future()  # an ack that does not come
        await worker.committer.submit([never], {0: 5})
        warm = calm_features[calm_features["warm"]].iloc[-3:]
        await _produce(settings, to_vectors(warm))
        handled = 0
        async with asyncio.timeout(15):
            while not handled:
                handled = await worker.step(consumer, producer)  # not held by the earlier batch
        await asyncio.sleep(0.3)
        assert worker.committer.committed == {}  # nothing past the unacked batch
        never.set_exception(RuntimeError("broker said no"))
        await asyncio.sleep(0.05)
        with pytest.raises(RuntimeError, match="broker said no"):
            await worker.step(consumer, producer)
        worker.committer = None
    finally:
        await consumer.stop()
        await producer.stop()


async def test_a_fold_scores_the_baseline_of_all_its_batches_at_once(
    settings: Settings, registry, calm_features, to_vectors
) -> None:
    """The bookkeeping takes a fold's batches as one (one baseline and drift call per fold):
    the same forecasts, in the same order, as batch by batch; each vector's prediction and
    baseline forecast wait for their realized value."""
    import math

    from services.predictor.core import RawRecord, process
    from services.predictor.stream import baseline_forecasts, merge_results

    worker = await _worker(settings, registry)
    models = worker.holder.models
    assert models.champion is not None and models.champion.baseline is not None
    warm = calm_features[calm_features["warm"]].iloc[-40:]
    vecs = [v for s in ("BTC", "ETH") for v in to_vectors(warm, symbol=s)]
    results = []
    for i in range(0, len(vecs), 3):  # live-like: one to three vectors per batch
        batch = vecs[i : i + 1 + i % 3]
        recs = [
            RawRecord(FEATURES, 0, i + j, v.symbol.encode(), v.to_bytes())
            for j, v in enumerate(batch)
        ]
        results.append(process(recs, models.champion.bundle, None))
    merged = merge_results(results)
    expected = [f for r in results for f in baseline_forecasts(models, r)]
    got = baseline_forecasts(models, merged)
    assert [(f.symbol, f.time) for f in got] == [(f.symbol, f.time) for f in expected]
    assert all(
        math.isclose(a.log_rv, b.log_rv, rel_tol=1e-12) for a, b in zip(got, expected, strict=True)
    )
    worker._backlog = [(r, models) for r in results]
    worker.fold()
    scored = sum(len(r.predictions) for r in results)
    assert worker.accuracy.joiner.pending() == 2 * scored  # prediction and baseline each
    assert models.champion.drift.n == scored


def test_the_reader_of_closes_reads_what_candle_accepts(calm_candles) -> None:
    """``candle_close`` gives what ``Candle.from_bytes`` gives (symbol, time, close) for the
    validator's candles, and for altered ones the same answer, None when the schema refuses."""

    from services.common.schemas import Candle
    from services.common.schemas import candle_close as close_of
    from tests.candle_variants import candle_variants

    def reference(value: bytes) -> tuple | None:
        try:
            c = Candle.from_bytes(value)
        except ValueError:
            return None
        return c.symbol, c.time, c.close

    fields = ["time", "open", "high", "low", "close", "volumefrom", "volumeto"]
    rows = calm_candles[fields].iloc[:200].to_dict("records")
    good = [
        Candle(symbol="BTC", time=int(r["time"]), **{k: float(r[k]) for k in fields[1:]})
        for r in rows
    ]
    values = [c.to_bytes() for c in good]
    assert [close_of(v) for v in values] == [(c.symbol, c.time, c.close) for c in good]
    raw = candle_variants(values[0])
    got, want = [close_of(v) for v in raw], [reference(v) for v in raw]
    assert got == want and all(type(g[2]) is float for g in got if g is not None)
    assert sum(g is not None for g in got) == 5  # close 1, ingested_at 1 and 1.5, default, order


async def test_an_idle_loop_backs_off_its_fetch_wait_and_snaps_back_with_vectors(
    settings: Settings, registry, calm_features, to_vectors
) -> None:
    """Live, vectors come once a minute: after a poll that brought nothing the loop's fetch
    wait goes to PREDICTOR_IDLE_FETCH_MAX_WAIT_MS (fewer empty fetches), and the first vectors
    bring it back to the hot path's few milliseconds."""
    await kafka.ensure_topics(settings)
    worker = await _worker(settings, registry)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    seen: list[bool] = []  # the backoff's state after each poll
    try:
        async with asyncio.timeout(15):
            while worker.backoff is None:
                await asyncio.sleep(0.01)
        backoff = worker.backoff
        update = backoff.update

        def recorded(got_records: bool) -> None:
            update(got_records)
            seen.append(backoff.idle)

        backoff.update = recorded  # type: ignore[method-assign]
        async with asyncio.timeout(15):
            while not backoff.idle:
                await asyncio.sleep(0.01)
        assert backoff.wait_ms == worker.psettings.idle_fetch_max_wait_ms == 100
        warm = calm_features[calm_features["warm"]].iloc[-3:]
        await _produce(settings, to_vectors(warm))
        assert len(await _read(settings, PREDICTIONS, 3)) == 3
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert True in seen and False in seen[seen.index(True) :]  # idle, then busy again
