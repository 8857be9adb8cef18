"""The archiver's I/O: consume ``ticks.clean`` and write the Parquet lake.

A small consumer-group service beside the Faust featurizer (group ``ARCHIVER_GROUP_ID``):
it accumulates candles for up to ``ARCHIVER_FLUSH_S`` seconds or ``ARCHIVER_BATCH_SIZE``
candles, merges them into their day files (:mod:`services.common.lake`, idempotent), and
commits its offsets only after the files are replaced. A crash replays at most one flush, which
the merge absorbs.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer

from services.archiver import metrics
from services.archiver.settings import ArchiverSettings
from services.common import kafka
from services.common.errors import SchemaError
from services.common.lake import write_candles
from services.common.logging import configure_logging
from services.common.metrics import serve_metrics
from services.common.schemas import Candle
from services.common.settings import Settings, get_settings
from services.common.topics import TICKS_CLEAN

log = logging.getLogger(__name__)


async def archive(settings: Settings, fs: ArchiverSettings, stop: asyncio.Event) -> None:
    """Consume, write the lake in batches, commit; returns once ``stop`` is set."""
    await kafka.ensure_topics(settings)
    consumer = kafka.make_consumer(TICKS_CLEAN, group_id=fs.group_id, settings=settings)
    await consumer.start()
    try:
        while not stop.is_set():
            candles = await _gather(consumer, fs, stop)
            if candles:
                await _flush(settings, candles)
                await consumer.commit()
    finally:
        await consumer.stop()


async def _gather(
    consumer: AIOKafkaConsumer, fs: ArchiverSettings, stop: asyncio.Event
) -> list[Candle]:
    """Candles fetched until the batch is full, the flush interval passed, or stop."""
    out: list[Candle] = []
    deadline = time.monotonic() + fs.flush_s
    while len(out) < fs.batch_size and time.monotonic() < deadline and not stop.is_set():
        batch = await consumer.getmany(timeout_ms=100, max_records=fs.batch_size)
        for tp, records in batch.items():
            for r in records:
                try:
                    out.append(Candle.from_bytes(r.value or b""))
                except SchemaError as exc:  # the featurizer dead-letters it; the lake skips it
                    log.warning(
                        "unreadable candle not archived",
                        extra={
                            "topic": tp.topic,
                            "partition": tp.partition,
                            "offset": r.offset,
                            "error": str(exc),
                        },
                    )
    return out


async def _flush(settings: Settings, candles: list[Candle]) -> None:
    t0 = time.perf_counter()
    added = await asyncio.to_thread(write_candles, settings.data_dir, candles)
    for c in candles:
        metrics.ARCHIVED_CANDLES.labels(c.symbol).inc()
    log.info(
        "lake flushed",
        extra={
            "candles": len(candles),
            "new_rows": added,
            "candle_time": candles[-1].time,
            "seconds": round(time.perf_counter() - t0, 3),
        },
    )


def main() -> None:
    settings, fs = get_settings(), ArchiverSettings()
    configure_logging(settings.log_level, service="archiver")
    serve_metrics(fs.metrics_port)
    asyncio.run(kafka.run_until_stopped(lambda stop: archive(settings, fs, stop)))


if __name__ == "__main__":
    main()
