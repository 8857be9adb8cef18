"""Durable embedded mode: a broker restart on s3:// storage loses no record and no commit."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.structs import TopicPartition

from devstack.broker import EmbeddedBroker, free_port
from devstack.durable import STORAGE_URL, S3Emulator, broker_env
from services.common import kafka
from services.common.settings import Settings
from services.common.topics import TICKS_CLEAN
from tests.tools import require_tool


@pytest.fixture(scope="module", autouse=True)
def _node() -> None:
    """s3rver runs on Node.js (a failure when ``CI`` is set)."""
    require_tool("node")


pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def _consume_all(settings: Settings, expected: int) -> list[bytes]:
    consumer = kafka.make_consumer(TICKS_CLEAN, group_id=None, settings=settings)
    await consumer.start()
    values: list[bytes] = []
    try:
        for _ in range(60):
            batch = await consumer.getmany(timeout_ms=250)
            values += [r.value for rs in batch.values() for r in rs]
            if len(values) >= expected and not batch:
                break
    finally:
        await consumer.stop()
    return values


async def test_broker_restart_loses_nothing(tmp_path: Path) -> None:
    s3 = S3Emulator(tmp_path / "s3", free_port()).start()
    port = free_port()
    settings = Settings(broker_port=port, kafka_bootstrap_servers=f"127.0.0.1:{port}")

    def new_broker() -> EmbeddedBroker:
        return EmbeddedBroker(
            port=port,
            storage=STORAGE_URL,
            env=broker_env(s3.port),
            log_path=tmp_path / "broker.log",
        )

    broker = new_broker().start()
    try:
        await kafka.ensure_topics(settings)
        producer = kafka.make_producer(settings)
        await producer.start()
        sent = [b"candle-%d" % i for i in range(600)]
        await kafka.send_batch(
            producer, TICKS_CLEAN, [(b"BTC" if i % 2 else b"ETH", v) for i, v in enumerate(sent)]
        )
        await producer.stop()
        group = kafka.make_consumer(TICKS_CLEAN, group_id="durable", settings=settings)
        await group.start()
        await group.getmany(timeout_ms=2000)
        await group.seek_to_end()
        tps = [TopicPartition(TICKS_CLEAN, p) for p in range(settings.topic_partitions)]
        ends = {tp: await group.position(tp) for tp in tps}
        await group.commit(ends)
        await group.stop()

        broker.stop()
        broker = new_broker().start()

        assert sorted(await _consume_all(settings, len(sent))) == sorted(sent)
        check = kafka.make_consumer(group_id="durable", settings=settings)
        await check.start()
        try:
            assert {tp: await check.committed(tp) for tp in tps} == ends
        finally:
            await check.stop()
    finally:
        broker.stop()
        s3.stop()
