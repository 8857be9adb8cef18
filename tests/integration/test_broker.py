"""The embedded broker and the Kafka plumbing, against a real Tansu process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from services.common import kafka
from services.common.schemas import Candle
from services.common.settings import Settings
from services.common.topics import TICKS_CLEAN, TOPICS

pytestmark = pytest.mark.integration


async def test_topic_creation_is_idempotent(settings: Settings) -> None:
    created = await kafka.ensure_topics(settings)
    assert sorted(created) == sorted(t.name for t in TOPICS)
    assert await kafka.ensure_topics(settings) == []
    parts = await kafka.describe_topics(settings)
    for spec in TOPICS:
        assert parts[spec.name] == (spec.partitions or settings.topic_partitions)
    assert parts["model.events"] == 1


async def test_produce_consume_round_trip(settings: Settings) -> None:
    await kafka.ensure_topics(settings)
    candles = [
        Candle(symbol=s, time=60 * i, open=1, high=2, low=0.5, close=1.5, volumefrom=1, volumeto=1)
        for i in range(50)
        for s in ("BTC", "ETH")
    ]
    producer = kafka.make_producer(settings)
    await producer.start()
    try:
        sent = await kafka.send_batch(
            producer, TICKS_CLEAN, [(c.symbol.encode(), c.to_bytes()) for c in candles]
        )
    finally:
        await producer.stop()
    assert sent == 100
    consumer = kafka.make_consumer(TICKS_CLEAN, group_id="roundtrip", settings=settings)
    await consumer.start()
    got: list[Candle] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < 100:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got += [Candle.from_bytes(r.value) for r in records]
    finally:
        await consumer.stop()
    assert sorted(got, key=lambda c: (c.symbol, c.time)) == sorted(
        candles, key=lambda c: (c.symbol, c.time)
    )
    # per key, order is preserved (one key -> one partition)
    btc = [c.time for c in got if c.symbol == "BTC"]
    assert btc == sorted(btc)


CONSUMER_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from services.common import kafka
    from services.common.settings import Settings

    async def main(stop):
        s = Settings(kafka_bootstrap_servers=sys.argv[1])
        c = kafka.make_consumer("ticks.clean", group_id="sigterm", settings=s)
        await c.start()
        seen = 0
        try:
            while not stop.is_set():
                batch = await c.getmany(timeout_ms=100)
                seen += sum(len(v) for v in batch.values())
                if seen:
                    print("seen", seen, flush=True)
        finally:
            await c.commit()
            await c.stop()
            print("committed", flush=True)

    asyncio.run(kafka.run_until_stopped(main))
""")


async def test_sigterm_commits_and_exits_zero(settings: Settings) -> None:
    await kafka.ensure_topics(settings)
    producer = kafka.make_producer(settings)
    await producer.start()
    await kafka.send_batch(producer, TICKS_CLEAN, [(b"BTC", b"{}")] * 10)
    await producer.stop()
    proc = subprocess.Popen(
        [sys.executable, "-c", CONSUMER_SCRIPT, settings.bootstrap_servers],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    assert proc.stdout is not None
    line = await asyncio.to_thread(proc.stdout.readline)
    assert line.startswith("seen 10")
    proc.send_signal(signal.SIGTERM)
    rc = await asyncio.to_thread(proc.wait, 15)
    assert rc == 0
    assert "committed" in proc.stdout.read()
    # the group's committed offsets now cover all 10 records
    from aiokafka.structs import TopicPartition

    c = kafka.make_consumer(group_id="sigterm", settings=settings)
    await c.start()
    try:
        tps = [TopicPartition(TICKS_CLEAN, p) for p in range(settings.topic_partitions)]
        committed = [await c.committed(tp) or 0 for tp in tps]
    finally:
        await c.stop()
    assert sum(committed) == 10


def test_volstream_tail_prints_produced(settings: Settings, service_env: dict[str, str]) -> None:
    async def produce() -> None:
        await kafka.ensure_topics(settings)
        p = kafka.make_producer(settings)
        await p.start()
        c = Candle(
            symbol="BTC", time=60, open=1, high=2, low=0.5, close=1.5, volumefrom=1, volumeto=1
        )
        await kafka.send_batch(p, TICKS_CLEAN, [(b"BTC", c.to_bytes())] * 3)
        await p.stop()

    asyncio.run(produce())
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack.cli",
            "tail",
            TICKS_CLEAN,
            "--from-beginning",
            "-n",
            "3",
        ],
        env=service_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3
    import orjson

    first = orjson.loads(lines[0])
    assert first["key"] == "BTC" and first["value"]["close"] == 1.5
