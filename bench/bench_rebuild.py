"""How long a featurizer restart takes to rebuild a partition's state, and what it grows with.

For 1, 10 and 100 symbols on one partition of ``ticks.clean`` (a fresh embedded broker each):
two weeks of log, then the week the features need, real BTCUSDT minutes carried by synthetic
symbols (``S000``, ``S001``, ...), interleaved minute by minute as live polling publishes them.
The figure is a rebuild as the worker runs it: :func:`services.featurizer.history.read_partition`
then :meth:`Featurizer.rebuild`, the best of a few runs (the least disturbed by other load). The
10-symbol case is measured again, side by side, after doubling the log before the last week
(four weeks): the rebuild must follow the history the features need, not the log (issue 20: at
most 20 % change), in wall seconds and, as a check a loaded machine does not blur, in CPU
seconds of the rebuild and the broker; and once, for reference, reading the whole log as the
rebuild did before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from bench.bench_validator import cpu_seconds
from bench.common import figure, save
from devstack.broker import EmbeddedBroker, free_port
from services.common import features, kafka
from services.common.settings import Settings
from services.common.topics import TICKS_CLEAN
from services.featurizer.core import Featurizer
from services.featurizer.history import read_partition
from services.featurizer.replay import load_candles, to_candles

WEEK = 7 * 1440
END = pd.Timestamp("2024-12-29", tz="UTC")  # the log ends here; the weeks before it are read
RUNS = 5
CHUNK = 50_000
Case = tuple[int, int, bool]  # symbols, weeks of log before the last week, whole log read
#: Cases measured side by side, and how many runs each (the 100-symbol rebuild is the long one).
GROUPS: list[tuple[dict[str, Case], int]] = [
    ({"1": (1, 2, False)}, RUNS),
    ({"10": (10, 2, False), "10x2": (10, 4, False), "10 whole": (10, 2, True)}, RUNS),
    ({"100": (100, 2, False)}, 2),
]


def _values(frame: pd.DataFrame, symbols: int) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of every symbol's candle, minute by minute (one encoding per minute)."""
    names = [f"S{i:03d}".encode() for i in range(symbols)]
    for c in to_candles(frame, "S000"):
        value = c.to_bytes()
        for name in names:
            yield name, value.replace(b'"S000"', b'"' + name + b'"', 1)


async def _publish(settings: Settings, records: Iterator[tuple[bytes, bytes]]) -> int:
    producer = kafka.make_producer(settings)
    await producer.start()
    sent, chunk = 0, []
    try:
        for record in records:
            chunk.append(record)
            if len(chunk) == CHUNK:
                sent += await kafka.send_batch_packed(producer, TICKS_CLEAN, chunk, partition=0)
                chunk = []
        sent += await kafka.send_batch_packed(producer, TICKS_CLEAN, chunk, partition=0)
    finally:
        await producer.stop()
    return sent


async def _rebuild(
    settings: Settings, upto: int, history_s: int, broker_pid: int
) -> tuple[float, int, float]:
    """Seconds for one rebuild of partition 0 up to ``upto``, the records it read, and the CPU
    seconds it took here and in the broker (what a loaded machine does not inflate)."""
    cpu0 = cpu_seconds(os.getpid()) + cpu_seconds(broker_pid)
    t0 = time.perf_counter()
    records = await read_partition(settings, 0, upto, history_s=history_s)
    engine = Featurizer(features.OnlineFeatures, features.FEATURE_VERSION, features.HISTORY_MINUTES)
    engine.rebuild(0, records, upto)
    wall = time.perf_counter() - t0
    return wall, len(records), cpu_seconds(os.getpid()) + cpu_seconds(broker_pid) - cpu0


