"""End-to-end figures: replay throughput ticks.raw → predictions, latency at 100 candles/s, and
the peak RSS of each service.

Both runs start the real services as subprocesses on a fresh embedded broker, with a champion
trained on the real history before the latency window. Each figure is printed next to its target
and a ceiling measured in the same run on the same broker (:mod:`bench.ceilings`): raw aiokafka
produce/consume rates for the replay, a 4-hop aiokafka passthrough chain for the latency.

The replay is the issue's slice: the 2-year file from its first candle, or the largest prefix of
it that gets through in ``BENCH_E2E_BUDGET_S`` (600 s) at full speed; ``BENCH_E2E_DAYS`` replays a
shorter slice instead (for quick checks). The figure states which.

Knobs: ``BENCH_E2E_DAYS``, ``BENCH_E2E_BUDGET_S``, ``BENCH_E2E_START`` (the latency window and the
training slice before it), ``BENCH_CHAIN_S`` (seconds of the chain ceiling).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow.parquet as pq

from bench.ceilings import chain_latency, chain_topics, raw_rates
from bench.common import figure, save
from bench.harness import TWO_YEARS, Pipeline, read_topic, write_slice
from bench.rss import PeakRss, by_service
from devstack.mlflow_local import MlflowServer
from services.common import kafka
from services.common.features import WARMUP_MINUTES
from services.common.schemas import Prediction
from services.common.topics import FEATURES, PREDICTIONS

START = pd.Timestamp(os.environ.get("BENCH_E2E_START", "2024-10-01"), tz="UTC")
E2E_DAYS = float(os.environ["BENCH_E2E_DAYS"]) if os.environ.get("BENCH_E2E_DAYS") else None
BUDGET_S = float(os.environ.get("BENCH_E2E_BUDGET_S", "600"))
CHAIN_S = float(os.environ.get("BENCH_CHAIN_S", "15"))
SYMBOLS = ("BTC", "ETH", "SOL")
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


@dataclass
class Progress:
    """What came out of the pipeline so far (counted incrementally, values barely parsed)."""

    features: int = 0
    cold: int = 0  # vectors before the longest window is full: no prediction for those
    predictions: int = 0  # champion predictions
    last_emitted: float = 0.0

    @property
    def through(self) -> int:
        """Candles that went all the way (a prediction out, or a cold vector that needs none)."""
        return self.cold + self.predictions

    def done(self, n: int) -> bool:
        return self.features >= n and self.predictions >= self.features - self.cold


async def follow(pipe: Pipeline, n: int, deadline: float) -> Progress:
    """Count features and predictions as they come, until all ``n`` candles went through or
    ``deadline`` (time.time()) passes."""
    consumer = kafka.make_consumer(
        FEATURES, PREDICTIONS, group_id=None, settings=pipe.settings, max_poll_records=20_000
    )
    await consumer.start()
    progress = Progress()
    try:
        while time.time() < deadline and not progress.done(n):
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                if tp.topic == FEATURES:
                    progress.features += len(records)
                    progress.cold += sum(b'"warm":false' in r.value for r in records)
                    continue
                preds = [orjson.loads(r.value) for r in records]
                champion = [p["emitted_at"] for p in preds if p.get("role") == "champion"]
                progress.predictions += len(champion)
                progress.last_emitted = max([progress.last_emitted, *champion])
    finally:
        await consumer.stop()
    return progress


def replay_slice(workdir: Path) -> tuple[Path, int, str]:
    """The replay file, its candle count and why this slice."""
    feed = workdir / "e2e.parquet"
    first = int(pq.read_table(TWO_YEARS, columns=["time"])["time"][0].as_py())
    if E2E_DAYS is None:
        n = write_slice(feed, first, 2**62)
        return feed, n, f"the 2-year file, or the prefix that got through in {BUDGET_S:g} s"
    n = write_slice(feed, first, first + int(E2E_DAYS * 86400))
    return feed, n, f"BENCH_E2E_DAYS={E2E_DAYS:g} (a quick check, not the issue's 2-year slice)"


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
        began = time.time()
        pipe.volstream("replay", "ingest", "replay", "--file", str(feed), "--symbol", "BTC")
        got = asyncio.run(follow(pipe, n, deadline=began + BUDGET_S))
        elapsed = (got.last_emitted or time.time()) - began
    _merge(rss, peaks)
    days, complete = got.through / 1440, got.done(n)
    stated = f"{days:,.1f} days, {got.through:,} of {n:,} candles" + ("" if complete else ", cut")
    print(f"  replay slice: {stated}; why: {why}; {elapsed:,.0f} s", flush=True)
    figures.append(
        figure(
            f"end-to-end replay ({stated})",
            got.through / elapsed,
            "candles/s",
            ">= 5,000",
            f"raw produce {produce:,.0f}/s, consume {consume:,.0f}/s (same broker, this run)",
        )
    )
    warm = got.features - got.cold
    if not warm:
        print(f"  no warm vector: a slice needs {WARMUP_MINUTES / 1440:.1f}+ days", flush=True)
    if complete:
        figures.append(
            figure("  predictions out (warm vectors)", got.predictions, "", f"== {warm:,}")
        )
    return {"candles": n, "through": got.through, "days": days, "complete": complete, "why": why}


def latency(
    workdir: Path, mlflow_uri: str, figures: list[dict], rss: dict[str, float]
) -> dict[str, list[float]]:
    """A steady 100 candles/s over three symbols, after a week of warm-up at full speed; the
    4-hop chain ceiling runs first on the same broker, at the same rate."""
    t0 = int(START.timestamp())
    warmup, steady = workdir / "warmup.parquet", workdir / "steady.parquet"
    n_warm = write_slice(warmup, t0 - 7 * 86400 - 3600, t0)
    n_steady = write_slice(steady, t0, t0 + 3600 * 12)
    with Pipeline(workdir / "latency", mlflow_uri) as pipe, watch(pipe) as peaks:
        topics = chain_topics()
        asyncio.run(
            kafka.ensure_topics(pipe.settings, extra=[(t, pipe.partitions) for t in topics])
        )
        chain = asyncio.run(chain_latency(pipe.settings, topics, rate=100, seconds=CHAIN_S))
        start_stream(pipe)
        for s in SYMBOLS:
            pipe.volstream(f"warm-{s}", "ingest", "replay", "--file", str(warmup), "--symbol", s)
        asyncio.run(wait_for(pipe, "features", n_warm * len(SYMBOLS), timeout_s=600))
        speed = 100 / len(SYMBOLS) * 60  # candles/s per symbol, times 60 s per candle
        for s in SYMBOLS:
            pipe.volstream(
                f"steady-{s}", "ingest", "replay", "--file", str(steady), "--symbol", s,
                "--speed", f"{speed:g}",
            )  # fmt: skip

        # the warm-up week is scored too (warm after 5.6 days): wait for the steady window's own
        def steady_only(v: bytes) -> bool:
            return Prediction.from_bytes(v).time >= t0

        preds = asyncio.run(
            wait_for(
                pipe,
                "predictions",
                n_steady * len(SYMBOLS),
                timeout_s=n_steady / 33 + 120,
                keep=steady_only,
            )
        )
    _merge(rss, peaks)
    lat = np.array(
        [
            (p.emitted_at - p.ingested_at) * 1000
            for p in map(Prediction.from_bytes, preds)
            if p.ingested_at and p.time >= t0
        ]
    )
    if lat.size:
        for q, target in ((50, "<= 40"), (99, "<= 60")):
            ceiling = (
                f"raw 4-hop chain p{q} {np.percentile(chain, q):,.1f} ms (same broker, this run)"
            )
            figures.append(
                figure(
                    f"latency publish→prediction p{q} @100 candles/s",
                    float(np.percentile(lat, q)),
                    "ms",
                    target,
                    ceiling if chain.size else "raw 4-hop chain: no sample",
                )
            )
    for q in (50, 99):
        if chain.size:
            figures.append(
                figure(
                    f"  ceiling: raw 4-hop aiokafka chain p{q} @100 msg/s",
                    float(np.percentile(chain, q)),
                    "ms",
                )
            )
    return {
        "publish→prediction": [round(float(x), 2) for x in lat],
        "raw 4-hop chain": [round(float(x), 2) for x in chain],
    }


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
            replay = throughput(work, mlflow.uri, figures, rss)
            series = latency(work, mlflow.uri, figures, rss)
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
        series_marks={"target p50 40 ms": 40, "target p99 60 ms": 60},
    )
    return {"figures": figures}


if __name__ == "__main__":
    main()
