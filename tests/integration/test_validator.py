"""The validator against the real embedded broker: DLQ counts by reason, restarts, kill -9, and
the real two-year file end to end."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from aiokafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from services.common import kafka
from services.common.schemas import DeadLetter, RawBatch
from services.common.settings import Settings
from services.common.topics import TICKS_CLEAN, TICKS_DLQ, TICKS_RAW
from services.validator import dlq_io
from services.validator import rules as r
from services.validator.app import Validator
from services.validator.core import Mark, encode_candle
from services.validator.marks import Marks, partition_for
from services.validator.metrics import ValidatorMetrics
from services.validator.settings import ValidatorSettings

pytestmark = pytest.mark.integration

TWO_YEARS = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TWO_YEARS = TWO_YEARS / "btcusdt_1m_2023-2024.parquet"
#: A fixed "now" for in-process runs: just after the real file's last candle.
NOW = 1_735_689_600.0


def real_batches(rows_per_batch: int = 1000, limit: int | None = None) -> Iterator[RawBatch]:
    """RawBatches of real candles from the two-year file, oldest first."""
    pf = pq.ParquetFile(TWO_YEARS)
    seen = 0
    for part in pf.iter_batches(batch_size=rows_per_batch):
        rows = part.to_pylist()
        if limit is not None:
            rows = rows[: limit - seen]
        if not rows:
            return
        seen += len(rows)
        yield RawBatch.model_construct(  # as received: judging rows is the validator's job
            batch_id=RawBatch.make_id("BTC", rows),
            symbol="BTC",
            source="replay",
            fetched_at=time.time(),
            candles=rows,
        )


async def produce(settings: Settings, payloads: list[tuple[bytes, bytes]]) -> None:
    """Send (key, value) records to ticks.raw in order, in chunks of 50."""
    producer = kafka.make_producer(settings)
    await producer.start()
    try:
        for i in range(0, len(payloads), 50):
            await kafka.send_batch(producer, TICKS_RAW, payloads[i : i + 50])
    finally:
        await producer.stop()


async def read_all(
    settings: Settings,
    topic: str,
    expect: int,
    idle_s: float = 2.0,
    timeout_s: float = 120,
    alive: Callable[[], None] = lambda: None,
) -> list[Any]:
    """Every record of ``topic`` once ``expect`` arrived and nothing more came for ``idle_s``.

    ``alive`` is called on every poll: it raises when the producing process has died."""
    consumer = kafka.make_consumer(group_id=None, settings=settings)
    await consumer.start()
    parts = consumer.partitions_for_topic(topic) or set()
    if not parts:
        await consumer.topics()
        parts = consumer.partitions_for_topic(topic) or set()
    consumer.assign([TopicPartition(topic, p) for p in parts])
    await consumer.seek_to_beginning()
    got: list[Any] = []
    quiet_since = time.monotonic()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            alive()
            batch = await consumer.getmany(timeout_ms=200, max_records=20_000)
            for recs in batch.values():
                got += [rec.value for rec in recs]
            if batch:
                quiet_since = time.monotonic()
            elif len(got) >= expect and time.monotonic() - quiet_since >= idle_s:
                break
    finally:
        await consumer.stop()
    return got


def times_of(values: list[bytes]) -> Counter[tuple[str, int]]:
    """(symbol, time) -> how many times it is on ticks.clean."""
    docs = (orjson.loads(v) for v in values)
    return Counter((d["symbol"], d["time"]) for d in docs)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


class InProcess:
    """A validator running as a task in this event loop, stopped by the context's exit."""

    def __init__(self, settings: Settings, group: str = "validator", **options: Any) -> None:
        self.registry = CollectorRegistry()
        opts = ValidatorSettings(metrics_port=0, group_id=group, **options)
        self.validator = Validator(settings, opts, ValidatorMetrics(self.registry), lambda: NOW)
        self.stop = asyncio.Event()

    async def __aenter__(self) -> InProcess:
        self.task = asyncio.create_task(self.validator.run(self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)

    async def wait_batches(self, n: int, timeout_s: float = 60) -> None:
        """Until ``n`` messages are judged, sent and committed (metrics follow the commit)."""
        deadline = time.monotonic() + timeout_s
        while self.batches() < n:
            assert time.monotonic() < deadline, f"only {self.batches()} of {n} batches judged"
            assert not self.task.done(), self.task.exception()
            await asyncio.sleep(0.1)

    def batches(self) -> float:
        return sum(sample(self.registry, "validator_batches_total", outcome=o) for o in OUTCOMES)


OUTCOMES = ("accepted", "rejected", "malformed")


def good(start: int, n: int, source: str = "replay") -> RawBatch:
    rows = [
        {"time": start + 60 * i, "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5}
        | {"volumefrom": 1.0, "volumeto": 100.5}
        for i in range(n)
    ]
    return RawBatch(
        batch_id=RawBatch.make_id("BTC", rows),
        symbol="BTC",
        source=source,  # type: ignore[arg-type]
        fetched_at=NOW,
        candles=rows,
    )


def broken(raw: RawBatch, changes: dict[int, dict[str, Any]]) -> RawBatch:
    rows = [{**row, **changes.get(i, {})} for i, row in enumerate(raw.candles)]
    return raw.model_copy(update={"candles": rows})


T = 1_735_000_020 - 1_735_000_020 % 60  # a minute boundary before NOW


async def test_mix_of_good_and_bad_batches_gives_exact_dlq_counts(settings: Settings) -> None:
    await kafka.ensure_topics(settings)
    first = good(T, 300)
    mix = [
        first,  # 300 clean
        broken(good(T + 18_000, 200), {5: {"high": 1.0}, 9: {"close": None}}),  # 198 clean, 2 rows
        broken(good(T + 30_000, 100), {1: {"volumeto": -1.0}, 2: {"low": 500.0}}),  # too many
        good(T + 40_000 - 40_000 % 60, 0),  # empty: too few rows
        first.model_copy(update={"candles": first.candles[::-1]}),  # non-monotonic
        good(T + 50_000 - 50_000 % 60, 10, source="live"),  # stale live batch
        first,  # replayed: 300 duplicates, nothing emitted
    ]
    payloads = [(b"BTC", b.to_bytes()) for b in mix] + [(b"BTC", b"\x00garbage"), (None, b"[]")]
    await produce(settings, payloads)
    async with InProcess(settings) as v:
        await v.wait_batches(len(payloads))
    clean = await read_all(settings, TICKS_CLEAN, expect=498)
    letters = [DeadLetter.from_bytes(x) for x in await read_all(settings, TICKS_DLQ, expect=8)]
    assert len(clean) == 498 and all(n == 1 for n in times_of(clean).values())
    assert Counter(d.codes[0] for d in letters) == {
        r.HIGH_BELOW_BODY: 1,
        r.RECORD_SCHEMA: 1,
        r.TOO_MANY_INVALID: 1,
        r.TOO_FEW_ROWS: 1,
        r.NON_MONOTONIC_TIME: 1,
        r.STALE_BATCH: 1,
        r.NOT_JSON: 1,
        r.NOT_RAW_BATCH: 1,
    }
    garbage = next(d for d in letters if d.codes == [r.NOT_JSON])
    assert garbage.payload() == b"\x00garbage" and garbage.source_topic == TICKS_RAW
    # conservation, from the exported counters
    reg = v.registry
    records = sum(
        s.value for m in reg.collect() for s in m.samples if s.name == "validator_records_total"
    )
    assert (
        records == sample(reg, "validator_records_in_total") == 300 + 200 + 100 + 0 + 300 + 10 + 300
    )
    assert sample(reg, "validator_records_total", outcome="clean", reason="ok") == 498
    assert sample(reg, "validator_records_total", outcome="duplicate", reason="duplicate") == 300
    assert sample(reg, "validator_batches_total", outcome="malformed") == 2
    # the batches join up; the two dead-lettered rows leave two missing minutes in the output
    assert sample(reg, "validator_gap_minutes_total", symbol="BTC") == 2


async def test_marks_come_back_from_ticks_clean(settings: Settings) -> None:
    """A fresh group (no committed offsets: the worst crash) re-reads everything, emits nothing."""
    await kafka.ensure_topics(settings)
    batches = [good(T + 60 * 100 * i, 100) for i in range(5)]
    await produce(settings, [(b"BTC", b.to_bytes()) for b in batches])
    async with InProcess(settings, group="first") as v:
        await v.wait_batches(5)
    async with InProcess(settings, group="second", recover_window=7) as again:
        await again.wait_batches(5)
    assert (
        sample(again.registry, "validator_records_total", outcome="duplicate", reason="duplicate")
        == 500
    )
    clean = await read_all(settings, TICKS_CLEAN, expect=500)
    assert len(clean) == 500 and set(times_of(clean).values()) == {1}


def volstream(env: dict[str, str], *args: str) -> str:
    """Run the ``volstream`` CLI as an operator would; its stdout."""
    out = subprocess.run(
        [sys.executable, "-m", "devstack.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
async def test_dlq_show_then_replay_after_a_fix_is_idempotent(
    settings: Settings, service_env: dict[str, str]
) -> None:
    await kafka.ensure_topics(settings)
    first = broken(good(T, 200), {3: {"volumefrom": -1.0}, 4: {"open": 0.0}})  # 2 rows out
    second = broken(good(T + 12_000, 100), {1: {"high": 1.0}, 2: {"low": 1e6}})  # 2% bad
    await produce(settings, [(b"BTC", first.to_bytes()), (b"BTC", second.to_bytes())])
    await produce(settings, [(b"BTC", b"not json")])
    async with InProcess(settings) as v:
        await v.wait_batches(3)
    shown = await asyncio.to_thread(volstream, service_env, "dlq", "show", "-n", "2")
    assert shown.startswith("4 dead letters")
    for code in ("negative_volume", "non_positive_price", "too_many_invalid", "not_json"):
        assert code in shown
    assert "last 2 examples:" in shown and "payload (8 bytes): 'not json'" in shown

    # the fix: tolerate 5% bad rows; the rejected batch now passes, its two bad rows go alone
    replayed = await asyncio.to_thread(volstream, service_env, "dlq", "replay")
    assert replayed.startswith("re-sent 3 messages")  # batch, the two rows as one batch, garbage
    async with InProcess(settings, max_invalid_fraction=0.05) as fixed:
        await fixed.wait_batches(3)
    clean = await read_all(settings, TICKS_CLEAN, expect=198 + 98)
    assert len(clean) == 198 + 98 and set(times_of(clean).values()) == {1}
    reg = fixed.registry
    # the two bad rows replayed on their own are still bad: dead letters again, not duplicates
    assert all(
        sample(reg, "validator_records_total", outcome="duplicate", reason=why) == 0
        for why in ("duplicate", "unverified")
    )
    assert (
        sample(reg, "validator_records_total", outcome="dead_letter", reason="too_many_invalid")
        == 2
    )

    # replaying everything again emits nothing new; only new letters are re-sent by default
    # new since the replay: the two rows of the fixed batch (one message), the two old rows
    # rejected again (one message) and the garbage again
    assert await dlq_io.replay_letters(settings, set(), from_start=False, dry_run=True) == (3, 0)
    await dlq_io.replay_letters(settings, set(), from_start=True, dry_run=False)
    async with InProcess(settings, max_invalid_fraction=0.05) as again:
        await again.wait_batches(3)
    assert len(await read_all(settings, TICKS_CLEAN, expect=198 + 98)) == 198 + 98


async def test_marks_scan_back_past_other_symbols(settings: Settings) -> None:
    """A symbol whose last candle lies far behind another's is still found, window by window."""
    await kafka.ensure_topics(settings)
    n = settings.topic_partitions
    btc = partition_for(b"BTC", n)
    other = next(
        s for s in ("ETH", "SOL", "XRP", "ADA", "DOT") if partition_for(s.encode(), n) == btc
    )
    candle = good(T, 1).candles[0]

    def rec(symbol: str, t: int, close: float) -> tuple[bytes, bytes]:
        return symbol.encode(), encode_candle(symbol, {**candle, "time": t, "close": close}, None)

    records = [rec(other, T + 60 * i, 50.0 + i) for i in range(5)]
    records += [rec("BTC", T + 60 * i, 100.0) for i in range(100)]
    await kafka.publish(TICKS_CLEAN, records, settings)
    reader = kafka.make_consumer(group_id=None, settings=settings)
    await reader.start()
    try:
        marks = Marks(reader, TICKS_CLEAN, window=7)
        assert (await marks.get(other)).mark == Mark(T + 240, 54.0)
        btc = await marks.get("BTC")
        assert btc.mark == Mark(T + 60 * 99, 100.0) and len(btc.values) == 100
        assert (await marks.get("NONE")).mark is None
    finally:
        await reader.stop()


class CrashBeforeCommit(Validator):
    """Dies after its outputs are acknowledged and before it commits: the window a kill -9 hits
    when it replays a poll whose dead letters are already on ticks.dlq."""

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        raise RuntimeError("killed between the acks and the commit")


async def test_dead_letters_once_when_a_crash_replays_the_poll(settings: Settings) -> None:
    await kafka.ensure_topics(settings)
    bad = [broken(good(T + 60 * 300 * i, 300), {7 * i % 300: {"high": 1.0}}) for i in range(6)]
    payloads = [(b"BTC", b.to_bytes()) for b in bad] + [(b"BTC", b"\x00garbage")]
    await produce(settings, payloads)
    for _ in range(2):  # two incarnations die after sending everything, nothing committed
        crashing = CrashBeforeCommit(
            settings, ValidatorSettings(metrics_port=0), ValidatorMetrics(CollectorRegistry())
        )
        with pytest.raises(RuntimeError, match="killed between"):
            await crashing.run(asyncio.Event())
    async with InProcess(settings) as v:
        await v.wait_batches(len(payloads))
    letters = [DeadLetter.from_bytes(x) for x in await read_all(settings, TICKS_DLQ, expect=7)]
    ids = Counter(d.letter_id for d in letters)
    assert len(ids) == 7 and set(ids.values()) == {1}, ids
    assert None not in ids
    assert v.validator.letters.skipped == 7  # the last run judged all 7 again and sent none
    clean = await read_all(settings, TICKS_CLEAN, expect=6 * 299)
    assert len(clean) == 6 * 299 and set(times_of(clean).values()) == {1}


async def test_a_poll_does_not_wait_for_earlier_acks_and_commits_only_after_them(
    settings: Settings,
) -> None:
    """Publish and move on: a poll is judged and published while an earlier poll's outputs are
    still unacked; nothing is committed past the unacked one; its failure stops the next poll."""
    await kafka.ensure_topics(settings)
    validator = Validator(
        settings,
        ValidatorSettings(metrics_port=0),
        ValidatorMetrics(CollectorRegistry()),
        lambda: NOW,
    )
    await validator.start()
    try:
        assert validator.committer is not None

        async def poll() -> None:
            async with asyncio.timeout(30):
                while not await validator.step():
                    pass

        await produce(settings, [(b"BTC", good(T, 3).to_bytes())])
        await poll()  # the symbol's marks are read back once, with nothing in flight
        await validator.settle()
        never = asyncio.get_running_loop().create_future()  # an ack that does not come
        await validator.committer.submit([never], {0: 1})
        tp = TopicPartition(TICKS_RAW, partition_for(b"BTC", settings.topic_partitions))
        committed = await validator.consumer.committed(tp)
        assert committed == 1  # the first poll, acked
        await produce(settings, [(b"BTC", good(T + 180, 3).to_bytes())])
        await poll()  # not held by the unacked poll
        clean = await read_all(settings, TICKS_CLEAN, expect=6, idle_s=0.5, timeout_s=30)
        assert len(clean) == 6  # published (and acked) behind the unacked one
        assert await validator.consumer.committed(tp) == 1  # but not committed past it
        never.set_exception(RuntimeError("broker said no"))
        await asyncio.sleep(0.1)
        with pytest.raises(RuntimeError, match="broker said no"):
            await validator.step()
    finally:
        validator.committer = None
        await validator.consumer.stop()
        await validator.producer.stop()
        await validator.marks.reader.stop()


async def test_an_idle_validator_backs_off_its_fetch_wait_and_snaps_back(
    settings: Settings,
) -> None:
    """Silence on ticks.raw: the consumer's fetch wait goes to VALIDATOR_IDLE_FETCH_MAX_WAIT_MS;
    the next batch is judged and the wait is back to the hot path's."""
    await kafka.ensure_topics(settings)
    async with InProcess(settings, idle_fetch_max_wait_ms=150) as run:
        deadline = time.monotonic() + 10
        while (run.validator.backoff is None or not run.validator.backoff.idle) and (
            time.monotonic() < deadline
        ):
            await asyncio.sleep(0.1)
        backoff = run.validator.backoff
        assert backoff is not None and backoff.idle and backoff.wait_ms == 150
        await kafka.publish(TICKS_RAW, [(b"BTC", good(T, 3).to_bytes())], settings)
        deadline = time.monotonic() + 10
        while backoff.idle and time.monotonic() < deadline:  # 200 ms of silence backs off again
            await asyncio.sleep(0.005)
        assert not backoff.idle and backoff.wait_ms == kafka.CONSUMER_DEFAULTS["fetch_max_wait_ms"]
        await run.wait_batches(1)
