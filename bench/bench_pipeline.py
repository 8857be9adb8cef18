"""End-to-end figures: replay throughput ticks.raw → predictions, latency at 100 candles/s, and
the peak RSS of each service.

Both runs start the real services as subprocesses on a fresh embedded broker, with a champion
trained on the real history before the latency window. Each figure is printed next to its target
and a ceiling measured in the same run on the same broker (:mod:`bench.ceilings`): raw aiokafka
produce/consume rates for the replay, a 4-hop aiokafka passthrough chain for the latency (the
target's ceiling, its stages in one process), and beside it the same chain with a process per
stage as the services run (context: what crossing a process at each hop costs on this machine).

The replay is the issue's slice: the 2-year file from its first candle, or the largest prefix of
it that gets through in ``BENCH_E2E_BUDGET_S`` (600 s) at full speed; ``BENCH_E2E_DAYS`` replays a
shorter slice instead (for quick checks). The figure states which.

Knobs: ``BENCH_E2E_DAYS``, ``BENCH_E2E_BUDGET_S``, ``BENCH_E2E_START`` (the latency window and the
training slice before it), ``BENCH_CHAIN_S`` (seconds of each chain ceiling; by default
``BENCH_LATENCY_S``, see :data:`CHAIN_S`), ``BENCH_LATENCY_S``,
``BENCH_PIPELINE_PARTS`` (``throughput``, ``latency`` or both, the default),
``BENCH_KAFKA_CENSUS=1`` (the latency part also prints the Kafka requests per second of every
process, by API, in each window: :mod:`bench.census`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow.parquet as pq

from bench import census
from bench.ceilings import chain_latency, chain_topics, raw_rates
from bench.common import figure, save
from bench.harness import TWO_YEARS, Pipeline, read_topic, write_slice
from bench.rss import CpuWatch, PeakRss, by_service
from devstack.mlflow_local import MlflowServer
from services.common import kafka
from services.common.features import WARMUP_MINUTES
from services.common.topics import FEATURES, PREDICTIONS, TICKS_CLEAN, TICKS_RAW
from services.common.vector_codec import head_of, is_binary, warm_of
from services.ingestor.core import encode_batches

START = pd.Timestamp(os.environ.get("BENCH_E2E_START", "2024-10-01"), tz="UTC")
E2E_DAYS = float(os.environ["BENCH_E2E_DAYS"]) if os.environ.get("BENCH_E2E_DAYS") else None
BUDGET_S = float(os.environ.get("BENCH_E2E_BUDGET_S", "600"))
LATENCY_S = float(os.environ.get("BENCH_LATENCY_S", "60"))
#: ``BENCH_CHAIN_S``: seconds of each 4-hop chain, by default as long as the latency feed. On
#: Tansu's in-memory log a fetch that finds records costs more the more record batches the
#: partition holds, and at 100 single records/s each hop's partitions gain ~33 batches a second:
#: a 15 s chain against a 60 s feed measured the chain's hops on partitions a quarter as long
#: (broker CPU per candle over a 60 s feed: 3,650 us in its first 10 s, 7,620 in its last).
CHAIN_S = float(os.environ.get("BENCH_CHAIN_S", str(LATENCY_S)))
CEILING_BUDGET_S = float(os.environ.get("BENCH_CEILING_BUDGET_S", "120"))
#: ``BENCH_PIPELINE_PARTS``: which runs (quick checks of one): throughput, latency or both.
PARTS = os.environ.get("BENCH_PIPELINE_PARTS", "throughput,latency").split(",")
CENSUS = os.environ.get("BENCH_KAFKA_CENSUS", "") not in ("", "0")
SYMBOLS = ("BTC", "ETH", "SOL")
RATE = 100.0  # candles/s of the latency feed and of its chain ceiling
RSS_TARGET = "<= 300 MB"
SERVICES = ("validator", "featurizer", "predictor", "ingestor (replay)")


def service_of(process: str) -> str:
    """The service a named pipeline process runs (replays are the ingestor)."""
    if process == "replay" or process.startswith(("warm-", "steady-")):
        return "ingestor (replay)"
    return process


def watch(pipe: Pipeline) -> PeakRss:
    return PeakRss(lambda: {name: proc.pid for name, proc in pipe.procs.items()})


async def wait_for(
    pipe: Pipeline,
    topic: str,
    count: int,
    timeout_s: float,
    keep: Callable[[bytes], bool] = lambda _: True,
) -> list[bytes]:
    """Poll ``topic`` until it holds ``count`` records that ``keep`` accepts (or time runs
    out); returns those records."""
    deadline = time.monotonic() + timeout_s
    values: list[bytes] = []
    while time.monotonic() < deadline:
        records = await read_topic(pipe.settings, topic, idle_s=1.0)
        values = [r.value for r in records if keep(r.value)]
        if len(values) >= count:
            break
        await asyncio.sleep(2)
    return values


def start_stream(pipe: Pipeline) -> None:
    for name in ("validator", "featurizer", "predictor"):
        pipe.service(name)


#: Seconds without a new prediction, after the replay exited, that end the throughput run.
IDLE_S = 10.0


@dataclass
class Progress:
    """What came out of the pipeline: champion predictions as they arrived (counted on the
    clock), and the feature vectors (counted after it, see :func:`count_vectors`)."""

    features: int = 0
    cold: int = 0  # vectors before the longest window is full: no prediction for those
    predictions: int = 0  # champion predictions
    last_arrival: float = 0.0  # time.time() at the consumer, as the chain's observer stamps

    @property
    def through(self) -> int:
        """Candles that went all the way (a prediction out, or a cold vector that needs none)."""
        return self.cold + self.predictions

    def done(self, n: int) -> bool:
        return self.features >= n and self.predictions >= self.features - self.cold


def _is_champion(value: bytes) -> bool:
    doc = orjson.loads(value)
    return isinstance(doc, dict) and doc.get("role") == "champion"


async def follow(pipe: Pipeline, n: int, deadline: float, idle_s: float = IDLE_S) -> Progress:
    """Count champion predictions as they arrive, until every candle went through or
    ``deadline`` (time.time()) passes.

    Only ``predictions`` is read while the clock runs, with the fetch wait of the chain's
    observer (:func:`count_arrivals`): production has no reader of ``features`` besides the
    predictor, and a second one would add ~2 KB per candle to the broker's and this process's
    work. The vectors are counted (:func:`count_vectors`) only when the replay has exited and
    no prediction came for ``idle_s``: the end, or a stall (a predictor still loading its model
    on a short slice); on a stall the count tells, and following goes on."""
    consumer = kafka.make_consumer(
        PREDICTIONS,
        group_id=None,
        settings=pipe.settings,
        max_poll_records=20_000,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    progress = Progress()
    replay = pipe.procs["replay"]
    last_news = time.time()
    try:
        while time.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            now = time.time()
            champions = sum(_is_champion(r.value) for rs in batch.values() for r in rs)
            if batch:
                last_news = now
            if champions:
                progress.predictions += champions
                progress.last_arrival = now
            if replay.poll() is not None and now - last_news >= idle_s:
                await count_vectors(pipe.settings, progress)
                if progress.done(n):
                    break
                last_news = time.time()
    finally:
        await consumer.stop()
    return progress


async def count_vectors(settings: Any, progress: Progress) -> None:
    """Count the feature vectors on ``features``, and the cold ones among them, into
    ``progress`` (streamed, never held in memory)."""
    consumer = kafka.make_consumer(group_id=None, settings=settings, max_poll_records=20_000)
    await consumer.start()
    try:
        tps = await kafka.topic_partitions(consumer, FEATURES)
        starts = await consumer.beginning_offsets(tps)
        progress.features = progress.cold = 0
        async for batch in kafka.read_log(consumer, starts, kafka.Until.end()):
            progress.features += len(batch)
            progress.cold += sum(not warm_of(r.value) for r in batch)
    finally:
        await consumer.stop()


async def first_record_time(settings: Any, topic: str) -> float:
    """When the first record of ``topic`` was produced (its timestamp: the producer's clock,
    stamped as the record is queued; one machine, one clock). The clocks of the replay and of
    its ceiling start there, so neither counts the replay process's start-up."""
    consumer = kafka.make_consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        tps = await kafka.topic_partitions(consumer, topic)
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        stops = {tp: begins[tp] + 1 for tp in tps if ends[tp] > begins[tp]}
        starts = {tp: begins[tp] for tp in stops}
        stamps = [
            r.timestamp
            async for batch in kafka.read_log(consumer, starts, kafka.Until.at(stops))
            for r in batch
        ]
    finally:
        await consumer.stop()
    if not stamps:
        raise RuntimeError(f"{topic} is empty: nothing was replayed")
    return min(stamps) / 1000


