"""Drive a featurizer from outside: feed real candles, run workers, read the features back.

Used by the acceptance tests, the benchmark and ``bench/chaos``: candles are cut from the real
recorded file (never synthesised), workers are real ``python -m services.featurizer`` processes
stopped by PID, and outputs are read from the ``features`` topic.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from services.common import kafka
from services.common.kafka import Until
from services.common.schemas import CANDLE_FIELDS, Candle, FeatureVector
from services.common.settings import REPO_ROOT, Settings
from services.common.topics import FEATURES, TICKS_CLEAN


def load_candles(path: Path, start: str, days: float) -> pd.DataFrame:
    """Real 1-minute candles from ``path`` in [start, start + days), sorted by time."""
    t0 = int(pd.Timestamp(start, tz="UTC").timestamp())
    t1 = t0 + int(days * 86400)
    frame = pd.read_parquet(
        path, columns=list(CANDLE_FIELDS), filters=[("time", ">=", t0), ("time", "<", t1)]
    )
    return frame.sort_values("time").reset_index(drop=True)


def to_candles(frame: pd.DataFrame, symbol: str) -> list[Candle]:
    """The frame's rows as Candles of ``symbol`` (real prices, re-keyed for multi-symbol runs)."""
    cols = [frame[c].tolist() for c in CANDLE_FIELDS]
    return [
        Candle(symbol=symbol, **dict(zip(CANDLE_FIELDS, row, strict=True)))
        for row in zip(*cols, strict=True)
    ]


async def produce(settings: Settings, candles: Iterable[Candle], chunk: int = 5000) -> int:
    """Publish candles to ``ticks.clean`` keyed by symbol, acked per chunk; returns the count."""
    producer = kafka.make_producer(settings)
    await producer.start()
    sent, buf = 0, []
    try:
        for c in candles:
            buf.append((c.symbol.encode(), c.to_bytes()))
            if len(buf) >= chunk:
                sent += await kafka.send_batch(producer, TICKS_CLEAN, buf)
                buf = []
        sent += await kafka.send_batch(producer, TICKS_CLEAN, buf)
    finally:
        await producer.stop()
    return sent


async def collect(
    settings: Settings, want: Mapping[str, int], timeout_s: float = 120.0
) -> dict[tuple[str, int], list[FeatureVector]]:
    """Read ``features`` from the start until each symbol has ``want[symbol]`` distinct times.

    Returns every vector by (symbol, time), duplicates included; raises TimeoutError.
    """
    got: dict[tuple[str, int], list[FeatureVector]] = {}
    if _complete(got, want):
        return got
    consumer = kafka.make_consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        async with asyncio.timeout(timeout_s):
            while not (tps := await kafka.topic_partitions(consumer, FEATURES)):
                await asyncio.sleep(0.2)
            async for batch in kafka.read_log(consumer, tps, Until.follow()):
                for r in batch:
                    v = FeatureVector.from_bytes(r.value)
                    got.setdefault((v.symbol, v.time), []).append(v)
                if _complete(got, want):
                    break
    finally:
        await consumer.stop()
    return got


def _complete(got: Mapping[tuple[str, int], object], want: Mapping[str, int]) -> bool:
    counts: dict[str, int] = {}
    for symbol, _ in got:
        counts[symbol] = counts.get(symbol, 0) + 1
    return all(counts.get(s, 0) >= n for s, n in want.items())


@dataclass
class Worker:
    """One ``python -m services.featurizer`` process; ``stop``/``kill`` by its PID."""

    env: dict[str, str]
    log_path: Path
    worker_id: str = "0"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Worker:
        env = {**os.environ, **self.env, "FEATURIZER_WORKER_ID": self.worker_id}
        env.setdefault("FEATURIZER_WEB_PORT", "0")
        env.setdefault("FEATURIZER_METRICS_PORT", "0")
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.featurizer"],
            env=env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye (the crash the recovery must survive)."""
        if self.alive:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL if it lingers; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def wait_for_log(self, text: str, timeout_s: float = 60.0) -> None:
        """Block until ``text`` appears in the worker's log (e.g. its first rebuild)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace"):
                return
            if not self.alive:
                raise RuntimeError(f"featurizer exited; see {self.log_path}")
            time.sleep(0.2)
        raise TimeoutError(f"{text!r} not logged in {timeout_s}s; see {self.log_path}")
