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
from collections.abc import Mapping
from typing import Any

import aiokafka
from faust.sensors import Monitor
from faust.serializers import Schema
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT, EventT, Message

SCHEME = "volstream"
DEFAULT_FETCH_MAX_WAIT_MS = 5


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
        """Faust's fetch-and-deliver loop, racing each fetched *batch* against a flow stop.

        Faust races every single message against ``suspend_flow`` with ``wait_first`` (four
        tasks per message, a quarter of a passthrough worker's CPU). Here one task delivers a
        whole fetch, in order, with Faust's read-offset filter; a rebalance that suspends the
        flow cancels the rest of the fetch, which the post-rebalance seek fetches again.
        """
        should_stop = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (should_stop() or fetcher_stopped()):
                fetched = [pair async for pair in self.getmany(timeout=1.0)]
                await self.sleep(0)
                if fetched and not self.should_stop:
                    await self.wait_first(self._deliver(fetched), self.suspend_flow.wait())
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def _deliver(self, fetched: list[tuple[TP, Any]]) -> None:
        callback, read_offset = self.callback, self._read_offset
        for n, (tp, message) in enumerate(fetched, 1):
            last = read_offset.get(tp)
            if last is not None and message.offset < last:
                continue  # already delivered (Faust drops these too)
            if last and message.offset - last > 1 and self.app.topics.acks_enabled_for(tp.topic):
                await self._add_gap(tp, last + 1, message.offset)
            await callback(message)
            read_offset[tp] = message.offset
            if not n % 100:
                await asyncio.sleep(0)


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