def replay_slice(workdir: Path) -> tuple[Path, int, str]:
    """The replay file, its candle count and why this slice."""
    feed = workdir / "e2e.parquet"
    first = int(pq.read_table(TWO_YEARS, columns=["time"])["time"][0].as_py())
    if E2E_DAYS is None:
        n = write_slice(feed, first, 2**62)
        return feed, n, f"the 2-year file, or the prefix that got through in {BUDGET_S:g} s"
    n = write_slice(feed, first, first + int(E2E_DAYS * 86400))
    return feed, n, f"BENCH_E2E_DAYS={E2E_DAYS:g} (a quick check, not the issue's 2-year slice)"


async def count_arrivals(settings: Any, topic: str, n: int, deadline: float) -> tuple[int, float]:
    """Records arriving on ``topic`` (from its start) until ``n`` or ``deadline`` (time.time());
    returns the count and the last arrival's time."""
    consumer = kafka.make_consumer(
        topic, group_id=None, settings=settings, max_poll_records=20_000, fetch_max_wait_ms=50
    )
    await consumer.start()
    count, last = 0, time.time()
    try:
        while count < n and time.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            got = sum(len(records) for records in batch.values())
            if got:
                count, last = count + got, time.time()
    finally:
        await consumer.stop()
    return count, last


