"""Features per second through the Faust featurizer, for a month of real BTCUSDT candles.

A fresh embedded broker; 30 days (43,200 candles, November 2024) produced to ``ticks.clean``;
one ``python -m services.featurizer`` worker started after the candles are in; the time from
the first to the last FeatureVector (the steady rate through Faust) and from the worker's start
to the last vector (start-up and group join included). The streamed vectors are checked against
``featurize_many`` on the same slice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import figure, save
from devstack.broker import EmbeddedBroker, free_port
from services.common import kafka
from services.common.features import FEATURE_NAMES, featurize_many
from services.common.settings import Settings
from services.featurizer.app import internal_topics
from services.featurizer.parity import compare
from services.featurizer.replay import Worker, collect, load_candles, produce, to_candles
from services.featurizer.settings import FeaturizerSettings

START, DAYS = "2024-11-01", 30


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
