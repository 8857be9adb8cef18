"""Kafka request census: how many requests each process sends, by API, over a time window.

A measuring tool for the latency benchmark (``BENCH_KAFKA_CENSUS=1``), never loaded by the
services themselves: :func:`install` wraps aiokafka's ``AIOKafkaConnection.send`` in the
process it runs in, counting every request by API (a Fetch also by the fetch wait it asks for
and whether its answer held records) and every garbage collection with its pause, and a
daemon thread appends the running counts to
``$KAFKA_CENSUS_DIR/<pid>.jsonl`` every :data:`INTERVAL_S`. Child processes load it through
``bench/census_site/sitecustomize.py`` (:func:`child_env` puts it on their ``PYTHONPATH``);
Faust's consumer thread and every other aiokafka client of a process are counted alike.
:func:`window` turns the snapshots into requests per second per process and API between two
moments (the broker pays CPU per request: an empty fetch, a commit or a heartbeat costs it
about as much as a small produce).
"""

from __future__ import annotations

import collections
import gc
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

#: Seconds between two snapshots of a process's counts.
INTERVAL_S = 0.25
ENV = "KAFKA_CENSUS_DIR"

_counts: collections.Counter[str] = collections.Counter()
_lock = threading.RLock()  # re-entrant: a collection can start while a thread holds it
_stopped = threading.Event()


def _bump(name: str) -> None:
    with _lock:
        _counts[name] += 1


async def _fetch_outcome(answer: Any, name: str) -> Any:
    response = await answer
    full = any(p[-1] for _, parts in response.topics for p in parts)
    _bump(f"{name} {'records' if full else 'empty'}")
    return response


_gc_started: list[float] = [0.0]


def _gc_timer(phase: str, info: dict[str, Any]) -> None:
    """Count each garbage collection by generation, with its pause (a stop-the-world pause of
    the process's event loop: in the latency's tail when it lasts milliseconds)."""
    if phase == "start":
        _gc_started[0] = time.perf_counter()
        return
    pause_us = int((time.perf_counter() - _gc_started[0]) * 1e6)
    gen = info.get("generation", "?")
    with _lock:
        _counts[f"gc{gen} collections"] += 1
        _counts[f"gc{gen} pause us"] += pause_us
        if pause_us >= 5_000:
            _counts[f"gc{gen} pauses >= 5 ms"] += 1


