"""Predictor stream loop benchmark: what the predictor's Kafka side costs per feature vector.

The real loops (``StreamWorker`` on ``features``, ``SideConsumer`` on ``ticks.clean``) run in
this process on uvloop against an embedded broker, with the process settings the service's
``__main__`` applies (``services.common.runtime.tune_gc``), with the model ``make run`` serves
(``bench_predictor.fit_model``; ``BENCH_MODEL_DIR`` reuses one already fitted there) and real
feature vectors (the featurizer's core on the first weeks of the two-year file):

- **bulk**: a backlog of ``BENCH_STREAM_VECTORS`` warm vectors (and their candles on
  ``ticks.clean``, which the live-accuracy join reads) waits on the broker; the figure is this
  process's CPU (every thread) from the first vector fetched to the last one committed, per vector,
  and the broker's CPU over the same span. This is the predictor's share of the end-to-end replay.
- **single vectors at 100/s**: a feeder process publishes one vector (and its close) at a time,
  100/s round-robin over three symbols, as live mode does, and stamps each champion prediction on
  arrival: the predictor hop's latency is arrival minus the vector's ``emitted_at`` (one clock,
  the feeder's). The figure is this process's CPU per second of steady feed.

CPU time, not wall time: it survives other load on the machine. Figures are printed, never
asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.bench_predictor import cpu_seconds
from bench.common import figure, save
from devstack.broker import EmbeddedBroker, free_port
from services.common.settings import metrics_off_env

BULK_VECTORS = int(os.environ.get("BENCH_STREAM_VECTORS", "30000"))
FEED_RATE = 100.0
FEED_WARMUP_S = 6.0  # group join (half the session timeout) and the first fetches
FEED_MEASURE_S = float(os.environ.get("BENCH_STREAM_FEED_S", "20"))
SYMBOLS = ("BTC", "ETH", "SOL")
#: The vectors' wire format: ``binary`` (what the featurizer publishes) or ``json`` (the format
#: before it, still read: for a same-code comparison of the two).
VECTOR_FORMAT = os.environ.get("BENCH_VECTOR_FORMAT", "binary")


def wire(doc: dict[str, Any]) -> bytes:
    """A vector document (FeatureVector fields) in :data:`VECTOR_FORMAT`."""
    from services.common.vector_codec import encode_values

    if VECTOR_FORMAT == "json":
        return orjson.dumps(doc)
    return encode_values(
        doc["symbol"],
        doc["time"],
        doc["feature_version"],
        doc["warm"],
        list(doc["features"].values()),
        doc["ingested_at"],
        doc["emitted_at"],
    )


def real_vectors(n: int) -> tuple[list[bytes], list[bytes]]:
    """``n`` warm BTC feature vectors as the featurizer publishes them (in
    :data:`VECTOR_FORMAT`), from the start of the two-year file, and the candles of the same
    minutes as ``ticks.clean`` holds them."""
    import pandas as pd

    from bench.harness import TWO_YEARS
    from services.common import features
    from services.common.schemas import Candle
    from services.featurizer.core import Featurizer, Record

    minutes = features.WARMUP_MINUTES + n + 200  # a margin for the file's gaps
    df = pd.read_parquet(TWO_YEARS).iloc[:minutes]
    fields = ["time", "open", "high", "low", "close", "volumefrom", "volumeto"]
    rows = df[fields].to_dict("records")
    candles = [
        Candle(symbol="BTC", **{k: (int(v) if k == "time" else float(v)) for k, v in r.items()})
        for r in rows
    ]
    raw = [c.to_bytes() for c in candles]
    core = Featurizer(features.OnlineFeatures, features.FEATURE_VERSION, features.HISTORY_MINUTES)
    vectors = []
    for start in range(0, len(raw), 2000):
        chunk = [Record(0, start + i, b"BTC", v) for i, v in enumerate(raw[start : start + 2000])]
        vectors += [v for v in core.process(chunk).features if v.warm]
    vectors = vectors[:n]
    first = vectors[0].time
    return [wire(v.__dict__) for v in vectors], [
        b for c, b in zip(candles, raw, strict=True) if c.time >= first
    ]


class Probe:
    """CPU and wall clock marks of this process around the loops' work."""

    def __init__(self, broker_pid: int) -> None:
        self.broker_pid = broker_pid
        self.marks: dict[str, tuple[float, float, float]] = {}

    def mark(self, name: str) -> None:
        self.marks[name] = (time.process_time(), cpu_seconds(self.broker_pid), time.monotonic())

    def span(self, a: str, b: str) -> tuple[float, float, float]:
        """(own CPU s, broker CPU s, wall s) between two marks."""
        (c0, b0, w0), (c1, b1, w1) = self.marks[a], self.marks[b]
        return c1 - c0, b1 - b0, w1 - w0


