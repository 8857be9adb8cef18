"""The chaos check can fail: a dropped or a doubled candle, or a dead letter that names another
candle, is a problem; only a letter naming the missing candle's own time accounts for it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.chaos import ChaosReport, check_candles, expected_keys
from bench.harness import Record, write_slice
from services.common.schemas import Candle, DeadLetter, DeadLetterReason, RawBatch

START = int(pd.Timestamp("2024-11-20", tz="UTC").timestamp())


@pytest.fixture()
def feed(tmp_path: Path, shared_data: Path) -> tuple[set[tuple[str, int]], list[Record]]:
    """A real day as the feed file, and ticks.clean as a faithful run leaves it."""
    path = tmp_path / "feed.parquet"
    write_slice(path, START, START + 86400)
    frame = pd.read_parquet(path)
    clean = [
        Record(0, i, b"BTC", Candle(symbol="BTC", **row).to_bytes(), 0)
        for i, row in enumerate(frame.to_dict("records"))
    ]
    return expected_keys(path, "BTC"), clean


def letter(time: int | None, payload: bytes = b"{}") -> Record:
    why = [DeadLetterReason(code="high_below_body", message="x")]
    d = DeadLetter.wrap(
        payload,
        stage="validator",
        reasons=why,
        source_topic="ticks.raw",
        symbol="BTC",
        event_time=time,
    )
    return Record(0, 0, None, d.to_bytes(), 0)


def problems(expected, clean, dlq=()) -> list[str]:
    report = ChaosReport()
    check_candles(expected, list(clean), list(dlq), report)
    return report.problems


def test_a_faithful_run_passes(feed) -> None:
    expected, clean = feed
    assert len(expected) == 1440 and problems(expected, clean) == []


def test_a_dropped_candle_fails_the_check(feed) -> None:
    expected, clean = feed
    (found,) = problems(expected, clean[:700] + clean[701:])
    assert "1 expected candles neither on ticks.clean nor named by a dead letter" in found


def test_a_doubled_candle_fails_the_check(feed) -> None:
    expected, clean = feed
    (found,) = problems(expected, [*clean, clean[42]])
    assert found.startswith("1 candles on ticks.clean more than once")


def test_a_dead_letter_excuses_only_the_candle_it_names(feed) -> None:
    expected, clean = feed
    dropped = clean[:700] + clean[701:]
    t700 = Candle.from_bytes(clean[700].value).time
    assert problems(expected, dropped, [letter(t700)]) == []
    assert problems(expected, dropped, [letter(t700 + 60)]) != []
    assert (
        problems(expected, clean[:699] + clean[701:], [letter(t700)]) != []
    )  # two lost, one named


def test_a_rejected_batch_names_its_rows(feed) -> None:
    expected, clean = feed
    rows = [
        Candle.from_bytes(r.value).model_dump(exclude={"symbol", "schema_version"})
        for r in clean[100:160]
    ]
    batch = RawBatch(batch_id="b", symbol="BTC", source="replay", fetched_at=0.0, candles=rows)
    assert problems(expected, clean[:100] + clean[160:], [letter(None, batch.to_bytes())]) == []


def test_a_candle_not_in_the_feed_fails_the_check(feed) -> None:
    expected, clean = feed
    extra = Candle.from_bytes(clean[-1].value).model_copy(update={"time": START + 86400})
    (found,) = problems(expected, [*clean, Record(0, 0, b"BTC", extra.to_bytes(), 0)])
    assert "not in the feed" in found
