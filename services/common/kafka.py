"""Thin aiokafka plumbing with defaults that work on Tansu and on Redpanda/Kafka alike.

- consumers: small session timeouts (Tansu joins take half of it), ``fetch_max_wait_ms`` of a few
  ms (the default adds ~0.1 s a hop), manual commits after outputs are acknowledged;
- producers: ``acks=all``, no linger and large batches; never await sends one by one, gather
  their futures per micro-batch (:func:`send_batch`). A micro-batch's records are all queued
  before the sender task runs, so they batch without a linger, and a linger would add its whole
  length to every hop's latency (record batches built with ``create_batch`` linger too).
  Batches of up to ~1 MB (just under Kafka's default ``message.max.bytes``): aiokafka keeps one
  produce request in flight per broker with at most one batch per partition, so a replay's
  2.2 KB feature vectors, all on one symbol's partition, cross in one round trip per ~450
  instead of per ~110 (256 KB), and the log holds 4x fewer batches; stages hand batches over
  without waiting (:func:`queue_packed`);
- topics: created up front, idempotently, with explicit partition counts;
- reading a log back (a rebuild, a tail, a dead-letter scan): one reader, :func:`read_log`, with
  the stopping rules of :class:`Until`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord, TopicPartition

from services.common.errors import BrokerError
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
    "max_batch_size": 1_000_000,  # see the module docstring
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


class IdleBackoff:
    """A started consumer's fetch wait that backs off while nothing arrives, and snaps back to
    ``min_ms`` with the first record.

    Tansu answers a fetch that finds nothing only after sleeping the whole fetch wait, and each
    such fetch costs it ~0.3-0.45 ms of CPU (plus ~0.3 ms in the client): a consumer with
    nothing to read at ``fetch_max_wait_ms=5`` keeps ~7 % of a broker core and ~7 % of its own
    busy, whatever the rate; a replay's validator idles so for most of the run, on the cores
    the featurizer and predictor need. After a poll that brought nothing (``getmany`` timed
    out, so at least its timeout of silence), the next fetches wait ``max_ms``. The price: the
    first record after such a silence waits up to ``max_ms`` longer; a stream that keeps
    arriving (the 100/s latency feed, a replay) never backs off. ``max_ms <= min_ms`` turns it
    off.

    Call :meth:`update` after every ``getmany`` with whether it brought records.
    """

    def __init__(self, consumer: AIOKafkaConsumer, min_ms: int, max_ms: int) -> None:
        self.min_ms, self.max_ms = min_ms, max(min_ms, max_ms)
        self._consumer = consumer
        self.idle = False

    def update(self, got_records: bool) -> None:
        """Back off after an empty poll, snap back after one with records."""
        idle = not got_records
        if idle == self.idle or self.max_ms == self.min_ms:
            return
        self.idle = idle
        fetcher = getattr(self._consumer, "_fetcher", None)  # aiokafka: made by start()
        if fetcher is None or not hasattr(fetcher, "_fetch_max_wait_ms"):
            raise RuntimeError("aiokafka changed: cannot set the fetch wait of a started consumer")
        fetcher._fetch_max_wait_ms = self.max_ms if self.idle else self.min_ms

    @property
    def wait_ms(self) -> int:
        """The fetch wait the consumer's next fetch request asks for."""
        return int(self._consumer._fetcher._fetch_max_wait_ms)


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
    producer: AIOKafkaProducer,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    partition: int | None = None,
) -> list[asyncio.Future[Any]]:
    """Queue records packed into aiokafka record batches (``create_batch``) without waiting;
    returns one future per partition, resolved once the broker acked all its batches.

    ``producer.send`` costs a future and an accumulator lookup per record; packing costs ~8x less
    CPU per record. Keys land where the default murmur2 partitioner puts them, so per-key order
    and co-partitioning are as with :func:`send_batch`; keyless records go to one random
    partition. Stages that commit in the background (:mod:`services.common.committer`) hand the
    futures over; :func:`send_batch_packed` awaits them. ``partition`` sends every record there
    instead (benchmarks and tests that lay out one partition).

    Returns at once: the batches are handed to the producer by a task per partition (a *lane*,
    see :func:`_enqueue`), so the caller computes its next micro-batch while the producer
    drains this one. aiokafka takes a partition's next batch only once the previous one left
    in a request, and keeps one produce request in flight per broker, so handing over a
    micro-batch of several batches on one partition used to block its stage for as many round
    trips (a 2,000-vector batch of the featurizer: ~18 of them, longer than computing it).
    Per partition, batches reach the producer in call order.
    """
    records = list(records)
    if not records:
        return []
    if partition is not None:
        return _queue_batches(producer, topic, {partition: records})
    partitions = sorted(await producer.partitions_for(topic))
    keyless = random.choice(partitions)
    placed: dict[bytes | None, int] = {None: keyless}  # murmur2 in Python is slow: once a key
    by_partition: dict[int, list[tuple[bytes | None, bytes]]] = {}
    for key, value in records:
        p = placed.get(key)
        if p is None:
            p = placed[key] = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
        by_partition.setdefault(p, []).append((key, value))
    return _queue_batches(producer, topic, by_partition)


