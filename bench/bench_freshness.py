"""Freshness: how long after a minute closes its prediction is on ``predictions`` (issue #20).

Live mode against the CryptoCompare emulator in real time: the emulator's clock is the wall
clock and a closed minute becomes visible ``BENCH_FRESHNESS_LAG_S`` (2 s) after it ends; the real
ingestor (warm-up, then minute-aligned polling), validator, featurizer and predictor run as
subprocesses on a fresh embedded broker, with a champion trained just before. After the warm-up
has gone through, every prediction of a live minute is timed on arrival at a consumer of
``predictions``: freshness = arrival (the consumer's clock) - (candle ``time`` + 60 s).

Targets: p50 <= lag + 1 s, p99 <= lag + 3 s. Knobs: ``BENCH_FRESHNESS_S`` (measured seconds,
default 330: five full minutes), ``BENCH_FRESHNESS_LAG_S`` (2), ``BENCH_FRESHNESS_SYMBOLS``
(``BTC,ETH,SOL``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd

from bench.common import figure, save
from bench.harness import Pipeline, write_slice
from devstack.broker import free_port
from devstack.mlflow_local import MlflowServer
from services.common import kafka
from services.common.topics import PREDICTIONS

MEASURE_S = float(os.environ.get("BENCH_FRESHNESS_S", "330"))
LAG_S = float(os.environ.get("BENCH_FRESHNESS_LAG_S", "2"))
SYMBOLS = os.environ.get("BENCH_FRESHNESS_SYMBOLS", "BTC,ETH,SOL")
#: The champion: 60 real days (its size hardly matters here: one row per symbol a minute).
TRAIN_FROM, TRAIN_DAYS = "2024-06-01", 60
WARMUP_TIMEOUT_S = 900.0


def start_emulator(pipe: Pipeline) -> str:
    port = free_port()
    pipe.start(
        "emulator",
        [sys.executable, "-m", "devstack.emulator", "--port", str(port), "--lag-s", str(LAG_S)],
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/_emulator/state", timeout=1).raise_for_status()
            return url
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError("the emulator did not answer")


async def measure(pipe: Pipeline, symbols: list[str]) -> tuple[list[float], float]:
    """Freshness of every live minute's prediction; returns (samples, warm-up seconds)."""
    consumer = kafka.make_consumer(
        PREDICTIONS, group_id=None, settings=pipe.settings, auto_offset_reset="earliest"
    )
    await consumer.start()
    t0, samples, warm_at = time.time(), [], None
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            arrived = time.time()
            for records in batch.values():
                for r in records:
                    p = orjson.loads(r.value)
                    if p.get("role") != "champion":
                        continue
                    age = arrived - (p["time"] + 60)
                    if warm_at is None and age < 60:  # the newest minute: the warm-up is through
                        warm_at = arrived
                    elif warm_at is not None and p["time"] + 60 > warm_at + 1:
                        samples.append(age)  # a minute that closed after the warm-up
            if warm_at is None and arrived - t0 > WARMUP_TIMEOUT_S:
                raise RuntimeError("no prediction of a live minute within the warm-up timeout")
            if warm_at is not None and arrived - warm_at > MEASURE_S:
                return samples, warm_at - t0
    finally:
        await consumer.stop()


def main() -> dict:
    figures: list[dict] = []
    symbols = [s.strip() for s in SYMBOLS.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="volstream-fresh-") as tmp:
        work = Path(tmp)
        train = work / "train.parquet"
        t0 = int(pd.Timestamp(TRAIN_FROM, tz="UTC").timestamp())
        write_slice(train, t0, t0 + TRAIN_DAYS * 86400)
        with MlflowServer(work / "mlflow") as mlflow, Pipeline(work / "pipe", mlflow.uri) as pipe:
            pipe.train_champion(train)
            url = start_emulator(pipe)
            for name in ("validator", "featurizer", "predictor"):
                pipe.service(name)
            pipe.service("ingestor", INGESTOR_CRYPTOCOMPARE_BASE_URL=url, SYMBOLS=",".join(symbols))
            samples, warm_s = asyncio.run(measure(pipe, symbols))
            print(f"warm-up: first live-minute prediction {warm_s:.1f} s after start", flush=True)
    arr = np.array(samples) if samples else np.array([np.nan])
    n = len(samples)
    note = f"{n} live minutes, {len(symbols)} symbols"
    figures += [
        figure("freshness: lag of the emulator", LAG_S, "s", "", id="freshness_lag_s"),
        figure(
            f"freshness p50 (close → on predictions; {note})",
            float(np.percentile(arr, 50)),
            "s",
            f"<= {LAG_S + 1:g}",
            f"availability lag {LAG_S:g} s",
            id="freshness_p50_s",
        ),
        figure(
            f"freshness p99 ({note})",
            float(np.percentile(arr, 99)),
            "s",
            f"<= {LAG_S + 3:g}",
            f"availability lag {LAG_S:g} s",
            id="freshness_p99_s",
        ),
        figure("freshness: warm-up to the first live minute", warm_s, "s", "<= 120"),
    ]
    save(
        "freshness",
        figures,
        series={"freshness": [s * 1000 for s in samples]},
        series_unit="ms",
        series_marks={"target p50": (LAG_S + 1) * 1000, "target p99": (LAG_S + 3) * 1000},
        load_average=os.getloadavg(),
    )
    return {"figures": figures}


if __name__ == "__main__":
    main()
