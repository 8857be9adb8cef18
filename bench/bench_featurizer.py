"""Features per second through the Faust featurizer, for a month of real BTCUSDT candles.

A fresh embedded broker; 30 days (43,200 candles, November 2024) produced to ``ticks.clean``;
one ``python -m services.featurizer`` worker started after the candles are in; the time from
the first to the last FeatureVector (the steady rate through Faust) and from the worker's start
to the last vector (start-up and group join included). The streamed vectors are checked against
``featurize_many`` on the same slice.

Then the live case, on a second fresh broker: after 1,500 candles per symbol of warm-up, single
candles at 100/s round-robin over three symbols are published to ``ticks.clean`` (one record per
send, as the validator publishes them live), and the featurizer's hop is timed per candle as the
latency benchmark times it: its vector's record timestamp minus its candle's (both stamped by a
producer as the record is queued; one machine, one clock). Its ceiling in the same run: an
aiokafka passthrough stage (``getmany`` with ``fetch_max_wait_ms=5``, gathered sends) between
two other topics, fed in the same ticks. ``BENCH_FEATURIZER_HOP_S`` (30) sets the feed's length.
The worker's CPU is read over the feed and over 5 idle seconds before it: at 100 candles/s, its
idle fetch polling is a large share of the CPU per candle, so both are reported, and the feed's
CPU is split between the main thread (the event loop: agent, features, producer) and Faust's
consumer thread (fetching).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.ceilings import PAD, _passthrough
from bench.common import figure, save
from devstack.broker import EmbeddedBroker, free_port
from services.common import kafka
from services.common.features import FEATURE_NAMES, featurize_many
from services.common.settings import Settings
from services.common.topics import FEATURES, TICKS_CLEAN
from services.common.vector_codec import head_of, is_binary
from services.featurizer.app import internal_topics
from services.featurizer.parity import compare
from services.featurizer.replay import Worker, collect, load_candles, produce, to_candles
from services.featurizer.settings import FeaturizerSettings

START, DAYS = "2024-11-01", 30
HOP_SYMBOLS = ("BTC", "ETH", "SOL")
HOP_RATE = 100.0
HOP_S = float(os.environ.get("BENCH_FEATURIZER_HOP_S", "30"))
HOP_WARM = 1500
HOP_TOPICS = ("bench.hop.in", "bench.hop.out")
IDLE_S = 5.0


def main() -> dict[str, Any]:
    settings0 = Settings()
    frame = load_candles(settings0.shared_data_dir / "btcusdt_1m_2023-2024.parquet", START, DAYS)
    with tempfile.TemporaryDirectory(prefix="bench_featurizer_") as tmp:
        broker = EmbeddedBroker(port=free_port(), log_path=Path(tmp) / "broker.log").start()
        try:
            result = asyncio.run(_run(broker.bootstrap, frame, Path(tmp)))
        finally:
            broker.stop()
    n = len(frame)
    report = compare(result["vectors"], featurize_many(frame), FEATURE_NAMES)
    figures = [
        figure("featurizer: candles in the month", n, "candles"),
        figure(
            "featurizer: Faust throughput (first->last vector)",
            n / result["steady_s"],
            "candles/s",
            target=">= 10000",
            id="featurizer_candles_per_s",
        ),
        figure(
            "featurizer: candles per worker CPU-second",
            n / max(result["cpu_s"], 1e-9),
            "candles/cpu-s",
            target=">= 6000",
        ),
        figure("featurizer: worker start to last vector", result["total_s"], "s"),
        figure("featurizer: mean micro-batch", result["mean_batch"], "candles"),
        figure(
            "featurizer: stream/batch mismatched cells", len(report.mismatches), "cells", target="0"
        ),
    ]
    figures += _hop_figures(frame)
    save("featurizer", figures, start=START, days=DAYS, candles=n, missing=len(report.missing))
    return {"figures": figures}


async def _run(bootstrap: str, frame: Any, tmp: Path) -> dict[str, Any]:
    settings = Settings(kafka_bootstrap_servers=bootstrap, data_dir=tmp / "data")
    await kafka.ensure_topics(settings, extra=internal_topics(FeaturizerSettings()))
    await produce(settings, to_candles(frame, "BTC"))
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATA_DIR": str(tmp / "data"),
        "LOG_LEVEL": "DEBUG",
    }
    worker = Worker(env, tmp / "worker.log")
    t0 = time.time()
    worker.start()
    assert worker.proc is not None
    cpu: list[tuple[float, float]] = []
    sampler = asyncio.create_task(_sample_cpu(worker.proc.pid, cpu))
    try:
        got = await collect(settings, {"BTC": len(frame)}, timeout_s=170)
    finally:
        sampler.cancel()
        worker.stop()
    sizes = [orjson.loads(x)["candles"] for x in _lines(tmp / "worker.log", '"msg":"batch"')]
    vectors = [vs[0] for vs in got.values()]
    emitted = sorted(v.emitted_at for v in vectors)
    return {
        "vectors": vectors,
        "steady_s": max(emitted[-1] - emitted[0], 1e-9),
        "total_s": emitted[-1] - t0,
        "mean_batch": sum(sizes) / max(len(sizes), 1),
        "cpu_s": _cpu_at(cpu, emitted[-1]) - _cpu_at(cpu, emitted[0]),
    }


def _hop_figures(frame: Any) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench_featurizer_hop_") as tmp:
        broker = EmbeddedBroker(port=free_port(), log_path=Path(tmp) / "broker.log").start()
        try:
            hop, ceiling, cpu_us, idle_ms, main_us = asyncio.run(
                _hop(broker.bootstrap, frame, Path(tmp))
            )
        finally:
            broker.stop()
    figures = []
    for q in (50, 99):
        value, base = float(np.percentile(hop, q)), float(np.percentile(ceiling, q))
        figures.append(
            figure(
                f"featurizer hop p{q} @100 single candles/s (3 symbols)",
                value,
                "ms",
                ceiling=f"aiokafka passthrough hop p{q} {base:,.1f} ms (this run)",
            )
        )
        figures.append(figure(f"  featurizer hop p{q} / passthrough hop p{q}", value / base, "x"))
    figures.append(figure("featurizer CPU per candle @100 single candles/s", cpu_us, "us"))
    figures.append(figure("  of which its main thread (agent, features, produce)", main_us, "us"))
    figures.append(
        figure("  of which Faust's consumer thread (fetch polling)", cpu_us - main_us, "us")
    )
    figures.append(figure("  of which idle fetch polling (CPU at idle, per s)", idle_ms, "ms/s"))
    per_candle = cpu_us - idle_ms * 1000 / HOP_RATE
    figures.append(figure("  featurizer CPU per candle, idle polling excluded", per_candle, "us"))
    return figures


async def _hop(
    bootstrap: str, frame: Any, tmp: Path
) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """Per-candle featurizer hop and passthrough hop (ms), the worker's CPU per candle (µs), its
    CPU at idle (ms per s: Faust's consumer thread polling the broker every few ms) and its main
    thread's CPU per candle (µs: the event loop with the agent, the features and the producer)."""
    settings = Settings(kafka_bootstrap_servers=bootstrap, data_dir=tmp / "data")
    extra = internal_topics(FeaturizerSettings())
    extra += [(t, settings.topic_partitions) for t in HOP_TOPICS]
    await kafka.ensure_topics(settings, extra=extra)
    n_feed = int(HOP_S * HOP_RATE / len(HOP_SYMBOLS))
    rows = {s: to_candles(frame.iloc[: HOP_WARM + n_feed], s) for s in HOP_SYMBOLS}
    await produce(settings, [c for s in HOP_SYMBOLS for c in rows[s][:HOP_WARM]])
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATA_DIR": str(tmp / "data")}
    worker = Worker(env, tmp / "worker.log").start()
    assert worker.proc is not None
    stop = asyncio.Event()
    stage = asyncio.create_task(_passthrough(settings, *HOP_TOPICS, stop))
    consumer = kafka.make_consumer(
        TICKS_CLEAN, FEATURES, *HOP_TOPICS, group_id=None, settings=settings, fetch_max_wait_ms=5
    )
    producer = kafka.make_producer(settings, linger_ms=0)
    await consumer.start()
    await producer.start()
    stamps: dict[str, dict[Any, int]] = {t: {} for t in (TICKS_CLEAN, FEATURES, *HOP_TOPICS)}
    reading: asyncio.Task[None] | None = None
    try:
        await collect(settings, {s: HOP_WARM for s in HOP_SYMBOLS}, timeout_s=170)
        reading = asyncio.create_task(_stamp(consumer, stamps, stop))
        await asyncio.sleep(1.0)  # the warm-up's records read, the stage positioned
        cpu0, t0 = _cpu_s(worker.proc.pid), time.monotonic()
        await asyncio.sleep(IDLE_S)  # nothing to do: what the worker's polling alone costs
        idle_ms = (_cpu_s(worker.proc.pid) - cpu0) / (time.monotonic() - t0) * 1000
        tails = (rows[s][HOP_WARM:] for s in HOP_SYMBOLS)
        feed = [c for row in zip(*tails, strict=True) for c in row]
        cpu0, t0 = _cpu_s(worker.proc.pid), time.monotonic()
        main0 = _cpu_s(worker.proc.pid, worker.proc.pid)
        for i, candle in enumerate(feed):
            await asyncio.sleep(max(0.0, t0 + i / HOP_RATE - time.monotonic()))
            await producer.send(TICKS_CLEAN, candle.to_bytes(), candle.symbol.encode())
            probe = orjson.dumps({"i": i, "pad": PAD})
            await producer.send(HOP_TOPICS[0], probe, candle.symbol.encode())
        await producer.flush()
        deadline = time.monotonic() + 30
        while len(stamps[FEATURES]) < len(feed) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        cpu_us = (_cpu_s(worker.proc.pid) - cpu0) / len(feed) * 1e6
        main_us = (_cpu_s(worker.proc.pid, worker.proc.pid) - main0) / len(feed) * 1e6
    finally:
        stop.set()
        worker.stop()
        await producer.stop()
        await asyncio.gather(stage, *([reading] if reading else []), return_exceptions=True)
        await consumer.stop()
    skip = int(HOP_RATE)  # the first second warms up
    keys = [(c.symbol, c.time) for c in feed][skip:]
    ins, outs = stamps[TICKS_CLEAN], stamps[FEATURES]
    hop = [outs[k] - ins[k] for k in keys if k in outs and k in ins]
    ins, outs = stamps[HOP_TOPICS[0]], stamps[HOP_TOPICS[1]]
    ceiling = [outs[i] - ins[i] for i in range(skip, len(feed)) if i in outs and i in ins]
    return np.array(hop, dtype=float), np.array(ceiling, dtype=float), cpu_us, idle_ms, main_us


async def _stamp(consumer: Any, stamps: dict[str, dict[Any, int]], stop: asyncio.Event) -> None:
    """Record timestamps by candle (symbol, time) on ticks.clean and features, by probe index
    on the passthrough's topics (vectors of the warm-up are read too, and never looked up)."""
    while not stop.is_set():
        batch = await consumer.getmany(timeout_ms=50)
        for tp, records in batch.items():
            into = stamps[tp.topic]
            for r in records:
                if is_binary(r.value):  # a feature vector
                    head = head_of(r.value)
                    into[(head.symbol, head.time)] = r.timestamp
                    continue
                doc = orjson.loads(r.value)
                into[doc["i"] if "i" in doc else (doc["symbol"], doc["time"])] = r.timestamp


def _cpu_s(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds of process ``pid`` (of its thread ``thread`` if given)."""
    path = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat")
    fields = path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _sample_cpu(pid: int, out: list[tuple[float, float]]) -> None:
    """(wall time, CPU seconds used by the worker) every 0.1 s: the machine may be shared, so
    the rate per CPU-second says more about the code than the wall-clock rate."""
    tick = os.sysconf("SC_CLK_TCK")
    while True:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out.append((time.time(), (int(fields[11]) + int(fields[12])) / tick))
        await asyncio.sleep(0.1)


def _cpu_at(samples: list[tuple[float, float]], when: float) -> float:
    """The CPU seconds of the last sample taken at or before ``when``."""
    before = [c for t, c in samples if t <= when]
    return before[-1] if before else 0.0


def _lines(path: Path, text: str) -> list[str]:
    return [x for x in path.read_text(errors="replace").splitlines() if text in x]


if __name__ == "__main__":
    main()