#: Per producer and (topic, partition): a future that is done once the latest call's batches
#: are all in the producer's accumulator (True) or could not be (False); the next call's lane
#: waits for it, so batches of one partition keep their call order.
_LANES: weakref.WeakKeyDictionary[AIOKafkaProducer, dict[tuple[str, int], asyncio.Future[bool]]]
_LANES = weakref.WeakKeyDictionary()


def _queue_batches(
    producer: AIOKafkaProducer,
    topic: str,
    by_partition: Mapping[int, list[tuple[bytes | None, bytes]]],
) -> list[asyncio.Future[Any]]:
    lanes = _LANES.setdefault(producer, {})
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Any]] = []
    for p, items in by_partition.items():
        batches = [producer.create_batch()]
        for key, value in items:
            if batches[-1].append(key=key, value=value, timestamp=None) is None:
                batches.append(producer.create_batch())
                if batches[-1].append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"{topic}: a record larger than a whole batch")
        queued: asyncio.Future[bool] = loop.create_future()
        after = lanes.get((topic, p))
        lanes[(topic, p)] = queued
        futures.append(asyncio.ensure_future(_enqueue(producer, topic, p, batches, after, queued)))
    return futures


async def _enqueue(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    batches: list[Any],
    after: asyncio.Future[bool] | None,
    queued: asyncio.Future[bool],
) -> None:
    """One call's lane on one partition: once the previous call's batches are in the producer,
    hand over these one by one (each waits until the one before left in a request), then wait
    for their acks. Raises the first delivery error."""
    acks = []
    try:
        if after is not None and not await after:
            raise BrokerError(f"{topic}[{partition}]: an earlier batch was not queued")
        for batch in batches:
            acks.append(await producer.send_batch(batch, topic, partition=partition))
    finally:
        queued.set_result(len(acks) == len(batches))
    await asyncio.gather(*acks)


async def send_batch_packed(
    producer: AIOKafkaProducer,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    partition: int | None = None,
) -> int:
    """:func:`queue_packed`, then wait for every ack: :func:`send_batch` at ~8x less CPU per
    record. Raises the first delivery error, like :func:`send_batch`."""
    records = list(records)
    futures = await queue_packed(producer, topic, records, partition)
    if futures:
        await asyncio.gather(*futures)
    return len(records)


async def publish(
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    settings: Settings | None = None,
    partition: int | None = None,
) -> int:
    """One-shot: start a producer, :func:`send_batch_packed` ``records``, stop it.

    For tools and tests that publish once (a DLQ replay, a fixture); services keep a producer.
    """
    producer = make_producer(settings)
    await producer.start()
    try:
        return await send_batch_packed(producer, topic, records, partition)
    finally:
        await producer.stop()