def stage_groups(pipe: Pipeline) -> dict[str, int]:
    """The process group of each stage (the replay is the ingestor) and of the broker."""
    groups = {name: p.pid for name, p in pipe.procs.items()}
    if pipe.broker is not None and pipe.broker.process is not None:
        groups["broker"] = pipe.broker.process.pid
    return groups


def chain_throughput(
    workdir: Path, feed: Path, n: int
) -> tuple[float, dict[str, float], tuple[int, float]]:
    """The same replay through three passthrough stages (:mod:`bench.passthrough`, each its own
    process, JSON decode + encode per message) over the same four topics: candles/s on the same
    clock as the pipeline's (first record on ticks.raw → last arrival on predictions), the CPU
    seconds of each process and of the broker on that clock, and (candles through, seconds)."""
    stages = [(TICKS_RAW, TICKS_CLEAN, True), (TICKS_CLEAN, FEATURES, False)]
    stages.append((FEATURES, PREDICTIONS, False))
    with Pipeline(workdir / "ceiling") as pipe:
        for i, (src, dst, explode) in enumerate(stages):
            cmd = [sys.executable, "-m", "bench.passthrough", src, dst]
            pipe.start(f"pass-{i}", cmd + (["--explode"] if explode else []))
        time.sleep(12)  # the same head start as the real services get
        with CpuWatch(lambda: stage_groups(pipe)) as cpu:
            launched = time.time()
            pipe.volstream("replay", "ingest", "replay", "--file", str(feed), "--symbol", "BTC")
            count, last = asyncio.run(
                count_arrivals(pipe.settings, PREDICTIONS, n, deadline=launched + CEILING_BUDGET_S)
            )
        began = asyncio.run(first_record_time(pipe.settings, TICKS_RAW))
    elapsed = max(last - began, 1e-9)
    return count / elapsed, cpu.used_s(began, last), (count, elapsed)


def cpu_figures(figures: list[dict], used: dict[str, float], through: int, prefix: str) -> None:
    """``cpu_us_per_candle_<prefix><stage>`` per process group (the replay is the ingestor)."""
    for name, seconds in sorted(used.items()):
        stage = "ingestor" if name == "replay" else name.replace("-", "_")
        us = seconds / max(through, 1) * 1e6
        label = f"  CPU per candle: {prefix.replace('_', ' ')}{stage}"
        figures.append(figure(label, us, "us", id=f"cpu_us_per_candle_{prefix}{stage}"))


