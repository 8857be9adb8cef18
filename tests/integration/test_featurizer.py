"""The streaming featurizer end to end: real broker, real Faust workers, real candles.

- parity: 14 real days through a worker equal ``featurize_many`` on the same slice;
- restart: a worker killed with SIGKILL mid-stream and restarted emits, by (symbol, time),
  exactly the features of an uninterrupted run: no gap, no different value (a replayed batch may
  be emitted twice, with equal values);
- scale-out: two workers split the partitions of three symbols, each symbol still exact.

The uninterrupted reference is the batch path, which the parity test proves equal to the stream.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pandas as pd
import pytest
from aiokafka.structs import TopicPartition

from services.common import kafka
from services.common.features import (
    FEATURE_NAMES,
    HISTORY_MINUTES,
    WARMUP_MINUTES,
    featurize_many,
)
from services.common.schemas import FeatureVector
from services.common.settings import Settings
from services.common.topics import TICKS_CLEAN, TICKS_DLQ
from services.featurizer.app import internal_topics
from services.featurizer.parity import compare
from services.featurizer.replay import Worker, collect, load_candles, produce, to_candles
from services.featurizer.settings import FeaturizerSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = "btcusdt_1m_2023-2024.parquet"


@pytest.fixture()
def workers(service_env: dict[str, str], tmp_path: Path) -> Iterator[list[Worker]]:
    """Worker processes started by a test; every one is stopped by PID at the end."""
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


def start_worker(workers: list[Worker], env: dict[str, str], tmp: Path, wid: str) -> Worker:
    w = Worker(env, tmp / f"worker{wid}-{len(workers)}.log", worker_id=wid).start()
    workers.append(w)
    return w


async def prepare(settings: Settings) -> None:
    await kafka.ensure_topics(settings, extra=internal_topics(FeaturizerSettings()))


def assert_exact(
    got: dict[tuple[str, int], list[FeatureVector]], symbol: str, frame: pd.DataFrame
) -> int:
    """Every time of the slice emitted, every copy equal to the batch path; returns warm rows."""
    vectors = [v for (s, _), vs in got.items() if s == symbol for v in vs]
    report = compare(vectors, featurize_many(frame), FEATURE_NAMES)
    assert not report.missing, f"{symbol}: {len(report.missing)} times never emitted"
    assert report.ok, report.mismatches[:5]
    assert {v.feature_version for v in vectors} == {vectors[0].feature_version}
    return sum(1 for (s, _), vs in got.items() if s == symbol and vs[0].warm)


async def test_stream_equals_batch_on_14_real_days(
    settings: Settings, service_env: dict[str, str], workers: list[Worker], tmp_path: Path
) -> None:
    frame = load_candles(settings.shared_data_dir / DATA, "2024-12-01", 14)
    assert len(frame) == 14 * 1440
    await prepare(settings)
    await produce(settings, to_candles(frame, "BTC"))
    start_worker(workers, service_env, tmp_path, "0")
    got = await collect(settings, {"BTC": len(frame)}, timeout_s=420)
    warm = assert_exact(got, "BTC", frame)
    assert warm == len(frame) - WARMUP_MINUTES >= 4000
    assert workers[0].stop() == 0  # SIGTERM: flushes, commits and exits cleanly


async def test_kill_9_and_restart_is_exact(
    settings: Settings, service_env: dict[str, str], workers: list[Worker], tmp_path: Path
) -> None:
    # more than HISTORY_MINUTES before the kill, so the rebuild keeps only the tail it needs;
    # the last 1240 candles are published only after the kill, so the restart has work to do
    frame = load_candles(settings.shared_data_dir / DATA, "2024-10-01", 8.5)
    candles = to_candles(frame, "BTC")
    await prepare(settings)
    await produce(settings, candles[:11_000])
    first = start_worker(workers, service_env, tmp_path, "0")
    await collect(settings, {"BTC": 10_500}, timeout_s=300)
    # commits trail the outputs (the committer spaces them), so wait until they cover the
    # history a rebuild needs: the restart must resume mid-stream, not from the start
    await _committed_past(settings, HISTORY_MINUTES, timeout_s=30)
    first.kill()
    await produce(settings, candles[11_000:])
    second = start_worker(workers, service_env, tmp_path, "0")
    got = await collect(settings, {"BTC": len(frame)}, timeout_s=300)
    assert_exact(got, "BTC", frame)
    # the restart resumed mid-stream from a week-plus of history, and nothing was dead-lettered
    rebuilt = [orjson.loads(line)["records"] for line in _log_lines(second, "state rebuilt")]
    assert rebuilt and HISTORY_MINUTES < rebuilt[0] <= 11_000, rebuilt
    assert await _dead_letters(settings) == []


async def _committed_past(settings: Settings, offset: int, timeout_s: float) -> None:
    """Wait until the featurizer group's committed offsets on ticks.clean sum past ``offset``."""
    tps = [TopicPartition(TICKS_CLEAN, p) for p in range(settings.topic_partitions)]
    consumer = kafka.make_consumer(group_id=FeaturizerSettings().app_id, settings=settings)
    await consumer.start()  # no subscription: reads the group's offsets without joining it
    try:
        async with asyncio.timeout(timeout_s):
            while sum([await consumer.committed(tp) or 0 for tp in tps]) <= offset:
                await asyncio.sleep(0.1)
    finally:
        await consumer.stop()


async def test_two_workers_split_partitions_and_stay_exact(
    settings: Settings, service_env: dict[str, str], workers: list[Worker], tmp_path: Path
) -> None:
    path = settings.shared_data_dir / DATA
    frames = {
        "BTC": load_candles(path, "2024-12-01", 2),
        "ETH": load_candles(path, "2024-11-01", 2),
        "SOL": load_candles(path, "2024-10-01", 2),
    }
    await prepare(settings)
    a = start_worker(workers, service_env, tmp_path, "a")
    a.wait_for_log('"partitions":[0,1,2]', timeout_s=120)
    b = start_worker(workers, service_env, tmp_path, "b")
    await _wait_split(a, b)
    await produce(settings, [c for s, f in frames.items() for c in to_candles(f, s)])
    got = await collect(settings, {s: len(f) for s, f in frames.items()}, timeout_s=300)
    for symbol, frame in frames.items():
        assert_exact(got, symbol, frame)
    assert sum(len(_log_lines(w, "state rebuilt")) for w in (a, b)) >= 2


async def _wait_split(a: Worker, b: Worker, timeout_s: float = 120) -> None:
    import asyncio

    async with asyncio.timeout(timeout_s):
        while True:
            pa, pb = _assigned(a), _assigned(b)
            if pa and pb and not pa & pb and pa | pb == {0, 1, 2}:
                return
            await asyncio.sleep(0.5)


def _assigned(w: Worker) -> set[int]:
    lines = _log_lines(w, "partitions assigned")
    return set(orjson.loads(lines[-1])["partitions"]) if lines else set()


def _log_lines(w: Worker, text: str) -> list[str]:
    return [
        line
        for line in w.log_path.read_text(errors="replace").splitlines()
        if text in line and re.match(r"^\{", line)
    ]


async def _dead_letters(settings: Settings) -> list[bytes]:
    consumer = kafka.make_consumer(TICKS_DLQ, group_id=None, settings=settings)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=2000)
        return [r.value for recs in batch.values() for r in recs]
    finally:
        await consumer.stop()