def _label() -> str:
    """The process's command, as ``python -m X`` names it (or the script)."""
    try:
        argv = Path("/proc/self/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    args = [a.decode() for a in argv if a]
    if "-m" in args:
        i = args.index("-m")
        return " ".join(args[i + 1 : i + 3])
    return " ".join(args[1:3])


def _writer() -> None:
    while not _stopped.wait(INTERVAL_S):
        try:
            snapshot()
        except OSError:  # the run's directory is gone: nothing left to count for
            return


def snapshot(directory: str | None = None) -> None:
    """Append the running counts of this process to its file (also at each interval)."""
    directory = directory or os.environ.get(ENV)
    if not directory:
        return
    with _lock:
        counts = dict(_counts)
    line = {"t": time.time(), "pid": os.getpid(), "label": _label(), "counts": counts}
    with open(Path(directory) / f"{os.getpid()}.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


def install() -> bool:
    """Count this process's Kafka requests when ``KAFKA_CENSUS_DIR`` is set (idempotent)."""
    directory = os.environ.get(ENV)
    if not directory:
        return False
    from aiokafka.conn import AIOKafkaConnection

    if getattr(AIOKafkaConnection.send, "_census", False):
        return True
    original = AIOKafkaConnection.send

    def send(self: Any, request: Any, expect_response: bool = True) -> Any:
        name = type(request).__name__.removesuffix("Request")
        if name == "Fetch":
            topics = ",".join(sorted(t for t, _ in getattr(request, "topics", ())))
            name += f"(wait={getattr(request, '_max_wait_ms', '?')}) [{topics}]"
        answer = original(self, request, expect_response)
        if name.startswith("Fetch") and expect_response:
            return _fetch_outcome(answer, name)
        _bump(name)
        return answer

    send._census = True  # type: ignore[attr-defined]
    AIOKafkaConnection.send = send  # type: ignore[method-assign]
    gc.callbacks.append(_gc_timer)
    Path(directory).mkdir(parents=True, exist_ok=True)
    threading.Thread(target=_writer, name="kafka-census", daemon=True).start()
    return True


def stop() -> None:
    """Stop this process's snapshots (before its directory goes away)."""
    _stopped.set()


def child_env(directory: Path) -> dict[str, str]:
    """Environment that makes child Python processes count their requests into ``directory``."""
    root = Path(__file__).resolve().parents[1]
    paths = [str(root / "bench" / "census_site"), str(root), os.environ.get("PYTHONPATH", "")]
    return {ENV: str(directory), "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _at(lines: list[dict[str, Any]], t: float) -> dict[str, int]:
    """The counts of the last snapshot at or before ``t`` (none yet: zeros)."""
    before = [line for line in lines if line["t"] <= t]
    return before[-1]["counts"] if before else {}


def window(directory: Path, t0: float, t1: float) -> dict[str, dict[str, float]]:
    """Requests per second by ``"<label> [pid]"`` and API between ``t0`` and ``t1``
    (time.time()), from the snapshots in ``directory``; processes that sent none are left out."""
    out: dict[str, dict[str, float]] = {}
    for path in sorted(Path(directory).glob("*.jsonl")):
        lines = [json.loads(s) for s in path.read_text().splitlines() if s.strip()]
        if not lines:
            continue
        start, end = _at(lines, t0), _at(lines, t1)
        rates = {
            api: (n - start.get(api, 0)) / max(t1 - t0, 1e-9)
            for api, n in end.items()
            if n > start.get(api, 0)
        }
        if rates:
            out[f"{lines[-1]['label']} [{lines[-1]['pid']}]"] = dict(sorted(rates.items()))
    return out


def report(title: str, rates: dict[str, dict[str, float]]) -> None:
    """Print a window's requests per second, per process and API, and the total per API."""
    print(f"  Kafka requests/s, {title}:", flush=True)
    total: collections.Counter[str] = collections.Counter()
    for proc, apis in rates.items():
        requests = sum(r for api, r in apis.items() if not api.startswith("gc"))
        print(f"    {proc}: {requests:,.1f} requests/s (gc: per second)", flush=True)
        for api, r in apis.items():
            print(f"      {api:<64} {r:8.1f}", flush=True)
            total[api] += r  # type: ignore[assignment]
    requests = sum(r for api, r in total.items() if not api.startswith("gc"))
    print(f"    all: {requests:,.1f} requests/s", flush=True)
    for api, r in sorted(total.items()):
        print(f"      {api:<64} {r:8.1f}", flush=True)


async def log_batches(settings: Any, topic: str) -> dict[int, int]:
    """Record batches per partition of ``topic``, read from the start with raw fetches.

    Tansu's in-memory log costs more per fetch that finds records the more batches the
    partition holds (a live stage writes one batch per candle), so two runs on one broker
    compare only at equal batch counts. Batches, not records: a consumer does not see them."""
    from aiokafka.protocol.fetch import FetchRequest
    from aiokafka.record.memory_records import MemoryRecords

    from services.common import kafka

    consumer = kafka.make_consumer(group_id=None, settings=settings)
    await consumer.start()
    out: dict[int, int] = {}
    try:
        tps = await kafka.topic_partitions(consumer, topic)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)  # a floor on Tansu, but 0 only when empty
        client = consumer._client
        for tp in tps:
            node = client.cluster.leader_for_partition(tp)
            offset, count, end, empty = starts[tp], 0, None, 0
            if ends[tp] <= offset:
                end = offset
            while end is None or offset < end:
                # a long fetch wait: with records there Tansu answers at once, and a short one
                # can run out while it walks a long partition (then it answers nothing)
                wanted = [(topic, [(tp.partition, offset, 8 << 20)])]
                response = await client.send(node, FetchRequest(500, 1, 8 << 20, 0, wanted))
                part = response.topics[0][1][0]
                if part[1]:
                    raise RuntimeError(f"{topic}[{tp.partition}]: fetch error {part[1]}")
                end = part[2]  # the high watermark (exact on Tansu)
                records = MemoryRecords(part[-1]) if part[-1] else None
                last = offset
                while records is not None and records.has_next():
                    batch = records.next_batch()
                    count += 1
                    last = batch.next_offset
                empty = empty + 1 if last == offset else 0
                if empty >= 3:
                    raise RuntimeError(f"{topic}[{tp.partition}]: stuck at {offset} of {end}")
                offset = last
            out[tp.partition] = count
    finally:
        await consumer.stop()
    return out