def throughput(
    workdir: Path, mlflow_uri: str, figures: list[dict], rss: dict[str, float]
) -> dict[str, Any]:
    """Replay the slice at full speed; candles/s from first publish to the last prediction."""
    feed, n, why = replay_slice(workdir)
    with Pipeline(workdir / "e2e", mlflow_uri) as pipe, watch(pipe) as peaks:
        asyncio.run(kafka.ensure_topics(pipe.settings, extra=[("bench.raw", pipe.partitions)]))
        produce, consume = asyncio.run(raw_rates(pipe.settings, "bench.raw"))
        start_stream(pipe)
        time.sleep(12)  # Faust worker start-up and group joins, before the clock starts
        with CpuWatch(lambda: stage_groups(pipe)) as cpu:
            pipe.volstream("replay", "ingest", "replay", "--file", str(feed), "--symbol", "BTC")
            got = asyncio.run(follow(pipe, n, deadline=time.time() + BUDGET_S))
        began = asyncio.run(first_record_time(pipe.settings, TICKS_RAW))
        if not got.done(n):  # cut by the budget: the vectors so far
            asyncio.run(count_vectors(pipe.settings, got))
    end = got.last_arrival or time.time()
    elapsed = max(end - began, 1e-9)
    _merge(rss, peaks)
    cpu_figures(figures, cpu.used_s(began, end), got.through, "")
    ceiling, chain_cpu, (chain_through, chain_s) = chain_throughput(workdir, feed, n)
    cpu_figures(figures, chain_cpu, chain_through, "chain_")
    print(f"  chain: {chain_through:,} candles in {chain_s:,.1f} s", flush=True)
    days, complete = got.through / 1440, got.done(n)
    stated = f"{days:,.1f} days, {got.through:,} of {n:,} candles" + ("" if complete else ", cut")
    print(f"  replay slice: {stated}; why: {why}; {elapsed:,.0f} s", flush=True)
    figures.append(
        figure(
            f"end-to-end replay ({stated})",
            got.through / elapsed,
            "candles/s",
            f">= {0.5 * ceiling:,.0f} (0.5x the chain)",
            f"3-stage passthrough chain {ceiling:,.0f}/s; raw produce {produce:,.0f}/s, "
            f"consume {consume:,.0f}/s (this run)",
            id="e2e_candles_per_s",
        )
    )
    figures.append(
        figure(
            "  ceiling: 3-stage aiokafka passthrough chain (JSON decode+encode per stage)",
            ceiling,
            "candles/s",
            id="e2e_chain_ceiling_per_s",
        )
    )
    figures.append(
        figure("  end-to-end / passthrough chain", got.through / elapsed / ceiling, "x", ">= 0.5")
    )
    warm = got.features - got.cold
    if not warm:
        print(f"  no warm vector: a slice needs {WARMUP_MINUTES / 1440:.1f}+ days", flush=True)
    if complete:
        figures.append(
            figure("  predictions out (warm vectors)", got.predictions, "", f"== {warm:,}")
        )
    return {"candles": n, "through": got.through, "days": days, "complete": complete, "why": why}


#: The hops of the latency breakdown, each ending at a record timestamp (the producer's clock,
#: stamped as the record is queued) or, for the last, at the consumer's arrival.
HOPS = ("validator", "featurizer", "predictor", "delivery")


@dataclass
class Timed:
    """Latencies of the single-candle feed (ms): publish → arrival on ``predictions``, and the
    same split per hop (``hops[name]``, in :data:`HOPS` order, summing to the total)."""

    total: np.ndarray
    hops: dict[str, np.ndarray]
    window: tuple[float, float] = (0.0, 0.0)
    fed: int = 0
    sent_at: np.ndarray = field(default_factory=lambda: np.array([]))  # time.time(), per total


def _symbol_time(value: bytes) -> tuple[str, int] | None:
    if is_binary(value):  # a feature vector
        head = head_of(value)
        return head.symbol, head.time
    doc = orjson.loads(value)
    return (doc["symbol"], doc["time"]) if isinstance(doc, dict) and "symbol" in doc else None


async def stamps_on(settings: Any, topic: str, keys: set[tuple[str, int]]) -> dict:
    """The record timestamp (ms) of each ``(symbol, time)`` in ``keys`` on ``topic``: read back
    from the log after the feed, so the live consumer reads ``predictions`` alone."""
    consumer = kafka.make_consumer(group_id=None, settings=settings, max_poll_records=20_000)
    await consumer.start()
    out: dict[tuple[str, int], float] = {}
    try:
        tps = await kafka.topic_partitions(consumer, topic)
        starts = await consumer.beginning_offsets(tps)
        async for batch in kafka.read_log(consumer, starts, kafka.Until.end()):
            for r in batch:
                key = _symbol_time(r.value)
                if key in keys:
                    out.setdefault(key, float(r.timestamp))
    finally:
        await consumer.stop()
    return out