def service(bootstrap: str, model_dir: Path, var: Path) -> Any:
    """The predictor's state (as ``build_service`` wires it) around the served model."""
    from bench.bench_predictor import load_model
    from services.common.settings import Settings
    from services.predictor.app import build_service
    from services.predictor.models import StaticRegistry
    from services.predictor.settings import PredictorSettings

    settings = Settings(kafka_bootstrap_servers=bootstrap, var_dir=var)
    psettings = PredictorSettings(realized_offset_reset="earliest")
    return build_service(settings, psettings, StaticRegistry(load_model(model_dir), champion="1"))


async def run_loops(svc: Any, until: Any, probe: Probe) -> None:
    """The stream and side loops until ``until()`` is true; marks 'first' at the first fetched
    vector and 'done' when ``until()`` holds."""
    from services.common.runtime import tune_gc
    from services.predictor.stream import StreamWorker

    tune_gc()  # as the service's __main__ does once its objects are built
    await svc.holder.reload()
    worker: StreamWorker = svc.worker
    step = worker.step

    async def marked_step(consumer: Any, producer: Any) -> int:
        n = await step(consumer, producer)
        if n and "first" not in probe.marks:
            probe.mark("first")
        return n

    worker.step = marked_step  # type: ignore[method-assign]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(worker.run(stop)), asyncio.create_task(svc.side.run(stop))]
    try:
        while not until():
            for t in tasks:
                if t.done():
                    t.result()
            await asyncio.sleep(0.02)
        probe.mark("done")
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def bulk(bootstrap: str, broker_pid: int, model_dir: Path, var: Path) -> list[dict[str, Any]]:
    """The backlog: CPU per vector from the first fetch to the last commit."""
    import uvloop

    from services.common import kafka
    from services.common.settings import Settings
    from services.common.topics import FEATURES, TICKS_CLEAN

    vectors, closes = real_vectors(BULK_VECTORS)
    settings = Settings(kafka_bootstrap_servers=bootstrap)
    asyncio.run(kafka.publish(FEATURES, [(b"BTC", v) for v in vectors], settings))
    asyncio.run(kafka.publish(TICKS_CLEAN, [(b"BTC", c) for c in closes], settings))
    svc = service(bootstrap, model_dir, var)
    probe = Probe(broker_pid)
    handled = {"closes": 0}
    handle = svc.side.handle

    def counted(records: Any) -> None:
        records = list(records)
        handled["closes"] += len(records)
        handle(records)

    svc.side.handle = counted

    def done() -> bool:
        committer = svc.worker.committer
        committed = sum(committer.committed.values()) if committer else 0
        return committed >= len(vectors) and handled["closes"] >= len(closes)

    uvloop.run(run_loops(svc, done, probe))
    own, broker, wall = probe.span("first", "done")
    n = len(vectors)
    return [
        figure("stream loop, bulk: vectors", n, ""),
        figure(
            "stream loop, bulk: predictor CPU per vector",
            own / n * 1e6,
            "us",
            "<= 35",
            id="stream_bulk_cpu_us_per_vector",
        ),
        figure("stream loop, bulk: broker CPU per vector", broker / n * 1e6, "us"),
        figure("stream loop, bulk: vectors per wall second", n / wall, "/s"),
        figure("stream loop, bulk: load average (1 min)", os.getloadavg()[0], ""),
    ]


