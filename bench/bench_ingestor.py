"""Replay throughput of the ingestor: the 2-year BTCUSDT file into ``ticks.raw`` at ``--speed max``.

A fresh embedded broker; the same code path as ``volstream ingest replay`` (pyarrow slices, 500
candles per RawBatch, ``send_batch`` per 10,000 candles, checkpoint after each ack), timed in
process. The candles on the topic are then counted by consuming (end offsets can undercount), and
the read + encode cost alone (no broker) is timed for comparison.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import figure, save
from devstack.broker import EmbeddedBroker, free_port
from services.common.settings import Settings
from services.ingestor.app import run
from services.ingestor.core import encode_batches
from services.ingestor.replay import iter_slices
from services.ingestor.settings import IngestorSettings

EXPECTED = 1_052_560


def main() -> dict[str, Any]:
    path = Settings().shared_data_dir / "btcusdt_1m_2023-2024.parquet"
    t0 = time.perf_counter()
    encoded = sum(
        len(encode_batches("BTC", rows, "replay", 0.0, 500)) for rows in iter_slices(path, 10_000)
    )
    encode_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="bench_ingestor_") as tmp:
        broker = EmbeddedBroker(port=free_port(), log_path=Path(tmp) / "broker.log").start()
        try:
            settings = Settings(kafka_bootstrap_servers=broker.bootstrap, data_dir=Path(tmp))
            cfg = IngestorSettings(mode="replay", replay_file=path, metrics_port=0)
            t0 = time.perf_counter()
            sent = asyncio.run(run(settings, cfg, asyncio.Event()))
            replay_s = time.perf_counter() - t0
            on_topic = asyncio.run(_count(settings))
        finally:
            broker.stop()
    figures = [
        figure(
            "ingestor: replay 2-year file, --speed max",
            sent / replay_s,
            "candles/s",
            target=">= 20000",
        ),
        figure("ingestor: replay wall time", replay_s, "s"),
        figure("ingestor: read+encode only (no broker)", EXPECTED / encode_s, "candles/s"),
        figure(
            "ingestor: candles on ticks.raw (consumed)",
            on_topic,
            "candles",
            target=f"== {EXPECTED:,}",
        ),
    ]
    save("ingestor", figures, batches=encoded, sent=sent)
    return {"figures": figures}


async def _count(settings: Settings) -> int:
    """Candles on ticks.raw, counted by consuming until the topic is idle."""
    import orjson

    from services.common import kafka
    from services.common.topics import TICKS_RAW

    consumer = kafka.make_consumer(TICKS_RAW, group_id=None, settings=settings)
    await consumer.start()
    total, idle = 0, 0
    try:
        while idle < 6:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                total += sum(len(orjson.loads(r.value)["candles"]) for r in records)
    finally:
        await consumer.stop()
    return total


if __name__ == "__main__":
    main()