async def feed_and_time(
    settings: Any, steady: pd.DataFrame, rate: float, seconds: float, warm_until: int
) -> Timed:
    """Publish single-candle RawBatches at ``rate`` candles/s round-robin over the symbols (as
    live polling publishes: one small batch per symbol and minute, here much faster), and time
    each candle's champion prediction on arrival at a consumer of ``predictions``: arrival (this
    process's clock) minus the moment its RawBatch was handed to the producer. That consumer
    reads ``predictions`` alone, with the fetch wait of the chain's probe, as the chain's probe
    reads its last topic. The record timestamps of the candle on ``ticks.clean`` and of its
    vector on ``features`` (stamped by the validator's and featurizer's producers; one machine,
    one clock), read back after the feed, split each latency into hops: publish → ticks.clean
    (validator), → features (featurizer), → predictions (predictor), → arrival here (delivery).
    The feed starts once the warm-up is through: a prediction at or after ``warm_until`` for
    every symbol, then nothing for 3 s (a stage still working off the warm-up would time its
    backlog, not the path). ``Timed.window`` is the feed's (first send, last arrival)."""
    consumer = kafka.make_consumer(
        PREDICTIONS, group_id=None, settings=settings, fetch_max_wait_ms=5
    )
    await consumer.start()
    quiet_since, deadline = time.monotonic(), time.monotonic() + 600
    behind = set(steady["symbol"].unique())  # symbols whose last warm-up prediction is due
    while (behind or time.monotonic() - quiet_since < 3) and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
        if batch:  # the warm-up draining
            quiet_since = time.monotonic()
        for records in batch.values():
            for r in records:
                p = orjson.loads(r.value)
                if p["time"] >= warm_until:
                    behind.discard(p["symbol"])
    if behind:
        print(f"  warm-up not through after 600 s for {sorted(behind)}", flush=True)
    producer = kafka.make_producer(settings, linger_ms=0)
    await producer.start()
    sent: dict[tuple[str, int], float] = {}
    arrivals: list[tuple[tuple[str, int], float, float]] = []  # (key, record ts ms, arrived s)
    ordered = steady.sort_values(["time", "symbol"]).to_dict("records")[: int(rate * seconds)]
    rows: list[dict[str, Any]] = [{str(k): v for k, v in r.items()} for r in ordered]
    feeding = True

    async def collect() -> None:
        idle_since = time.monotonic()
        while feeding or (len(arrivals) < len(sent) and time.monotonic() - idle_since < 30):
            batch = await consumer.getmany(timeout_ms=50)
            arrived = time.time()
            for records in batch.values():
                for r in records:
                    p = orjson.loads(r.value)
                    key = (p["symbol"], p["time"])
                    if p.get("role") == "champion" and key in sent:
                        arrivals.append((key, float(r.timestamp), arrived))
                        idle_since = time.monotonic()

    collector = asyncio.create_task(collect())
    try:
        t0 = time.monotonic()
        first_sent = time.time()
        for i, row in enumerate(rows):
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            symbol = row.pop("symbol")
            row["time"] = int(row["time"])
            now = time.time()
            (value,) = encode_batches(symbol, [row], "replay", now, 1)  # history: not stale
            sent[(symbol, row["time"])] = now
            await producer.send(TICKS_RAW, value=value, key=symbol.encode())
        await producer.flush()
        feeding = False
        await collector
    finally:
        feeding = False
        await producer.stop()
        await consumer.stop()
    keys = set(sent)
    clean = await stamps_on(settings, TICKS_CLEAN, keys)
    feats = await stamps_on(settings, FEATURES, keys)
    out: list[tuple[float, ...]] = []  # (total, *hops) per candle, ms
    for key, ts_ms, arrived in arrivals:
        t_sent = sent[key]
        marks = [
            t_sent * 1000,
            clean.get(key, float("nan")),
            feats.get(key, float("nan")),
            ts_ms,
            arrived * 1000,
        ]
        out.append((t_sent, (arrived - t_sent) * 1000, *np.diff(marks)))
    kept = np.array(out[int(rate) :]).reshape(-1, 2 + len(HOPS))  # the first second warms up
    last = max((a for _, _, a in arrivals), default=time.time())
    hops = {hop: kept[:, 2 + i] for i, hop in enumerate(HOPS)}
    return Timed(kept[:, 1], hops, (first_sent, last), len(sent), kept[:, 0])


