"""A Faust transport for volstream: aiokafka with a configurable fetch wait and explicit commits.

Faust's aiokafka driver hard-codes ``fetch_max_wait_ms=1500`` for the worker's consumer, which
adds up to 1.5 s to every hop. Faust's documented extension point is the transport: a
``Transport`` subclass names its ``Consumer`` class, and brokers are chosen by URL scheme from
``faust.transport.drivers.TRANSPORTS``. :func:`register` adds the ``volstream://`` scheme, so
``broker="volstream://host:port"`` selects this transport; nothing of Faust is patched.

The consumer also exposes :meth:`Consumer.commit_offsets`: the featurizer commits its input
offsets itself, after the outputs of a batch are acknowledged by the broker (its source topic
has Faust's acks disabled, so Faust never commits ahead of it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import aiokafka
from aiokafka.structs import ConsumerRecord
from faust.sensors import Monitor
from faust.serializers import Schema
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT, EventT, Message
from faust.types.tuples import ConsumerMessage

SCHEME = "volstream"
DEFAULT_FETCH_MAX_WAIT_MS = 5
DEFAULT_HANDOVER_MAX_RECORDS = 2000
#: How long one fetch waits for records of the partitions being handed over (Faust: 1 s). A
#: partition that Faust paused because its agent's buffer was full is not in that wait, so it
#: resumes only when the wait ends: shorter, so a resumed partition is not held back ~1 s, at
#: four idle round trips to the consumer thread a second.
DRAIN_TIMEOUT_S = 0.25


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Builds Faust's worker consumer, then applies the app's ``fetch_max_wait_ms``."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = int(getattr(self.app, "fetch_max_wait_ms", DEFAULT_FETCH_MAX_WAIT_MS))
        # aiokafka keeps the constructor argument and hands it to its Fetcher at start().
        if not hasattr(consumer, "_fetch_max_wait_ms"):
            raise RuntimeError("aiokafka changed: cannot set fetch_max_wait_ms on the consumer")
        consumer._fetch_max_wait_ms = wait_ms
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with our thread and a public explicit commit."""

    _suspended: asyncio.Future[Any] | None = None  # waits for suspend_flow (see below)

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    @property
    def fetch_max_wait_ms(self) -> int:
        """The fetch wait the running consumer uses (for tests and logs)."""
        inner = self._thread._consumer
        return int(inner._fetch_max_wait_ms) if inner is not None else -1

    async def commit_offsets(self, offsets: Mapping[TP, int]) -> bool:
        """Commit ``{tp: next offset}`` for the assigned partitions; False if it was refused."""
        return bool(await self._commit(offsets))

    async def _drain_messages(self, fetcher: Any) -> None:
        """Faust's fetch-and-deliver loop, with fewer and bigger handovers.

        Faust turns every fetched record into a Message and races each one against
        ``suspend_flow`` (four tasks per message, a quarter of a passthrough worker's CPU), then
        the conductor, channel and stream handle it one by one. Here one task delivers a whole
        fetch, in order, with Faust's read-offset filter; a rebalance that suspends the flow
        cancels the rest of the fetch, which the post-rebalance seek fetches again. Records of
        the app's ``handover_topics`` are delivered as :class:`Chunk` messages (see there);
        other topics message by message, as Faust does.
        """
        should_stop = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (should_stop() or fetcher_stopped()):
                fetched = await self._fetch(timeout=DRAIN_TIMEOUT_S)
                await self.sleep(0)
                if fetched and not self.should_stop:
                    await self._deliver_unless_suspended(*fetched)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def _deliver_unless_suspended(self, messages: list[Message], generation: int) -> None:
        """:meth:`_deliver`, cancelled if the flow is suspended (a rebalance) meanwhile.

        Faust's ``wait_first`` starts four tasks per call and cancels three (the delivery, the
        suspension, the service's stopped and crashed events): live, that is per candle. Here
        the delivery is one task and the suspension one waiter kept from fetch to fetch (a stop
        cancels this coroutine, and with it the delivery)."""
        suspended = self._suspended
        if suspended is None or suspended.done():
            suspended = self._suspended = asyncio.ensure_future(self.suspend_flow.wait())
        delivery = asyncio.ensure_future(self._deliver(messages, generation))
        try:
            await asyncio.wait((delivery, suspended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not delivery.done():
                delivery.cancel()
        if delivery.done() and not delivery.cancelled():
            delivery.result()  # its error, if any

    async def on_stop(self) -> None:
        if self._suspended is not None:
            self._suspended.cancel()
        await super().on_stop()

    async def _fetch(self, timeout: float) -> tuple[list[Message], int] | None:
        """One fetch from the consumer thread as handovers (Faust's ``getmany`` checks, made
        once per partition instead of once per record); None when there is nothing to deliver."""
        records, active = await self._wait_next_records(timeout)
        if records is None or self.should_stop:
            return None
        if not self.flow_active:  # as Faust: the rebalance seeks back to the committed offsets
            try:
                await self.perform_seek()
            except Exception as exc:  # Faust logs it and goes on too
                self.log.warning(f"exception performing seek when flow not active {exc}")
            return None
        app = self.app
        chunked: frozenset[str] = getattr(app, "handover_topics", frozenset())
        size = max(1, int(getattr(app, "handover_max_records", DEFAULT_HANDOVER_MAX_RECORDS)))
        generation = app.consumer_generation_id
        out: list[Message] = []
        for tp, recs in records.items():
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            if tp.topic in chunked:
                if app.topics.acks_enabled_for(tp.topic):
                    raise RuntimeError(f"{tp.topic}: chunked handovers need acks=False")
                out += [
                    Chunk.of(tp, recs[i : i + size], generation) for i in range(0, len(recs), size)
                ]
            else:
                out += [self._to_message(tp, r) for r in recs]
        return out, generation

    async def _deliver(self, messages: list[Message], generation: int) -> None:
        callback, read_offset = self.callback, self._read_offset
        for n, message in enumerate(messages, 1):
            if not self.flow_active or self.app.consumer_generation_id != generation:
                return  # a rebalance started: the seek after it fetches the rest again
            tp = message.tp
            last = read_offset.get(tp)
            if isinstance(message, Chunk):
                if last is not None and message.first_offset < last:
                    rest = message.since(last)  # partly delivered already (Faust drops those)
                    if rest is None:
                        continue
                    message = rest
            elif last is not None and message.offset < last:
                continue  # already delivered (Faust drops these too)
            elif last and message.offset - last > 1 and self.app.topics.acks_enabled_for(tp.topic):
                await self._add_gap(tp, last + 1, message.offset)
            await callback(message)
            read_offset[tp] = message.offset
            if not n % 100:
                await asyncio.sleep(0)


class Chunk(ConsumerMessage):
    """One handover: consecutive records of one partition, fetched together.

    ``value`` is the tuple of the records (aiokafka ``ConsumerRecord``: ``partition``, ``offset``,
    ``key``, ``value`` bytes), in offset order; ``offset`` is the last record's, so Faust's read
    offsets advance past the whole chunk. ``key`` is None. Only for topics whose acks are
    disabled: acking a chunk could not say which of its records were processed.
    """

    first_offset: int

    @property
    def records(self) -> tuple[ConsumerRecord[bytes, bytes], ...]:
        """The records, in offset order (the same tuple as ``value``)."""
        return self.value  # type: ignore[return-value]

    @classmethod
    def of(
        cls, tp: TP, records: Sequence[ConsumerRecord[bytes, bytes]], generation_id: int
    ) -> Chunk:
        last = records[-1]
        stamp = last.timestamp / 1000.0 if last.timestamp is not None else None
        chunk = cls(
            tp.topic,
            tp.partition,
            last.offset,
            stamp,  # type: ignore[arg-type]
            last.timestamp_type,
            [],
            None,
            tuple(records),  # type: ignore[arg-type]
            None,
            0,
            sum(r.serialized_value_size for r in records),
            tp,
            generation_id=generation_id,
        )
        chunk.first_offset = records[0].offset
        return chunk

    def since(self, offset: int) -> Chunk | None:
        """The chunk's records at or after ``offset`` (None if none is left)."""
        rest = [r for r in self.records if r.offset >= offset]
        return Chunk.of(self.tp, rest, self.generation_id or 0) if rest else None


def chunk_weight(event: EventT) -> int:
    """How many records an event of a chunked topic carries (``take_until_idle``'s weight)."""
    return len(event.value)


def records_of(events: Iterable[EventT]) -> list[ConsumerRecord[bytes, bytes]]:
    """The records of a batch of chunk events, in order (one partition's stay in order)."""
    return [r for event in events for r in event.value]


class Transport(faust_aiokafka.Transport):
    """The aiokafka transport with :class:`Consumer`."""

    Consumer = Consumer


class RawSchema(Schema):
    """Keys and values as the raw bytes received, without Faust's codec machinery.

    Equivalent to ``key_type=bytes, value_type=bytes`` with the ``raw`` serializers, at a
    fraction of the cost: the generic decode looks up codecs and app settings for every message
    (10 % of the featurizer's CPU in a profiled replay). The featurizer reads ``event.message``
    anyway.
    """

    def __init__(self) -> None:
        super().__init__(key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw")  # fmt: skip

    def compile(self, app: AppT, **_: Any) -> Any:
        event_type: Any = app.conf.Event  # resolved once, not per message

        async def decode(message: Message, *, propagate: bool = False) -> EventT:
            return event_type(app, message.key, message.value, message.headers, message)

        return decode


class QuietMonitor(Monitor):
    """Faust's Monitor without its per-message and per-event bookkeeping (counters and timings
    for the web stats page, 2.5 % of the featurizer's CPU in a profiled replay). Commits,
    rebalances and sends are still monitored; the featurizer's own Prometheus metrics are
    unaffected."""

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        return None

    def on_stream_event_in(self, tp: TP, offset: int, stream: Any, event: EventT) -> None:
        return None

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: Any, event: EventT, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        return None


def register() -> str:
    """Make ``volstream://`` URLs select :class:`Transport` (idempotent); returns the scheme."""
    TRANSPORTS.aliases.setdefault(SCHEME, f"{__name__}:Transport")
    return SCHEME