def measure(frame: pd.DataFrame, cases: list[Case], runs: int) -> list[dict[str, float]]:
    """Best-of-``runs`` rebuild seconds (and records read) of each case, each on its own fresh
    broker; the cases' runs alternate, so a load that comes and goes touches them alike."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_rebuild_")))
        brokers = []
        for k in range(len(cases)):
            broker = EmbeddedBroker(port=free_port(), log_path=tmp / f"broker{k}.log").start()
            stack.callback(broker.stop)
            brokers.append(broker)
        settings = [Settings(kafka_bootstrap_servers=b.bootstrap) for b in brokers]
        pids = [b.process.pid for b in brokers if b.process]
        return asyncio.run(_measure(frame, cases, settings, pids, runs))


async def _measure(
    frame: pd.DataFrame, cases: list[Case], settings: list[Settings], pids: list[int], runs: int
) -> list[dict[str, float]]:
    logs = []
    for (symbols, weeks_before, _), s in zip(cases, settings, strict=True):
        start = int((END - pd.Timedelta(weeks=weeks_before + 1)).timestamp())
        await kafka.ensure_topics(s)
        logs.append(await _publish(s, _values(frame[frame["time"] >= start], symbols)))
    times: list[list[tuple[float, int, float]]] = [[] for _ in cases]
    for run in range(runs):
        for k, ((_, _, whole), s) in enumerate(zip(cases, settings, strict=True)):
            if whole and run:  # the whole-log read is only a reference, and a long one
                continue
            history_s = 10**10 if whole else features.HISTORY_MINUTES * 60
            times[k].append(await _rebuild(s, logs[k], history_s, pids[k]))
    for case, upto, got in zip(cases, logs, times, strict=True):
        runs_s = ", ".join(f"{w:.2f} s ({c:.2f} CPU s)" for w, _, c in got)
        print(f"  {case} (symbols, weeks before, log), {upto:,} records: {runs_s}", flush=True)
    return [
        {
            "seconds": min(w for w, _, _ in got),
            "cpu_s": min(c for _, _, c in got),
            "read": got[0][1],
            "log": upto,
        }
        for upto, got in zip(logs, times, strict=True)
    ]


def main() -> dict[str, Any]:
    frame = load_candles(
        Settings().shared_data_dir / "btcusdt_1m_2023-2024.parquet",
        str((END - pd.Timedelta(weeks=5)).date()),
        35,
    )
    assert len(frame) == 5 * WEEK, "the slice must be whole minutes"
    got: dict[str, dict[str, float]] = {}
    for group, runs in GROUPS:  # the doubled log side by side with the one it doubles
        got.update(zip(group, measure(frame, list(group.values()), runs), strict=True))
    ratio = got["10x2"]["seconds"] / got["10"]["seconds"]
    cpu_ratio = got["10x2"]["cpu_s"] / got["10"]["cpu_s"]
    figures = [
        figure(
            "rebuild: 1 symbol, 3 weeks of log", got["1"]["seconds"], "s", id="rebuild_s_1_symbol"
        ),
        figure(
            "rebuild: 10 symbols, 3 weeks of log",
            got["10"]["seconds"],
            "s",
            id="rebuild_s_10_symbols",
        ),
        figure(
            "rebuild: 100 symbols, 3 weeks of log",
            got["100"]["seconds"],
            "s",
            id="rebuild_s_100_symbols",
        ),
        figure(
            "rebuild: 10 symbols, 5 weeks of log (doubled before the last week)",
            got["10x2"]["seconds"],
            "s",
            id="rebuild_s_10_symbols_doubled_log",
        ),
        figure("rebuild: doubled log / 3 weeks, 10 symbols", ratio, "x"),
        figure(
            "rebuild: change after doubling the log",
            100 * abs(ratio - 1),
            "%",
            target="<= 20",
            id="rebuild_doubled_log_change_pct",
        ),
        figure("rebuild: 10 symbols, 3 weeks, CPU (worker + broker)", got["10"]["cpu_s"], "s"),
        figure("rebuild: 10 symbols, 5 weeks, CPU (worker + broker)", got["10x2"]["cpu_s"], "s"),
        figure(
            "rebuild: change of CPU after doubling the log",
            100 * abs(cpu_ratio - 1),
            "%",
            target="<= 20",
            id="rebuild_doubled_log_cpu_change_pct",
        ),
        figure(
            "rebuild: 10 symbols, 3 weeks, whole log read (as before #20)",
            got["10 whole"]["seconds"],
            "s",
        ),
    ]
    save(
        "rebuild",
        figures,
        records_read={k: v["read"] for k, v in got.items()},
        log_records={k: v["log"] for k, v in got.items()},
        runs={name: runs for group, runs in GROUPS for name in group},
    )
    return {"figures": figures}


if __name__ == "__main__":
    main()