def feed(bootstrap: str, vectors_path: str, seconds: float, out_path: str) -> None:
    """The feeder process: single vectors (and their closes) at FEED_RATE over three symbols
    for ``seconds``; the predictor hop's latency of each champion prediction to ``out_path``."""
    import uvloop
    from aiokafka import AIOKafkaConsumer

    from services.common import kafka
    from services.common.settings import Settings
    from services.common.topics import FEATURES, PREDICTIONS, TICKS_CLEAN

    settings = Settings(kafka_bootstrap_servers=bootstrap)
    bodies = json.loads(Path(vectors_path).read_text())  # vector documents
    lat: list[tuple[float, float]] = []  # (arrival since the feed's start, latency s)

    async def consume(consumer: AIOKafkaConsumer, t0: float) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            arrival = time.time()
            for recs in batch.values():
                for r in recs:
                    p = orjson.loads(r.value)
                    if p["role"] == "champion" and p.get("features_emitted_at"):
                        lat.append((arrival - t0, arrival - p["features_emitted_at"]))

    async def run() -> None:
        producer = kafka.make_producer(settings, linger_ms=0)
        consumer = kafka.make_consumer(
            PREDICTIONS, group_id=None, settings=settings, auto_offset_reset="latest"
        )
        await producer.start()
        await consumer.start()
        t0, clock0 = time.monotonic(), int(time.time()) // 60 * 60
        reader = asyncio.create_task(consume(consumer, time.time()))
        try:
            i = 0
            while time.monotonic() - t0 < seconds:
                await asyncio.sleep(max(0.0, t0 + i / FEED_RATE - time.monotonic()))
                symbol, body = SYMBOLS[i % 3], bodies[(i // 3) % len(bodies)]
                t = clock0 + 60 * (i // 3)
                vector = {**body, "symbol": symbol, "time": t, "emitted_at": time.time()}
                close = {"symbol": symbol, "time": t, "open": 1.0, "high": 1.0, "low": 1.0}
                close |= {"close": 1.0, "volumefrom": 1.0, "volumeto": 1.0}
                key = symbol.encode()
                await producer.send(FEATURES, value=wire(vector), key=key)
                await producer.send(TICKS_CLEAN, value=orjson.dumps(close), key=key)
                i += 1
            await asyncio.sleep(1.0)
        finally:
            reader.cancel()
            await consumer.stop()
            await producer.stop()
        Path(out_path).write_text(json.dumps(lat))

    uvloop.run(run())


def singles(bootstrap: str, broker_pid: int, model_dir: Path, var: Path) -> list[dict[str, Any]]:
    """100 single vectors/s: the loops' CPU per second of steady feed, and the hop latency."""
    import numpy as np
    import uvloop

    from services.common.vector_codec import document

    vectors, _ = real_vectors(300)
    tmp = var / "feed"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "vectors.json").write_text(json.dumps([document(v) for v in vectors]))
    seconds = FEED_WARMUP_S + FEED_MEASURE_S
    env = {**os.environ, **metrics_off_env(), "LOG_LEVEL": "WARNING"}
    cmd = [sys.executable, "-m", "bench.bench_stream", "feed", bootstrap]
    cmd += [str(tmp / "vectors.json"), str(seconds), str(tmp / "latency.json")]
    svc = service(bootstrap, model_dir, var)
    probe = Probe(broker_pid)
    scored = svc.metrics.vectors.labels("scored")
    counts: dict[str, float] = {"commits": 0}
    t_start = time.monotonic()

    def count_commits() -> None:
        """From here on, count the commit requests the loop sends."""
        committer = svc.worker.committer
        inner = committer._commit

        async def counted(offsets: Any) -> None:
            counts["commits"] += 1
            await inner(offsets)

        committer._commit = counted

    feeder = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:

        def until() -> bool:
            """Measure from FEED_WARMUP_S after the feed's start for FEED_MEASURE_S."""
            elapsed = time.monotonic() - t_start
            if "a" not in probe.marks and elapsed >= FEED_WARMUP_S:
                probe.mark("a")
                counts["a"] = scored._value.get()
                count_commits()
            if "a" in probe.marks and elapsed >= seconds:
                probe.mark("b")
                counts["b"] = scored._value.get()
                return True
            return False

        uvloop.run(run_loops(svc, until, probe))
        feeder.wait(timeout=60)
    finally:
        if feeder.poll() is None:
            os.killpg(feeder.pid, 15)
            feeder.wait()
    own, broker, wall = probe.span("a", "b")
    n = counts["b"] - counts["a"]
    lat = np.array([s for t, s in json.loads((tmp / "latency.json").read_text())
                    if FEED_WARMUP_S <= t <= seconds]) * 1e3  # fmt: skip
    return [
        figure("stream loop, 100 vectors/s: vectors scored while measured", n, ""),
        figure(
            "stream loop, 100 vectors/s: predictor CPU",
            own / wall * 1e3,
            "ms/s",
            id="stream_single_cpu_ms_per_s",
        ),
        figure("stream loop, 100 vectors/s: predictor CPU per vector", own / n * 1e6, "us"),
        figure("stream loop, 100 vectors/s: broker CPU per vector", broker / n * 1e6, "us"),
        figure("stream loop, 100 vectors/s: commit requests", counts["commits"] / wall, "/s"),
        figure(
            "predictor hop, 100 vectors/s: p50 (vector emitted -> prediction arrived)",
            float(np.percentile(lat, 50)),
            "ms",
            id="stream_single_hop_p50_ms",
        ),
        figure(
            "predictor hop, 100 vectors/s: p99",
            float(np.percentile(lat, 99)),
            "ms",
            id="stream_single_hop_p99_ms",
        ),
        figure("stream loop, 100 vectors/s: load average (1 min)", os.getloadavg()[0], ""),
    ]


def main() -> dict[str, Any]:
    from bench.bench_predictor import fit_model

    parts = os.environ.get("BENCH_STREAM_PARTS", "bulk,single").split(",")
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        given = os.environ.get("BENCH_MODEL_DIR")
        model_dir = Path(given) if given else Path(tmp) / "model"
        if not (model_dir / "model.ubj").exists():
            fit_model(model_dir)
        figures: list[dict[str, Any]] = []
        for part, fn in (("bulk", bulk), ("single", singles)):
            if part not in parts:
                continue
            with EmbeddedBroker(port=free_port(), log_path=Path(tmp) / f"{part}.log") as broker:
                from services.common import kafka
                from services.common.settings import Settings

                asyncio.run(kafka.ensure_topics(Settings(kafka_bootstrap_servers=broker.bootstrap)))
                assert broker.process is not None
                figures += fn(broker.bootstrap, broker.process.pid, model_dir, Path(tmp) / part)
    save("bench_stream", figures)
    return {"figures": figures}


if __name__ == "__main__":
    if sys.argv[1:2] == ["feed"]:
        feed(*sys.argv[2:4], float(sys.argv[4]), sys.argv[5])
    else:
        main()
