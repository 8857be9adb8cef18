"""``python -m services.validator`` as a real process: the two-year file end to end, and kill -9."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.broker import free_port
from services.common import kafka
from services.common.schemas import DeadLetter, RawBatch
from services.common.settings import Settings
from services.common.topics import TICKS_CLEAN, TICKS_DLQ
from tests.integration.test_validator import produce, read_all, real_batches

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TWO_YEAR_ROWS = 1_052_560


class ValidatorProcess:
    """The service in its own process group, so kill -9 and clean-up reach it by PID."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.validator"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> None:
        """Raise, with the log's tail, when the process has exited."""
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]

    def kill9(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-2000:]
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM (SIGKILL if it lingers); the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)


@pytest.fixture()
def validator_proc(service_env: dict[str, str], tmp_path: Path) -> Iterator[ValidatorProcess]:
    proc = ValidatorProcess(dict(service_env), tmp_path / "validator.log")
    try:
        yield proc
    finally:
        proc.stop()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The service's /metrics as {(sample name, sorted labels): value}."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def wait_for_metric(port: int, name: str, value: float, timeout_s: float = 60) -> dict:
    """Scrape until ``name`` (no labels) reaches ``value``; metrics follow the commit."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = await asyncio.to_thread(scrape, port)
        if got.get((name, ())) == value or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.5)


async def count_until(settings: Settings, topic: str, n: int, timeout_s: float = 60) -> int:
    """Read ``topic`` from the start until at least ``n`` records have been seen."""
    consumer = kafka.make_consumer(topic, group_id=None, settings=settings)
    await consumer.start()
    seen = 0
    try:
        async with asyncio.timeout(timeout_s):
            while seen < n:
                batch = await consumer.getmany(timeout_ms=100, max_records=20_000)
                seen += sum(len(v) for v in batch.values())
    finally:
        await consumer.stop()
    return seen


async def test_two_year_file_yields_every_candle_and_counts_the_gap(
    settings: Settings, validator_proc: ValidatorProcess, shared_data: Path
) -> None:
    await kafka.ensure_topics(settings)
    port = free_port()
    validator_proc.env["VALIDATOR_METRICS_PORT"] = str(port)
    validator_proc.start()  # joins its group while the file is read and produced
    batches = list(real_batches())
    times = [row["time"] for b in batches for row in b.candles]
    assert len(times) == TWO_YEAR_ROWS
    missing = sum((b - a) // 60 - 1 for a, b in itertools.pairwise(times))
    assert missing == 80  # the one 81-minute step between candle opens: 80 candles never happened
    await produce(settings, [(b"BTC", b.to_bytes()) for b in batches])
    del batches
    clean = await read_all(
        settings, TICKS_CLEAN, expect=TWO_YEAR_ROWS, timeout_s=240, alive=validator_proc.alive
    )
    assert len(clean) == TWO_YEAR_ROWS
    # one key, one partition: the exact times in order means each candle exactly once
    assert [orjson.loads(c)["time"] for c in clean] == times
    assert await read_all(settings, TICKS_DLQ, expect=0, idle_s=1.0) == []
    m = await wait_for_metric(port, "validator_records_in_total", TWO_YEAR_ROWS)
    assert m[("validator_records_in_total", ())] == TWO_YEAR_ROWS
    assert m[("validator_records_total", (("outcome", "clean"), ("reason", "ok")))] == TWO_YEAR_ROWS
    assert m[("validator_gap_minutes_total", (("symbol", "BTC"),))] == missing
    assert m[("validator_batches_total", (("outcome", "accepted"),))] == 1053


async def test_kill_9_mid_stream_then_restart_emits_each_candle_once(
    settings: Settings, validator_proc: ValidatorProcess, shared_data: Path
) -> None:
    """Real candles with a bad row in every batch and garbage in between; two kill -9s: each
    candle on ticks.clean once, each bad row and the garbage on ticks.dlq once."""
    total = 200_000
    await kafka.ensure_topics(settings)
    batches = [with_bad_row(b, i) for i, b in enumerate(real_batches(limit=total))]
    payloads = [(b"BTC", b.to_bytes()) for b in batches]
    payloads.insert(len(payloads) // 2, (b"BTC", b"\x00garbage"))
    await produce(settings, payloads)
    bad_times = {b.candles[i % len(b.candles)]["time"] for i, b in enumerate(batches)}
    good_times = [row["time"] for b in batches for row in b.candles if row["time"] not in bad_times]
    validator_proc.start()
    for share in (5, 2):  # kill -9 at a fifth, restart, kill -9 again at half, restart
        at_kill = await count_until(settings, TICKS_CLEAN, len(good_times) // share)
        validator_proc.kill9()
        assert at_kill < len(good_times), "the validator finished before the kill"
        validator_proc.start()
    clean = await read_all(
        settings, TICKS_CLEAN, expect=len(good_times), timeout_s=120, alive=validator_proc.alive
    )
    assert [orjson.loads(c)["time"] for c in clean] == good_times  # each once, in order
    letters = [
        DeadLetter.from_bytes(x)
        for x in await read_all(settings, TICKS_DLQ, expect=len(batches) + 1, idle_s=2.0)
    ]
    by_time = Counter(d.event_time for d in letters if d.event_time is not None)
    assert by_time == dict.fromkeys(bad_times, 1), "a bad row is missing or doubled on ticks.dlq"
    assert [d.codes for d in letters if d.event_time is None] == [["not_json"]]
    assert len({d.letter_id for d in letters}) == len(letters) == len(batches) + 1
    assert '"msg":"mark recovered"' in validator_proc.log.read_text()
    assert validator_proc.stop() == 0  # SIGTERM: finishes the poll, commits, exits cleanly


def with_bad_row(batch: RawBatch, i: int) -> RawBatch:
    """The batch with row ``i`` (mod its length) made impossible: high below the body."""
    rows = list(batch.candles)
    j = i % len(rows)
    rows[j] = {**rows[j], "high": rows[j]["low"] / 2}
    return batch.model_copy(update={"candles": rows})
