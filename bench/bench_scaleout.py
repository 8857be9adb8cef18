"""Scale-out on one machine: one instance of each consumer service against two, same input.

3 partitions and 3 symbols (SOL, BTC, DOT: aiokafka's murmur2 partitioner puts them on partitions
0, 1 and 2, so two instances can split the work), real candles from the two-year file re-keyed
as each symbol. For each of the validator and the featurizer, and for 1 then 2 instances:

- a fresh embedded broker, topics created up front;
- the instances are real ``python -m services.<name>`` processes in one consumer group, stopped by
  PID at the end;
- throughput: candles arriving downstream per second between 10% and 90% of the total (the group
  join is reported apart), plus each instance's CPU-seconds (both members did work);
- correctness: the output read back in full, counted by key, no (symbol, time) twice, nothing
  dead-lettered, and the two-instance output equal to the one-instance output.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq

from bench.bench_validator import cpu_seconds
from bench.common import figure, save
from bench.harness import Pipeline, read_topic
from services.common import kafka
from services.common.schemas import RawBatch
from services.common.settings import Settings
from services.common.topics import FEATURES, TICKS_CLEAN, TICKS_DLQ, TICKS_RAW
from services.common.vector_codec import document, is_binary
from services.featurizer.app import internal_topics
from services.featurizer.replay import load_candles, to_candles
from services.featurizer.settings import FeaturizerSettings

SYMBOLS = ("SOL", "BTC", "DOT")
VALIDATOR_ROWS = 30_000  # per symbol
FEATURIZER_START, FEATURIZER_DAYS = "2024-11-01", 3.0  # per symbol: 4,320 candles
#: Fields that differ between runs by design (processing time), left out of the comparison.
VOLATILE = {"emitted_at", "processed_at", "fetched_at", "ingested_at"}


@dataclass(frozen=True)
class Run:
    """One measured run: the rate, the join, each instance's CPU, and the output digest."""

    instances: int
    rate: float
    first_s: float
    cpu_s: list[float]
    per_key: dict[str, int]
    duplicates: int
    dead_letters: int
    digest: str