@dataclass(frozen=True)
class Until:
    """When :func:`read_log` stops; build it with :meth:`end`, :meth:`at`, :meth:`idle` or
    :meth:`follow`.

    >>> Until.at({TopicPartition("t", 0): 10}).kind, Until.idle(500).idle_ms
    ('at', 500)
    """

    kind: Literal["end", "at", "idle", "follow"]
    offsets: Mapping[TopicPartition, int] = field(default_factory=dict)
    idle_ms: int = 0

    @classmethod
    def end(cls) -> Until:
        """Every partition read to its end as of the start of the read (see :func:`read_log`)."""
        return cls("end")

    @classmethod
    def at(cls, offsets: Mapping[TopicPartition, int]) -> Until:
        """Each partition read up to (not including) its given offset."""
        return cls("at", offsets=dict(offsets))

    @classmethod
    def idle(cls, ms: int) -> Until:
        """Stop once no partition has brought anything new for ``ms`` milliseconds."""
        return cls("idle", idle_ms=ms)

    @classmethod
    def follow(cls) -> Until:
        """Never stop: the caller breaks out (a ``tail``, a wait for a condition)."""
        return cls("follow")


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic``, from fresh metadata (empty when the topic does not exist)."""
    await consumer.topics()  # refreshes the metadata
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


async def read_log(
    consumer: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition] | Mapping[TopicPartition, int],
    until: Until,
    *,
    max_records: int = 20_000,
    poll_ms: int = 200,
    stall_s: float = 60.0,
) -> AsyncGenerator[list[ConsumerRecord[bytes, bytes]], None]:
    """Read ``partitions`` with a started consumer, yielding fetched records until ``until``.

    The one way to read a log back. ``partitions`` is assigned to ``consumer`` (replacing its
    assignment); a mapping also seeks each partition to its offset, otherwise positions come from
    the consumer's ``auto_offset_reset``. Records are yielded in offset order per partition, in
    fetch-sized lists; records at or past a partition's stopping offset are never yielded.

    Stopping rules (:class:`Until`):

    - ``at``: each partition up to its explicit offset (exclusive).
    - ``end``: each partition up to its end when the read starts. The end offsets the broker
      reports (ListOffsets) can undercount on the embedded Tansu broker: it answers the base offset
      of the last record batch plus one (1,501 for 1,537 records; shared/MEASURED.md). So they are
      only a floor: the end is ``max(reported end, high watermark)``, the watermark taken from the
      first fetch response after the assignment, which Tansu reports exactly and which on Kafka is
      the end itself. The assignment is renewed here, so no earlier response (with an older
      watermark) counts. No idle wait is needed to be sure; records appended after that first
      response are not read.
    - ``idle``: until no partition brings anything new for ``idle_ms`` (a topic still being fed).
    - ``follow``: never; the caller breaks out.

    With ``end`` and ``at``, a partition that stops bringing records before its offset for
    ``stall_s`` raises :class:`BrokerError` rather than returning short.
    """
    start = dict(partitions) if isinstance(partitions, Mapping) else None
    tps = list(start if start is not None else partitions)
    if until.kind == "at" and not set(tps) <= set(until.offsets):
        raise ValueError(f"Until.at names no offset for {sorted(set(tps) - set(until.offsets))}")
    consumer.assign(tps)
    for tp, offset in (start or {}).items():
        consumer.seek(tp, offset)
    floors = await consumer.end_offsets(tps) if until.kind == "end" else {}
    stops: dict[TopicPartition, int] = dict(until.offsets) if until.kind == "at" else {}
    pending = set(tps) if until.kind in ("end", "at") else set()
    last_news = time.monotonic()
    while True:
        if until.kind in ("end", "at"):
            for tp in list(pending):
                hw = consumer.highwater(tp)
                if tp not in stops and hw is not None:
                    stops[tp] = max(floors[tp], hw)
                    last_news = time.monotonic()
                if tp in stops and await consumer.position(tp) >= stops[tp]:
                    pending.discard(tp)
            if not pending:
                return
            if time.monotonic() - last_news > stall_s:
                tp = min(pending)
                raise BrokerError(
                    f"{tp.topic}[{tp.partition}]: read stalled at offset "
                    f"{await consumer.position(tp)} of {stops.get(tp, floors.get(tp))}"
                )
        wait = poll_ms
        if until.kind == "idle":
            wait = max(1, min(poll_ms, until.idle_ms - int(1000 * (time.monotonic() - last_news))))
        batch = await consumer.getmany(*pending, timeout_ms=wait, max_records=max_records)
        got = [
            r for tp, recs in batch.items() for r in recs if tp not in stops or r.offset < stops[tp]
        ]
        if batch:
            last_news = time.monotonic()
        if got:
            yield got
        elif until.kind == "idle" and time.monotonic() - last_news >= until.idle_ms / 1000:
            return
