"""The Kafka request census of the latency benchmark, on a real embedded broker: requests are
counted per process and API (in a child started with the census environment, as the
benchmark's services are), and record batches per partition are counted from the log."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from bench import census
from services.common import kafka
from services.common.settings import Settings

CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from services.common import kafka
    from services.common.settings import Settings

    async def main():
        settings = Settings(kafka_bootstrap_servers=sys.argv[1], topic_partitions=1)
        producer = kafka.make_producer(settings)
        await producer.start()
        for i in range(7):
            await producer.send_and_wait("census", b"x", key=b"k")
        await producer.stop()
        consumer = kafka.make_consumer("census", group_id=None, settings=settings)
        await consumer.start()
        got = 0
        while got < 7:
            got += sum(map(len, (await consumer.getmany(timeout_ms=200)).values()))
        await consumer.stop()
        import gc
        gc.collect()  # a full collection, timed
        time.sleep(0.6)  # a snapshot after the last request

    asyncio.run(main())
    """
)


def test_a_child_process_counts_its_requests_by_api(settings: Settings, tmp_path: Path) -> None:
    asyncio.run(kafka.ensure_topics(settings, specs=[], extra=[("census", 1)]))
    env = {**os.environ, **census.child_env(tmp_path)}
    t0 = time.time()
    subprocess.run(
        [sys.executable, "-c", CHILD, settings.bootstrap_servers], env=env, check=True, timeout=60
    )
    t1 = time.time()
    (rates,) = census.window(tmp_path, t0, t1).values()
    counts = {api: round(rate * (t1 - t0)) for api, rate in rates.items()}
    assert counts["Produce"] == 7  # one request per awaited send
    fetched = [api for api in counts if api.startswith("Fetch(wait=5) [census]")]
    assert "Fetch(wait=5) [census] records" in fetched
    assert counts["gc2 collections"] >= 1 and counts["gc2 pause us"] > 0
    assert census.window(tmp_path, t1 + 1, t1 + 2) == {}  # nothing after the child ended


def test_record_batches_per_partition(settings: Settings) -> None:
    async def write() -> dict[int, int]:
        await kafka.ensure_topics(settings, specs=[], extra=[("batches", 2)])
        producer = kafka.make_producer(settings)
        await producer.start()
        try:
            for _ in range(30):  # one batch each: every send is acked before the next
                await producer.send_and_wait("batches", b"x", partition=0)
            await kafka.send_batch_packed(producer, "batches", [(b"k", b"y")] * 1000, partition=1)
        finally:
            await producer.stop()
        return await census.log_batches(settings, "batches")

    assert asyncio.run(write()) == {0: 30, 1: 1}
