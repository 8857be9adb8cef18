"""End-to-end figures: replay throughput ticks.raw → predictions, and latency at 100 candles/s.

Both run the real services as subprocesses on a fresh embedded broker, with a champion trained on
the real history just before the replayed window. Each figure is printed next to its target and
the ceiling measured in the same run (raw aiokafka produce/consume on the same broker).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import figure, save
from bench.harness import Pipeline, read_topic, write_slice
from services.common import kafka
from services.common.mlflow_local import MlflowServer
from services.common.schemas import FeatureVector, Prediction

START = pd.Timestamp(os.environ.get("BENCH_E2E_START", "2024-10-01"), tz="UTC")
E2E_DAYS = float(os.environ.get("BENCH_E2E_DAYS", "30"))
SYMBOLS = ("BTC", "ETH", "SOL")


async def raw_ceiling(pipe: Pipeline, n: int = 100_000) -> tuple[float, float]:
    """Raw produce and consume rates (msg/s) of 195-byte values on this broker, this run."""
    value = b"x" * 195
    producer = kafka.make_producer(pipe.settings)
    await producer.start()
    t0 = time.perf_counter()
    for i in range(0, n, 5000):
        await kafka.send_batch(
            producer, "bench.raw", [(b"k%d" % (j % 3), value) for j in range(i, min(n, i + 5000))]
        )
    produce = n / (time.perf_counter() - t0)
    await producer.stop()
    t0 = time.perf_counter()
    got = len(await read_topic(pipe.settings, "bench.raw", idle_s=0.5))
    consume = got / (time.perf_counter() - t0 - 0.5)
    return produce, consume


async def wait_for(pipe: Pipeline, topic: str, count: int, timeout_s: float) -> list[bytes]:
    """Poll ``topic`` until it holds ``count`` records (or time runs out)."""
    deadline = time.monotonic() + timeout_s
    values: list[bytes] = []
    while time.monotonic() < deadline:
        values = [r.value for r in await read_topic(pipe.settings, topic, idle_s=1.0)]
        if len(values) >= count:
            break
        await asyncio.sleep(2)
    return values


def start_stream(pipe: Pipeline) -> None:
    for name in ("validator", "featurizer", "predictor"):
        pipe.service(name)


def throughput(workdir: Path, mlflow_uri: str, figures: list[dict]) -> None:
    """Replay E2E_DAYS of real candles at max speed; candles/s from first publish to last
    prediction."""
    t0 = int(START.timestamp())
    feed = workdir / "e2e.parquet"
    n = write_slice(feed, t0, t0 + int(E2E_DAYS * 86400))
    with Pipeline(workdir / "e2e", mlflow_uri) as pipe:
        asyncio.run(kafka.ensure_topics(pipe.settings, extra=[("bench.raw", 3)]))
        produce, consume = asyncio.run(raw_ceiling(pipe))
        start_stream(pipe)
        time.sleep(12)  # Faust worker start-up and group joins, before the clock starts
        began = time.time()
        pipe.volstream("replay", "ingest", "replay", "--file", str(feed), "--symbol", "BTC")
        feats = asyncio.run(wait_for(pipe, "features", n, timeout_s=600))
        warm = sum(FeatureVector.from_bytes(v).warm for v in feats)
        preds = asyncio.run(wait_for(pipe, "predictions", warm, timeout_s=300))
        last = max((Prediction.from_bytes(v).emitted_at for v in preds), default=time.time())
        rate = n / (last - began)
        figures.append(
            figure(
                f"end-to-end replay ({E2E_DAYS:g} days, {n:,} candles)",
                rate,
                "candles/s",
                ">= 5,000",
                f"raw produce {produce:,.0f}/s, consume {consume:,.0f}/s",
            )
        )
        figures.append(figure("  predictions out (warm vectors)", len(preds), "", f"== {warm:,}"))


def latency(workdir: Path, mlflow_uri: str, figures: list[dict]) -> None:
    """A steady 100 candles/s over three symbols, after a week of warm-up at full speed."""
    t0 = int(START.timestamp())
    warmup, steady = workdir / "warmup.parquet", workdir / "steady.parquet"
    n_warm = write_slice(warmup, t0 - 7 * 86400 - 3600, t0)
    n_steady = write_slice(steady, t0, t0 + 3600 * 12)
    with Pipeline(workdir / "latency", mlflow_uri) as pipe:
        start_stream(pipe)
        for s in SYMBOLS:
            pipe.volstream(f"warm-{s}", "ingest", "replay", "--file", str(warmup), "--symbol", s)
        asyncio.run(wait_for(pipe, "features", n_warm * len(SYMBOLS), timeout_s=600))
        speed = 100 / len(SYMBOLS) * 60  # candles/s per symbol, times 60 s per candle
        for s in SYMBOLS:
            pipe.volstream(
                f"steady-{s}",
                "ingest",
                "replay",
                "--file",
                str(steady),
                "--symbol",
                s,
                "--speed",
                f"{speed:g}",
            )
        preds = asyncio.run(
            wait_for(
                pipe, "predictions", n_steady * len(SYMBOLS) // 2, timeout_s=n_steady / 33 + 120
            )
        )
        lat = np.array(
            [
                (p.emitted_at - p.ingested_at) * 1000
                for p in map(Prediction.from_bytes, preds)
                if p.ingested_at and p.time >= t0
            ]
        )
        if lat.size:
            figures.append(
                figure(
                    "latency publish→prediction p50 @100 candles/s",
                    float(np.percentile(lat, 50)),
                    "ms",
                    "<= 40",
                    "raw 4-hop chain p50 42 ms (MEASURED.md)",
                )
            )
            figures.append(
                figure(
                    "latency publish→prediction p99 @100 candles/s",
                    float(np.percentile(lat, 99)),
                    "ms",
                    "<= 60",
                    "raw 4-hop chain p99 60 ms (MEASURED.md)",
                )
            )


def main() -> dict:
    figures: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="volstream-bench-") as tmp:
        work = Path(tmp)
        t0 = int(START.timestamp())
        train = work / "train.parquet"
        write_slice(train, t0 - 92 * 86400, t0 - 8 * 86400)
        with MlflowServer(work / "mlflow") as mlflow:
            with Pipeline(work / "train", mlflow.uri) as pipe:
                pipe.train_champion(train)
            throughput(work, mlflow.uri, figures)
            latency(work, mlflow.uri, figures)
    save("pipeline", figures)
    return {"figures": figures}


if __name__ == "__main__":
    main()