async def arrivals(
    settings: Settings, topic: str, total: int, t0: float, on_first: Callable[[], object]
) -> list[float]:
    """Seconds after ``t0`` when the first, 10%, 90% and last record reached ``topic``;
    ``on_first`` runs when the first arrives (to start the CPU count past the start-up)."""
    consumer = kafka.make_consumer(topic, group_id=None, settings=settings)
    await consumer.start()
    seen, marks, goals = 0, [], [1, total // 10, total * 9 // 10, total]
    try:
        async with asyncio.timeout(900):
            while goals:
                got = await consumer.getmany(timeout_ms=100, max_records=20_000)
                seen += sum(len(v) for v in got.values())
                while goals and seen >= goals[0]:
                    marks.append(time.perf_counter() - t0)
                    if len(marks) == 1:
                        on_first()
                    goals.pop(0)
    finally:
        await consumer.stop()
    return marks


def digest_output(settings: Settings, topic: str) -> tuple[dict[str, int], int, str]:
    """Count by key, (symbol, time) duplicates, and a digest of the sorted stable content."""
    records = asyncio.run(read_topic(settings, topic))
    docs = [document(r.value) if is_binary(r.value) else orjson.loads(r.value) for r in records]
    per_key = Counter(r.key.decode() for r in records if r.key)
    dups = sum(n - 1 for n in Counter((d["symbol"], d["time"]) for d in docs).values())
    stable = sorted(orjson.dumps({k: v for k, v in d.items() if k not in VOLATILE},
                                 option=orjson.OPT_SORT_KEYS) for d in docs)  # fmt: skip
    return dict(sorted(per_key.items())), dups, hashlib.sha256(b"\n".join(stable)).hexdigest()


def validator_input() -> list[tuple[bytes, bytes]]:
    """RawBatches of 1,000 real candles, the same rows under each symbol."""
    path = Settings().shared_data_dir / "btcusdt_1m_2023-2024.parquet"
    parts = pq.ParquetFile(path).iter_batches(batch_size=1000)
    chunks = [p.to_pylist() for p in itertools.islice(parts, VALIDATOR_ROWS // 1000)]
    return [
        (s.encode(), RawBatch(batch_id=RawBatch.make_id(s, rows), symbol=s, source="replay",
                              fetched_at=time.time(), candles=rows).to_bytes())
        for rows in chunks
        for s in SYMBOLS
    ]  # fmt: skip


async def _send(
    settings: Settings, topic: str, messages: list[tuple[bytes, bytes]], chunk: int = 60
) -> None:
    """Publish pre-encoded (key, value) pairs, acked per chunk (no per-message await)."""
    producer = kafka.make_producer(settings)
    await producer.start()
    try:
        for i in range(0, len(messages), chunk):
            await kafka.send_batch(producer, topic, messages[i : i + chunk])
    finally:
        await producer.stop()


def run_validator(n: int, work: Path, messages: list[tuple[bytes, bytes]]) -> Run:
    """Feed ticks.raw first, then start ``n`` validators together and time ticks.clean."""
    total = VALIDATOR_ROWS * len(SYMBOLS)
    with Pipeline(work) as pipe:
        asyncio.run(_send(pipe.settings, TICKS_RAW, messages))
        t0 = time.perf_counter()
        command = [sys.executable, "-m", "services.validator"]
        procs = [pipe.start(f"validator-{i}", command) for i in range(n)]
        before: list[float] = []
        marks = asyncio.run(
            arrivals(pipe.settings, TICKS_CLEAN, total, t0, lambda: before.extend(_cpu(procs)))
        )
        cpu = [after - b for after, b in zip(_cpu(procs), before, strict=True)]
        return _finish(pipe.settings, n, marks, cpu, TICKS_CLEAN, total)


def run_featurizer(n: int, work: Path, candles: list[tuple[bytes, bytes]]) -> Run:
    """Start ``n`` Faust workers, wait for their assignment, feed ticks.clean, time features."""
    total = len(candles)
    with Pipeline(work) as pipe:
        asyncio.run(kafka.ensure_topics(pipe.settings, extra=internal_topics(FeaturizerSettings())))
        procs = [pipe.start(f"featurizer-{i}", [sys.executable, "-m", "services.featurizer"],
                            FEATURIZER_WORKER_ID=str(i)) for i in range(n)]  # fmt: skip
        t_start = time.perf_counter()
        _wait_assigned(work, n)
        joined = time.perf_counter() - t_start
        before, t0 = _cpu(procs), time.perf_counter()
        marks = asyncio.run(_feed_and_time(pipe.settings, candles, t0))
        cpu = [after - b for after, b in zip(_cpu(procs), before, strict=True)]
        run = _finish(pipe.settings, n, marks, cpu, FEATURES, total)
        return Run(**{**run.__dict__, "first_s": joined})


def _cpu(procs: list[subprocess.Popen[bytes]]) -> list[float]:
    return [cpu_seconds(p.pid) for p in procs]


async def _feed_and_time(
    settings: Settings, candles: list[tuple[bytes, bytes]], t0: float
) -> list[float]:
    """Produce (pre-encoded, so the feed is not the bottleneck) while timing the arrivals."""
    timing = asyncio.create_task(arrivals(settings, FEATURES, len(candles), t0, lambda: None))
    await _send(settings, TICKS_CLEAN, candles, chunk=5000)
    return await timing


def _wait_assigned(work: Path, n: int, timeout_s: float = 180) -> None:
    """Until every worker logged a non-empty assignment and together they hold 0, 1 and 2."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        held = [_last_assignment(work / "log" / f"featurizer-{i}.log") for i in range(n)]
        if all(held) and set().union(*held) == {0, 1, 2} and sum(map(len, held)) == 3:
            return
        time.sleep(0.5)
    raise TimeoutError(f"featurizer workers never split the partitions; see {work / 'log'}")


def _last_assignment(log: Path) -> set[int]:
    lines = [ln for ln in log.read_text(errors="replace").splitlines()
             if ln.startswith("{") and "partitions assigned" in ln]  # fmt: skip
    return set(orjson.loads(lines[-1])["partitions"]) if lines else set()


def _finish(settings: Settings, n: int, marks: list[float], cpu: list[float], topic: str,
            total: int) -> Run:  # fmt: skip
    per_key, dups, digest = digest_output(settings, topic)
    dead = len(asyncio.run(read_topic(settings, TICKS_DLQ, idle_s=1.0)))
    rate = 0.8 * total / (marks[2] - marks[1])
    return Run(n, rate, marks[0], cpu, per_key, dups, dead, digest)


def _report(stage: str, runs: list[Run], join_label: str) -> list[dict[str, Any]]:
    out = []
    for r in runs:
        tag = f"{stage} x{r.instances}"
        out.append(figure(f"{tag}: steady candles/s", r.rate, "candles/s"))
        out.append(figure(f"{tag}: {join_label}", r.first_s, "s"))
        total = sum(r.per_key.values())
        out.append(figure(f"{tag}: candles per CPU-second (all instances)", total / sum(r.cpu_s),
                          "candles/s"))  # fmt: skip
        for i, c in enumerate(r.cpu_s):
            out.append(figure(f"{tag}: instance {i} CPU-seconds while processing", c, "s"))
        print(f"  {tag}: per key {r.per_key}, duplicates {r.duplicates}, "
              f"dead letters {r.dead_letters}, digest {r.digest[:12]}", flush=True)  # fmt: skip
    same = runs[0].digest == runs[1].digest and runs[0].per_key == runs[1].per_key
    out.append(figure(f"{stage}: x2 / x1 throughput", runs[1].rate / runs[0].rate, "ratio"))
    out.append(figure(f"{stage}: x2 output identical to x1 (1 = yes)", float(same), "bool"))
    return out


def _stage(name: str, runner: Callable[[int, Path], Run]) -> list[Run]:
    runs = []
    for n in (1, 2):
        with tempfile.TemporaryDirectory(prefix=f"scaleout-{name}{n}-") as tmp:
            runs.append(runner(n, Path(tmp)))
    return runs


def main() -> dict[str, Any]:
    messages = validator_input()
    path = Settings().shared_data_dir / "btcusdt_1m_2023-2024.parquet"
    frame = load_candles(path, FEATURIZER_START, FEATURIZER_DAYS)
    candles = [(c.symbol.encode(), c.to_bytes()) for s in SYMBOLS for c in to_candles(frame, s)]
    figures: list[dict[str, Any]] = []
    validator = _stage("validator", lambda n, w: run_validator(n, w, messages))
    figures += _report("validator", validator, "first candle after start")
    featurizer = _stage("featurizer", lambda n, w: run_featurizer(n, w, candles))
    figures += _report("featurizer", featurizer, "start to partitions assigned")
    runs = {"validator": validator, "featurizer": featurizer}
    detail = {k: [r.__dict__ for r in v] for k, v in runs.items()}
    save("scaleout", figures, symbols=SYMBOLS, load_avg=os.getloadavg()[0], runs=detail)
    return {"figures": figures, "runs": detail}


if __name__ == "__main__":
    main()
