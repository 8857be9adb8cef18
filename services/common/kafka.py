"""Thin aiokafka plumbing with defaults that work on Tansu and on Redpanda/Kafka alike.

- consumers: small session timeouts (Tansu joins take half of it), ``fetch_max_wait_ms`` of a few
  ms (the default adds ~0.1 s a hop), manual commits after outputs are acknowledged;
- producers: ``acks=all``, no linger and large batches; never await sends one by one, gather
  their futures per micro-batch (:func:`send_batch`). A micro-batch's records are all queued
  before the sender task runs, so they batch without a linger, and a linger would add its whole
  length to every hop's latency (record batches built with ``create_batch`` linger too);
- topics: created up front, idempotently, with explicit partition counts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from services.common.settings import Settings, get_settings
from services.common.topics import TOPICS, TopicSpec

log = logging.getLogger(__name__)

#: Consumer defaults proven on the embedded broker (see shared/MEASURED.md).
CONSUMER_DEFAULTS: dict[str, Any] = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "fetch_max_wait_ms": 5,
    "max_poll_records": 5000,
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "max_poll_interval_ms": 300_000,
}

PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "linger_ms": 0,  # no linger: see the module docstring
    "max_batch_size": 262_144,
    "max_request_size": 8_388_608,
    "enable_idempotence": False,  # not supported by Tansu; outputs are deduplicated by key
}


def make_producer(settings: Settings | None = None, **overrides: Any) -> AIOKafkaProducer:
    """An (unstarted) producer on the configured broker."""
    settings = settings or get_settings()
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, **{**PRODUCER_DEFAULTS, **overrides}
    )


def make_consumer(
    *topics: str, group_id: str | None, settings: Settings | None = None, **overrides: Any
) -> AIOKafkaConsumer:
    """An (unstarted) consumer in ``group_id`` (None: no group, no commits)."""
    settings = settings or get_settings()
    opts = {**CONSUMER_DEFAULTS, **overrides}
    if group_id is None:
        opts.pop("session_timeout_ms"), opts.pop("heartbeat_interval_ms")
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=settings.bootstrap_servers, group_id=group_id, **opts
    )


async def send_batch(
    producer: AIOKafkaProducer, topic: str, records: Iterable[tuple[bytes | None, bytes]]
) -> int:
    """Send (key, value) records without awaiting each, then wait for every ack.

    Raises the first delivery error, so callers commit input offsets only after success.
    """
    futures = [await producer.send(topic, value=v, key=k) for k, v in records]
    if futures:
        await asyncio.gather(*futures)
    return len(futures)


async def ensure_topics(
    settings: Settings | None = None,
    specs: Iterable[TopicSpec] = TOPICS,
    extra: Iterable[tuple[str, int]] = (),
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created (idempotent)."""
    settings = settings or get_settings()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        rf = settings.topic_replication_factor
        wanted = [
            NewTopic(s.name, s.partitions or settings.topic_partitions, rf, topic_configs=s.configs)
            for s in specs
        ] + [NewTopic(name, parts, rf) for name, parts in extra]
        missing = [t for t in wanted if t.name not in existing]
        created = []
        for topic in missing:
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        await admin.close()


async def describe_topics(settings: Settings | None = None) -> dict[str, int]:
    """Partition count of each topic on the broker."""
    settings = settings or get_settings()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await consumer.start()
    try:
        topics = await consumer.topics()
        return {t: len(consumer.partitions_for_topic(t) or ()) for t in sorted(topics)}
    finally:
        await consumer.stop()


def install_shutdown(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM/SIGINT, so loops finish in-flight work, commit and close."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def run_until_stopped(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` with signal handlers installed; ``main`` must return once stop is set."""
    stop = asyncio.Event()
    install_shutdown(stop)
    await main(stop)


async def queue_packed(
    producer: AIOKafkaProducer, topic: str, records: Iterable[tuple[bytes | None, bytes]]
) -> list[asyncio.Future[Any]]:
    """Queue records packed into aiokafka record batches (``create_batch``) without waiting;
    returns one future per batch, resolved by the broker's ack.

    ``producer.send`` costs a future and an accumulator lookup per record; packing costs ~8x less
    CPU per record. Keys land where the default murmur2 partitioner puts them, so per-key order
    and co-partitioning are as with :func:`send_batch`; keyless records go to one random
    partition. Stages that commit in the background (:mod:`services.common.committer`) hand the
    futures over; :func:`send_batch_packed` awaits them.
    """
    records = list(records)
    if not records:
        return []
    partitions = sorted(await producer.partitions_for(topic))
    keyless = random.choice(partitions)
    placed: dict[bytes | None, int] = {None: keyless}  # murmur2 in Python is slow: once a key
    by_partition: dict[int, list[tuple[bytes | None, bytes]]] = {}
    for key, value in records:
        p = placed.get(key)
        if p is None:
            p = placed[key] = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
        by_partition.setdefault(p, []).append((key, value))
    futures = []
    for p, items in by_partition.items():
        batch = producer.create_batch()
        for key, value in items:
            if batch.append(key=key, value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(batch, topic, partition=p))
                batch = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"{topic}: a record larger than a whole batch")
        futures.append(await producer.send_batch(batch, topic, partition=p))
    return futures


async def send_batch_packed(
    producer: AIOKafkaProducer, topic: str, records: Iterable[tuple[bytes | None, bytes]]
) -> int:
    """:func:`queue_packed`, then wait for every ack: :func:`send_batch` at ~8x less CPU per
    record. Raises the first delivery error, like :func:`send_batch`."""
    records = list(records)
    futures = await queue_packed(producer, topic, records)
    if futures:
        await asyncio.gather(*futures)
    return len(records)


async def publish(
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    settings: Settings | None = None,
) -> int:
    """One-shot: start a producer, :func:`send_batch_packed` ``records``, stop it.

    For tools and tests that publish once (a DLQ replay, a fixture); services keep a producer.
    """
    producer = make_producer(settings)
    await producer.start()
    try:
        return await send_batch_packed(producer, topic, records)
    finally:
        await producer.stop()
