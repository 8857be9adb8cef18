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

from collections.abc import Mapping
from typing import Any

import aiokafka
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

SCHEME = "volstream"
DEFAULT_FETCH_MAX_WAIT_MS = 10


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


class Transport(faust_aiokafka.Transport):
    """The aiokafka transport with :class:`Consumer`."""

    Consumer = Consumer


def register() -> str:
    """Make ``volstream://`` URLs select :class:`Transport` (idempotent); returns the scheme."""
    TRANSPORTS.aliases.setdefault(SCHEME, f"{__name__}:Transport")
    return SCHEME