def latency(
    workdir: Path, mlflow_uri: str, figures: list[dict], rss: dict[str, float]
) -> dict[str, list[float]]:
    """A steady 100 candles/s over three symbols in single-candle batches, after a week of
    warm-up at full speed, timed to arrival on ``predictions``; the 4-hop chain ceiling runs
    first on the same broker, at the same rate."""
    t0 = int(START.timestamp())
    warmup = workdir / "warmup.parquet"
    n_warm = write_slice(warmup, t0 - 7 * 86400 - 3600, t0)
    # enough minutes per symbol for the whole feed (12 h once capped it at 21.6 s of 60)
    minutes = int(np.ceil(RATE * LATENCY_S / len(SYMBOLS))) + 60
    steady_one = pq.read_table(
        TWO_YEARS, filters=[("time", ">=", t0), ("time", "<", t0 + 60 * minutes)]
    ).to_pandas()
    steady = pd.concat([steady_one.assign(symbol=s) for s in SYMBOLS], ignore_index=True)
    windows: dict[str, tuple[float, float]] = {}
    if CENSUS:  # every process started from here on counts its requests
        os.environ.update(census.child_env(workdir / "census"))
        census.install()
    with Pipeline(workdir / "latency", mlflow_uri) as pipe, watch(pipe) as peaks:
        topics = chain_topics()
        asyncio.run(
            kafka.ensure_topics(pipe.settings, extra=[(t, pipe.partitions) for t in topics])
        )
        arrived: dict[int, float] = {}
        with CpuWatch(lambda: stage_groups(pipe)) as chain_cpu:  # the broker, alone so far
            chain_from, own_from = time.time(), time.process_time()
            chain = asyncio.run(chain_latency(pipe.settings, topics, RATE, CHAIN_S, True, arrived))
            chain_until, own_until = time.time(), time.process_time()
        chain_split = asyncio.run(chain_hops(pipe.settings, topics, arrived))
        chain_slices(chain, chain_cpu, chain_from + 1.0)  # sending starts after a 1 s head start
        print_batches("chain topics after the chain", pipe.settings, topics)
        windows["in-process chain"] = (chain_from, chain_until)
        procs_from = time.time()
        procs_chain = process_chain_latency(pipe)
        windows["process-per-stage chain (incl. head start)"] = (procs_from, time.time())
        start_stream(pipe)
        for s in SYMBOLS:
            pipe.volstream(f"warm-{s}", "ingest", "replay", "--file", str(warmup), "--symbol", s)
        asyncio.run(wait_for(pipe, "features", n_warm * len(SYMBOLS), timeout_s=600))
        pipeline_topics = [TICKS_RAW, TICKS_CLEAN, FEATURES, PREDICTIONS]
        print_batches("pipeline topics before the feed", pipe.settings, pipeline_topics)
        with CpuWatch(lambda: stage_groups(pipe)) as cpu:
            last_hour = t0 - 3600  # of the warm-up (a gap may skip its very last minute)
            feed = feed_and_time(pipe.settings, steady, RATE, LATENCY_S, warm_until=last_hour)
            timed = asyncio.run(feed)
        windows["pipeline feed"] = timed.window
        print_batches("pipeline topics after the feed", pipe.settings, pipeline_topics)
        time.sleep(2 * census.INTERVAL_S)  # the last snapshots written
    _merge(rss, peaks)
    if CENSUS:
        census.snapshot()
        census.stop()
        for title, (t0, t1) in windows.items():
            census.report(f"{title} ({t1 - t0:,.1f} s)", census.window(workdir / "census", t0, t1))
    lat = timed.total
    if lat.size:
        for q in (50, 99):
            base = float(np.percentile(chain, q)) if chain.size else float("nan")
            value = float(np.percentile(lat, q))
            figures.append(
                figure(
                    f"latency publish→on predictions p{q} @100 candles/s (1-candle batches)",
                    value,
                    "ms",
                    f"<= {1.3 * base:,.1f} (1.3x the chain)",
                    f"raw 4-hop chain p{q} {base:,.1f} ms (same broker, this run)",
                    id=f"latency_p{q}_ms",
                )
            )
            figures.append(
                figure(
                    f"  latency p{q} / raw chain p{q}",
                    value / base,
                    "x",
                    "<= 1.3",
                    f"raw 4-hop chain p{q} {base:,.1f} ms",
                )
            )
    for q in (50, 99):
        if chain.size:
            figures.append(
                figure(
                    f"  ceiling: raw 4-hop aiokafka chain p{q} @100 msg/s",
                    float(np.percentile(chain, q)),
                    "ms",
                    id=f"chain_p{q}_ms",
                )
            )
    process_chain_figures(figures, lat, procs_chain)
    if lat.size:
        breakdown(timed, figures, chain_split)
        fed = timed.fed
        print(f"  fed {fed:,} single-candle batches at {RATE:g}/s", flush=True)
        for name, used in cpu.used_s(*timed.window).items():
            if not name.startswith("warm-"):
                label = f"  CPU per candle at 100/s (incl. idle polling): {name}"
                figures.append(figure(label, used / fed * 1e6, "us"))
        by_slice(timed, cpu)
        # the chain's, same broker, same rate: its stages run in this process
        sent = (chain_until - chain_from) * RATE
        broker = chain_cpu.used_s(chain_from, chain_until).get("broker", float("nan"))
        label = "  CPU per candle at 100/s (incl. idle polling): chain broker"
        figures.append(figure(label, broker / sent * 1e6, "us"))
        label = "  CPU per candle at 100/s (incl. idle polling): chain stages (this process)"
        figures.append(figure(label, (own_until - own_from) / sent * 1e6, "us"))
    return {
        "publish→on predictions": [round(float(x), 2) for x in lat],
        "raw 4-hop chain": [round(float(x), 2) for x in chain],
        "4-hop chain, a process per stage": [round(float(x), 2) for x in procs_chain],
    }


#: Seconds for the passthrough processes of :func:`process_chain_latency` to start and join
#: their groups (a Tansu join takes half the 6 s session timeout) before the clock starts.
PROCESS_CHAIN_HEAD_START_S = 8.0


