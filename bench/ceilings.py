"""Ceilings measured in the same run, on the same broker, as the figures they bound.

- :func:`raw_rates`: raw aiokafka produce and consume rates of 195-byte values;
- :func:`chain_latency`: three aiokafka passthrough stages over four topics (consume with
  ``getmany`` and ``fetch_max_wait_ms=5``, produce each micro-batch with gathered futures), fed
  at a steady rate; the publish → last-topic latency is what any 4-hop pipeline on this broker
  and this client pays before doing any work.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import numpy as np
import orjson

from bench.harness import read_topic
from services.common import kafka
from services.common.settings import Settings

VALUE_BYTES = 195  # a candle, as in shared/MEASURED.md
PAD = "x" * (VALUE_BYTES - 42)  # a probe record {"t": ..., "i": ..., "pad": PAD} is ~195 bytes


async def raw_rates(settings: Settings, topic: str, n: int = 100_000) -> tuple[float, float]:
    """Raw produce and consume rates (msg/s) of 195-byte values on ``topic`` (created by the
    caller with the pipeline's partition count)."""
    value = b"x" * VALUE_BYTES
    producer = kafka.make_producer(settings)
    await producer.start()
    t0 = time.perf_counter()
    for i in range(0, n, 5000):
        batch = [(b"k%d" % (j % 3), value) for j in range(i, min(n, i + 5000))]
        await kafka.send_batch(producer, topic, batch)
    produce = n / (time.perf_counter() - t0)
    await producer.stop()
    t0 = time.perf_counter()
    got = len(await read_topic(settings, topic, idle_s=0.5))
    consume = got / (time.perf_counter() - t0 - 0.5)
    return produce, consume


def chain_topics(prefix: str = "bench.chain", hops: int = 4) -> list[str]:
    """The topics of the chain: the publisher writes the first, the probe reads the last."""
    return [f"{prefix}.{i}" for i in range(hops)]


async def _passthrough(settings: Settings, src: str, dst: str, stop: asyncio.Event) -> None:
    consumer = kafka.make_consumer(src, group_id=None, settings=settings, fetch_max_wait_ms=5)
    producer = kafka.make_producer(settings)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            records = [(r.key, r.value) for rs in batch.values() for r in rs]
            if records:
                await kafka.send_batch(producer, dst, records)
    finally:
        await producer.stop()
        await consumer.stop()


async def _probe(
    settings: Settings,
    topic: str,
    count: int,
    timeout_s: float,
    arrivals: dict[int, float] | None = None,
) -> list[float]:
    """Publish → arrival latencies (ms) of the first ``count`` records on ``topic``;
    ``arrivals`` (when given) gets each record's arrival time (time.time()) by its index."""
    consumer = kafka.make_consumer(topic, group_id=None, settings=settings, fetch_max_wait_ms=5)
    await consumer.start()
    out: list[float] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.time()
            docs = [orjson.loads(r.value) for rs in batch.values() for r in rs]
            out += [(now - doc["t"]) * 1000 for doc in docs]
            if arrivals is not None:
                arrivals.update((doc["i"], now) for doc in docs)
    finally:
        await consumer.stop()
    return out


async def chain_latency(
    settings: Settings,
    topics: list[str],
    rate: float = 100,
    seconds: float = 15,
    in_process: bool = True,
    arrivals: dict[int, float] | None = None,
) -> np.ndarray:
    """Latencies (ms) publish → last topic through ``len(topics) - 1`` passthrough stages at
    ``rate`` msg/s for ``seconds``; the first second is warm-up and left out. The topics must
    exist (created by the caller with the pipeline's partition count). ``in_process=False``:
    the stages run elsewhere (their own processes, started by the caller); only the publisher
    and the probe run here. ``arrivals`` (when given) gets each probe record's arrival time by
    its index ``i`` (for a breakdown per hop)."""
    stop = asyncio.Event()
    pairs = itertools.pairwise(topics) if in_process else ()
    stages = [asyncio.create_task(_passthrough(settings, src, dst, stop)) for src, dst in pairs]
    n = int(rate * seconds)
    probe = asyncio.create_task(_probe(settings, topics[-1], n, seconds + 30, arrivals))
    await asyncio.sleep(1.0)  # consumers connected and positioned before the clock starts
    producer = kafka.make_producer(settings)
    await producer.start()
    try:
        t0 = time.monotonic()
        for i in range(n):
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            value = orjson.dumps({"t": time.time(), "i": i, "pad": PAD})
            await producer.send(topics[0], value=value, key=b"k%d" % (i % 3))
        await producer.flush()
        latencies = await probe
    finally:
        await producer.stop()
        stop.set()
        await asyncio.gather(*stages)
    return np.array(latencies[int(rate) :])
