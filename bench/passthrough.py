"""One stage of the end-to-end throughput ceiling: consume, JSON-decode, JSON-encode, produce.

``python -m bench.passthrough SRC DST [--explode]`` runs until SIGTERM. With ``--explode`` the
stage reads RawBatches and writes one message per candle (what the validator's output looks
like); otherwise each message is decoded and re-encoded as is. Three such stages over the
pipeline's four topics (ticks.raw → ticks.clean → features → predictions), each its own process
like the real services, are what any three-stage Python pipeline on this broker and client
costs before doing any work: the same-run ceiling of the end-to-end replay.
"""

from __future__ import annotations

import argparse
import asyncio

import orjson

from services.common import kafka
from services.common.settings import get_settings


async def run(src: str, dst: str, explode: bool, stop: asyncio.Event) -> None:
    settings = get_settings()
    consumer = kafka.make_consumer(
        src,
        group_id=f"bench-passthrough-{dst}",
        settings=settings,
        fetch_max_wait_ms=5,
        max_poll_records=20_000,
        auto_offset_reset="earliest",
    )
    producer = kafka.make_producer(settings)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=20_000)
            out: list[tuple[bytes, bytes]] = []
            for records in batch.values():
                for r in records:
                    doc = orjson.loads(r.value)
                    if explode:
                        key = doc["symbol"].encode()
                        out += [(key, orjson.dumps(c)) for c in doc["candles"]]
                    else:
                        out.append((r.key or b"", orjson.dumps(doc)))
            if out:
                await kafka.send_batch(producer, dst, out)
    finally:
        await producer.stop()
        await consumer.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--explode", action="store_true", help="RawBatch in, one message per candle")
    args = p.parse_args()
    asyncio.run(kafka.run_until_stopped(lambda stop: run(args.src, args.dst, args.explode, stop)))


if __name__ == "__main__":
    main()