def process_chain_latency(pipe: Pipeline) -> np.ndarray:
    """The same 4-hop chain at the same rate, but each stage its own process
    (:mod:`bench.passthrough`, as the end-to-end ceiling runs them and as the services run):
    what crossing a process at every hop costs on this machine, next to the in-process chain
    the target is set against. Measured before the services start, as that chain is."""
    topics = chain_topics("bench.procs")
    asyncio.run(kafka.ensure_topics(pipe.settings, extra=[(t, pipe.partitions) for t in topics]))
    names = [f"chain-{i}" for i in range(len(topics) - 1)]
    for name, (src, dst) in zip(names, itertools.pairwise(topics), strict=True):
        pipe.start(name, [sys.executable, "-m", "bench.passthrough", src, dst])
    try:
        time.sleep(PROCESS_CHAIN_HEAD_START_S)
        run = chain_latency(pipe.settings, topics, RATE, CHAIN_S, in_process=False)
        with CpuWatch(lambda: stage_groups(pipe)) as cpu:
            began = time.time() + 1.0  # chain_latency's head start before it sends
            out = asyncio.run(run)
            ended = time.time()
        sent = CHAIN_S * RATE
        for name, used in sorted(cpu.used_s(began, ended).items()):
            if name.startswith("chain-") or name == "broker":
                label = f"  CPU per record at 100/s, process-per-stage chain: {name}"
                print(f"{label:<70} {used / sent * 1e6:8,.0f} us", flush=True)
        return out
    finally:
        for name in names:
            proc = pipe.procs.pop(name)
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)


def print_batches(title: str, settings: Any, topics: list[str]) -> None:
    """Record batches per partition of each topic (see :func:`bench.census.log_batches`)."""
    counts = {t: asyncio.run(census.log_batches(settings, t)) for t in topics}
    shown = "; ".join(f"{t} {sorted(c.values())}" for t, c in counts.items())
    print(f"  record batches per partition, {title}: {shown}", flush=True)


#: Seconds of feed per line of :func:`by_slice`.
SLICE_S = 10.0


def by_slice(timed: Timed, cpu: CpuWatch) -> None:
    """The latency and the CPU per candle along the feed, :data:`SLICE_S` at a time: whether
    they drift as the run goes on (Tansu's in-memory log costs more per fetch as single-record
    batches pile up in a partition), which a figure over the whole feed hides."""
    start, end = timed.window
    edges = np.arange(start, end, SLICE_S)
    for t0 in edges:
        t1 = min(t0 + SLICE_S, end)
        mine = timed.total[(timed.sent_at >= t0) & (timed.sent_at < t1)]
        if not mine.size:
            continue
        p50, p99 = np.percentile(mine, [50, 99])
        fed = (t1 - t0) * RATE
        used = cpu.used_s(t0, t1)
        per = {k: v / fed * 1e6 for k, v in used.items() if not k.startswith("warm-")}
        shares = "  ".join(f"{k} {v:,.0f}" for k, v in sorted(per.items()))
        print(
            f"  feed {t0 - start:4.0f}-{t1 - start:3.0f} s: p50 {p50:6.1f} ms  p99 {p99:6.1f} ms;"
            f" CPU us per candle: {shares}",
            flush=True,
        )


def chain_slices(chain: np.ndarray, cpu: CpuWatch, sending_from: float) -> None:
    """The in-process chain's latency and broker CPU per record in :data:`SLICE_S` slices, as
    :func:`by_slice` shows the feed's (latencies in arrival order, about RATE a second, the
    first second left out; slices placed on the clock from ``sending_from``, approximately)."""
    per_slice = int(SLICE_S * RATE)
    for k in range(0, chain.size, per_slice):
        part = chain[k : k + per_slice]
        first, last = 1 + k / RATE, 1 + (k + part.size) / RATE
        t0, t1 = sending_from + first, sending_from + last
        broker = cpu.used_s(t0, t1).get("broker", float("nan")) / max(part.size, 1) * 1e6
        p50, p99 = np.percentile(part, [50, 99])
        print(
            f"  chain {first:4.0f}-{last:3.0f} s: p50 {p50:6.1f} ms  p99 {p99:6.1f} ms;"
            f" broker CPU us per record {broker:,.0f}",
            flush=True,
        )


def process_chain_figures(figures: list[dict], lat: np.ndarray, chain: np.ndarray) -> None:
    """The process-per-stage chain's p50/p99 and the latency's ratio to them (context: the
    target stays set against the in-process chain)."""
    if not chain.size:
        return
    for q in (50, 99):
        base = float(np.percentile(chain, q))
        name = f"  4-hop chain, a process per stage, p{q} @100 msg/s"
        figures.append(figure(name, base, "ms", id=f"chain_procs_p{q}_ms"))
        if lat.size:
            ratio = float(np.percentile(lat, q)) / base
            figures.append(figure(f"  latency p{q} / process-per-stage chain p{q}", ratio, "x"))


