"""Validator throughput: the pure core, and the whole stage (ticks.raw -> ticks.clean) as a process.

Real candles from the two-year file, RawBatches of 1,000 rows, a fresh embedded broker. The stage
rate is taken between 10% and 90% of the candles arriving on ticks.clean, so the group join
(half the session timeout on Tansu) is reported apart.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bench.common import figure, save
from devstack.broker import EmbeddedBroker, free_port
from services.common import kafka
from services.common.schemas import RawBatch
from services.common.settings import Settings, get_settings
from services.common.topics import TICKS_CLEAN, TICKS_RAW
from services.validator.core import Rules, Source, judge

ROWS = 200_000


def real_batches(n_rows: int) -> list[RawBatch]:
    """RawBatches of 1,000 real candles."""
    path = get_settings().shared_data_dir / "btcusdt_1m_2023-2024.parquet"
    parts = pq.ParquetFile(path).iter_batches(batch_size=1000)
    return [
        RawBatch(
            batch_id=RawBatch.make_id("BTC", rows),
            symbol="BTC",
            source="replay",
            fetched_at=time.time(),
            candles=rows,
        )
        for rows in (p.to_pylist() for p in itertools.islice(parts, n_rows // 1000))
    ]


def core_rate(payloads: list[bytes]) -> tuple[float, float]:
    """Rows per wall second and per CPU second through :func:`judge`."""
    wall, cpu, mark = time.perf_counter(), time.process_time(), None
    for p in payloads:
        mark = judge(p, Source(TICKS_RAW, 0, 0), mark, Rules(), time.time()).mark
    rows = 1000 * len(payloads)
    return rows / (time.perf_counter() - wall), rows / (time.process_time() - cpu)


async def stage_rate(settings: Settings, payloads: list[bytes]) -> dict[str, float]:
    """Run ``python -m services.validator`` over the payloads; time the candles' arrival."""
    await kafka.ensure_topics(settings)
    producer = kafka.make_producer(settings)
    await producer.start()
    for i in range(0, len(payloads), 50):
        await kafka.send_batch(producer, TICKS_RAW, [(b"BTC", p) for p in payloads[i : i + 50]])
    await producer.stop()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "VALIDATOR_METRICS_PORT": "0",
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.validator"],
        env=env,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        marks = await arrivals(settings, 1000 * len(payloads))
        cpu = cpu_seconds(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    total = 1000 * len(payloads)
    return {
        "cpu": total / cpu,
        "first": marks[0] - started,
        "steady": 0.8 * total / (marks[2] - marks[1]),
        "overall": total / (marks[3] - started),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux ``/proc``): load-independent cost."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def arrivals(settings: Settings, total: int) -> list[float]:
    """When the first, 10%, 90% and last candle arrived on ticks.clean."""
    consumer = kafka.make_consumer(TICKS_CLEAN, group_id=None, settings=settings)
    await consumer.start()
    seen, marks = 0, []
    goals = [1, total // 10, total * 9 // 10, total]
    try:
        async with asyncio.timeout(600):
            while goals:
                got = await consumer.getmany(timeout_ms=100, max_records=20_000)
                seen += sum(len(v) for v in got.values())
                while goals and seen >= goals[0]:
                    marks.append(time.perf_counter())
                    goals.pop(0)
    finally:
        await consumer.stop()
    return marks


def main() -> dict[str, Any]:
    batches = real_batches(ROWS)
    payloads = [b.to_bytes() for b in batches]
    wall, cpu = core_rate(payloads)
    figures = [
        figure("validator core, rows/s (wall)", wall, "rows/s", target=">= 5,000"),
        figure("validator core, rows per CPU-second", cpu, "rows/s"),
    ]
    broker = EmbeddedBroker(port=free_port()).start()
    try:
        settings = Settings(kafka_bootstrap_servers=broker.bootstrap)
        rates = asyncio.run(stage_rate(settings, payloads))
    finally:
        broker.stop()
    figures += [
        figure("validator stage, first candle after start", rates["first"], "s"),
        figure("validator stage, steady candles/s", rates["steady"], "candles/s", ">= 5,000"),
        figure("validator stage, overall candles/s", rates["overall"], "candles/s"),
        figure("validator stage, candles per CPU-second", rates["cpu"], "candles/s"),
    ]
    save("validator", figures, rows=ROWS, load_avg=os.getloadavg()[0])
    return {"figures": figures}


if __name__ == "__main__":
    main()
