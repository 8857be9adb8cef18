"""Revisions, late minutes and repeats on a real day, across a validator restart: the stream keeps
the first values, and every other version of a minute is accounted for."""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest

from services.common import kafka
from services.common.lake import read_lake, write_candles
from services.common.schemas import Candle, DeadLetter, RawBatch
from services.common.settings import Settings
from services.common.topics import TICKS_CLEAN, TICKS_DLQ
from services.validator import dlq_io
from services.validator import rules as r
from tests.integration.test_validator import TWO_YEARS, InProcess, produce, read_all, sample

pytestmark = pytest.mark.integration

DAY = int(pd.Timestamp("2024-06-03", tz="UTC").timestamp())


def real_day() -> list[dict]:
    table = pq.read_table(TWO_YEARS, filters=[("time", ">=", DAY), ("time", "<", DAY + 86400)])
    return table.to_pylist()


def as_batch(rows: list[dict], source: str = "replay") -> RawBatch:
    return RawBatch.model_construct(
        batch_id=RawBatch.make_id("BTC", rows),
        symbol="BTC",
        source=source,
        fetched_at=time.time(),
        candles=rows,
    )


def hours(rows: list[dict]) -> list[RawBatch]:
    return [as_batch(rows[i : i + 60]) for i in range(0, len(rows), 60)]


async def test_real_day_with_a_revision_a_late_minute_and_a_repeat(settings: Settings) -> None:
    await kafka.ensure_topics(settings)
    day = real_day()
    assert len(day) == 1440
    late_i, revised_i, repeat_i = 700, 650, 600
    first_half = [row for i, row in enumerate(day[:720]) if i != late_i]  # minute 700 held back
    revised = {**day[revised_i], "close": day[revised_i]["close"] + 0.5}
    revised["high"] = max(revised["high"], revised["close"])
    extra = as_batch([day[repeat_i], revised, day[late_i]])  # what a re-fetch brings, in order

    await produce(settings, [(b"BTC", b.to_bytes()) for b in hours(first_half)])
    async with InProcess(settings) as v:
        await v.wait_batches(12)
    # a new process: the history of emitted values must come back from ticks.clean
    second = [(b"BTC", extra.to_bytes())] + [(b"BTC", b.to_bytes()) for b in hours(day[720:])]
    await produce(settings, second)
    async with InProcess(settings) as again:
        await again.wait_batches(13)

    clean = [orjson.loads(x) for x in await read_all(settings, TICKS_CLEAN, expect=1439)]
    expected = [row for i, row in enumerate(day) if i != late_i]
    assert [c["time"] for c in clean] == [row["time"] for row in expected]
    fields = ("open", "high", "low", "close", "volumefrom", "volumeto")
    assert all(
        tuple(c[f] for f in fields) == tuple(float(row[f]) for f in fields)
        for c, row in zip(clean, expected, strict=True)
    ), "a value on ticks.clean changed: the stream must keep the first values"

    letters = [DeadLetter.from_bytes(x) for x in await read_all(settings, TICKS_DLQ, expect=2)]
    by_code = {d.codes[0]: d for d in letters}
    assert sorted(by_code) == [r.LATE, r.REVISED] and len(letters) == 2
    rev, late = by_code[r.REVISED], by_code[r.LATE]
    assert rev.event_time == day[revised_i]["time"] and late.event_time == day[late_i]["time"]
    assert orjson.loads(rev.payload()) == revised
    assert rev.emitted == {f: float(day[revised_i][f]) for f in fields}
    assert orjson.loads(late.payload()) == day[late_i] and late.emitted is None
    assert rev.letter_id == f"ticks.raw:{rev.source_partition}:{rev.source_offset}:1"

    reg = again.registry
    counts = Counter(
        {
            (s.labels["outcome"], s.labels["reason"]): s.value
            for m in reg.collect()
            for s in m.samples
            if s.name == "validator_records_total" and s.value
        }
    )
    assert counts == {
        ("clean", "ok"): 720,
        ("duplicate", "duplicate"): 1,
        ("dead_letter", r.REVISED): 1,
        ("dead_letter", r.LATE): 1,
    }
    assert sample(reg, "validator_records_in_total") == 723

    # the batch path: the lake holds what the archiver took from ticks.clean; the letters then
    # bring the revision and the late minute in (the newest copy of a minute wins there)
    write_candles(settings.data_dir, [Candle.from_dict(c) for c in clean])
    assert await dlq_io.replay_to_lake(settings, set(), from_start=False, dry_run=False) == (2, 0)
    lake = read_lake(settings.data_dir, "BTC")
    by_time = lake.set_index("time")
    assert list(lake["time"]) == [row["time"] for row in day]
    assert by_time.loc[revised["time"], "close"] == revised["close"]
    assert by_time.loc[day[late_i]["time"], "close"] == day[late_i]["close"]
    unchanged = lake[~lake["time"].isin([revised["time"]])]
    assert (
        unchanged["close"].to_numpy() == [r["close"] for r in day if r is not day[revised_i]]
    ).all()
    # taken once: the next run finds nothing new
    assert await dlq_io.replay_to_lake(settings, set(), from_start=False, dry_run=False) == (0, 0)