async def chain_hops(
    settings: Any, topics: list[str], arrived: dict[int, float]
) -> dict[str, np.ndarray]:
    """The in-process chain's latencies split like the pipeline's (:data:`HOPS`, ms): publish →
    each later topic's record timestamp (the stage's producer clock) → arrival at the probe
    (``arrived``: time.time() by record index). The first second warms up, as in the figure."""
    stamps: list[dict[int, float]] = []
    published: dict[int, float] = {}
    for topic in topics[1:]:
        consumer = kafka.make_consumer(group_id=None, settings=settings, max_poll_records=20_000)
        await consumer.start()
        try:
            tps = await kafka.topic_partitions(consumer, topic)
            starts = await consumer.beginning_offsets(tps)
            on: dict[int, float] = {}
            async for batch in kafka.read_log(consumer, starts, kafka.Until.end()):
                for r in batch:
                    doc = orjson.loads(r.value)
                    on[doc["i"]] = float(r.timestamp)
                    published[doc["i"]] = doc["t"] * 1000
        finally:
            await consumer.stop()
        stamps.append(on)
    keys = sorted(i for i in arrived if i >= RATE and all(i in on for on in stamps))
    marks = np.array(
        [[published[i], *(on[i] for on in stamps), arrived[i] * 1000] for i in keys]
    ).reshape(-1, len(topics) + 1)
    split = np.diff(marks, axis=1)
    return {hop: split[:, k] for k, hop in enumerate(HOPS)}


def breakdown(
    timed: Timed, figures: list[dict], chain: dict[str, np.ndarray] | None = None
) -> None:
    """Where the latency goes: p50 and p99 of each hop (they need not add up to the total's
    percentiles; the means do), next to the same hop of the in-process chain (its stage in the
    same position, or its delivery to the probe)."""
    for hop, ms in timed.hops.items():
        ms = ms[np.isfinite(ms)]
        if not ms.size:
            continue
        p50, p99 = np.percentile(ms, [50, 99])
        same = (chain or {}).get(hop, np.array([]))
        beside = ""
        if same.size:
            c50, c99 = np.percentile(same, [50, 99])
            beside = f"  (chain: p50 {c50:5.1f} ms  p99 {c99:6.1f} ms  mean {same.mean():5.1f} ms)"
        own = f"p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  mean {ms.mean():7.1f} ms"
        print(f"  hop {hop:<10} {own}{beside}", flush=True)
        for q, value in ((50, p50), (99, p99)):
            name = f"  latency hop {hop} p{q}"
            figures.append(figure(name, float(value), "ms", id=f"latency_hop_{hop}_p{q}_ms"))


def latency_marks(chain: list[float]) -> dict[str, float]:
    """The latency chart's target lines: 1.3x the same run's chain p50 and p99 (the fixed 40 and
    60 ms drawn before were an older target).

    >>> latency_marks([10.0, 10.0, 20.0])
    {'target p50 13.0 ms (1.3x chain)': 13.0, 'target p99 25.7 ms (1.3x chain)': 25.74}
    """
    if not chain:
        return {}
    marks = {}
    for q in (50, 99):
        value = round(1.3 * float(np.percentile(chain, q)), 2)
        marks[f"target p{q} {value:,.1f} ms (1.3x chain)"] = value
    return marks


def _merge(rss: dict[str, float], peaks: PeakRss) -> None:
    for name, mb in by_service(peaks.peaks_mb(), service_of).items():
        rss[name] = max(mb, rss.get(name, 0.0))


def main() -> dict:
    figures: list[dict] = []
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="volstream-bench-") as tmp:
        work = Path(tmp)
        t0 = int(START.timestamp())
        train = work / "train.parquet"
        write_slice(train, t0 - 92 * 86400, t0 - 8 * 86400)
        with MlflowServer(work / "mlflow") as mlflow:
            with Pipeline(work / "train", mlflow.uri) as pipe:
                pipe.train_champion(train)
            replay = throughput(work, mlflow.uri, figures, rss) if "throughput" in PARTS else {}
            series = latency(work, mlflow.uri, figures, rss) if "latency" in PARTS else {}
    for name in SERVICES:
        if name in rss:
            figures.append(figure(f"peak RSS: {name}", rss[name], "MB", RSS_TARGET))
    save(
        "pipeline",
        figures,
        replay=replay,
        peak_rss_mb=rss,
        series=series,
        series_unit="ms",
        series_marks=latency_marks(series.get("raw 4-hop chain", [])),
    )
    return {"figures": figures}


if __name__ == "__main__":
    main()
