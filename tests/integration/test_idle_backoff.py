"""An idle consumer's fetch wait backs off (fewer empty fetches on the broker) and snaps back
with the first record (services.common.kafka.IdleBackoff), on the embedded Tansu broker."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiokafka.protocol.fetch import FetchRequest

from services.common import kafka
from services.common.settings import Settings

pytestmark = pytest.mark.integration

TOPIC = "idle"


async def fetches_during(consumer: Any, seconds: float) -> int:
    """Fetch requests the consumer sends while its getmany finds nothing for ``seconds``."""
    client = consumer._client
    sent = 0
    real_send = client.send

    async def counting(node_id: int, request: Any, *args: Any, **kw: Any) -> Any:
        nonlocal sent
        sent += isinstance(request, FetchRequest)
        return await real_send(node_id, request, *args, **kw)

    client.send = counting
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert not await consumer.getmany(timeout_ms=200)
    finally:
        client.send = real_send
    return sent


async def test_an_idle_consumer_backs_off_and_snaps_back_with_the_first_record(
    settings: Settings,
) -> None:
    await kafka.ensure_topics(settings, specs=(), extra=[(TOPIC, 1)])
    consumer = kafka.make_consumer(TOPIC, group_id=None, settings=settings)
    await consumer.start()
    try:
        backoff = kafka.IdleBackoff(consumer, min_ms=5, max_ms=200)
        busy = await fetches_during(consumer, 1.0)  # at 5 ms: well over 50 fetches a second
        backoff.update(False)
        assert backoff.idle and backoff.wait_ms == 200
        idle = await fetches_during(consumer, 1.0)
        assert idle * 5 < busy, (idle, busy)

        await kafka.publish(TOPIC, [(b"k", b"v")], settings)
        got: dict[Any, Any] = {}
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            got = await consumer.getmany(timeout_ms=200)
        assert got, "the record arrives at the backed-off wait"
        backoff.update(bool(got))
        assert not backoff.idle and backoff.wait_ms == 5
    finally:
        await consumer.stop()


async def test_max_at_or_below_min_leaves_the_wait_alone(settings: Settings) -> None:
    await kafka.ensure_topics(settings, specs=(), extra=[(TOPIC, 1)])
    consumer = kafka.make_consumer(TOPIC, group_id=None, settings=settings)
    await consumer.start()
    try:
        backoff = kafka.IdleBackoff(consumer, min_ms=5, max_ms=0)
        backoff.update(False)
        assert backoff.wait_ms == 5
    finally:
        await consumer.stop()
