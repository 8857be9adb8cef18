"""The dead-letter tools' pure side: summaries and what a replay re-sends."""

from __future__ import annotations

import orjson

from services.common.schemas import DeadLetter, RawBatch
from services.validator import dlq
from services.validator import rules as r
from services.validator.core import Rules, Source, judge
from tests.unit.validator.helpers import NOW, T0, batch, rows

SRC = Source("ticks.raw", 1, 9, "BTC")


def letters_of(*payloads: bytes) -> list[DeadLetter]:
    out: list[DeadLetter] = []
    for p in payloads:
        out += judge(p, SRC, None, Rules(), NOW).dead_letters
    return out


def mixed() -> list[DeadLetter]:
    """Two row-level letters, one rejected batch, one garbage payload."""
    ok = rows(200)
    ok[3]["volumeto"] = -1.0
    ok[7]["close"] = 0.0
    late = rows(50, start=T0 + 60 * 500)
    late[0]["high"] = 0.5
    return letters_of(batch(ok).to_bytes(), batch(late).to_bytes(), b"\x00")


def test_summary_counts_by_primary_reason_stage_and_symbol() -> None:
    s = dlq.summarize(mixed())
    assert s.total == 4
    assert s.by_reason == {
        r.NEGATIVE_VOLUME: 1,
        r.NON_POSITIVE_PRICE: 1,
        r.TOO_MANY_INVALID: 1,
        r.NOT_JSON: 1,
    }
    assert s.by_stage == {"validator": 4} and s.by_symbol == {"BTC": 3, "-": 1}
    lines = dlq.render_summary(s)
    assert lines[0].startswith("4 dead letters") and any("too_many_invalid" in x for x in lines)


def test_example_shows_source_reasons_and_payload() -> None:
    garbage = mixed()[-1]
    text = "\n".join(dlq.render_example(garbage))
    assert "ticks.raw[1]@9" in text and "not_json" in text and "payload (1 bytes)" in text


def test_replay_resends_messages_as_they_were_and_regroups_rows() -> None:
    letters = mixed()
    records, skipped = dlq.replay_records(letters, now=NOW)
    assert skipped == 0 and len(records) == 3
    by_value = {v: k for k, v in records}
    assert by_value[letters[2].payload()] == b"BTC" and by_value[b"\x00"] == b"BTC"
    rebuilt = RawBatch.from_bytes(records[-1][1])  # the rows come last, as one batch
    assert rebuilt.source == "replay" and [c["time"] for c in rebuilt.candles] == [
        T0 + 180,
        T0 + 420,
    ]
    assert rebuilt.candles[0] == orjson.loads(letters[0].payload())


def test_replay_filters_by_reason_and_skips_other_stages() -> None:
    letters = mixed()
    other = letters[-1].model_copy(update={"stage": "featurizer"})
    records, skipped = dlq.replay_records([*letters, other], codes={r.TOO_MANY_INVALID})
    assert [v for _, v in records] == [letters[2].payload()] and skipped == 4
