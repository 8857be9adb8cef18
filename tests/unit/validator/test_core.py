"""The batch gate, dedup, policies, gaps and conservation on the pure core."""

from __future__ import annotations

import orjson
import pytest

from services.common.schemas import Candle, DeadLetter, RawBatch
from services.validator import rules as r
from services.validator.core import (
    History,
    Mark,
    Rules,
    Source,
    Verdict,
    encode_candle,
    judge,
)
from tests.unit.validator.helpers import NOW, T0, batch, row, rows

SRC = Source("ticks.raw", 2, 41, "BTC")


def run(raw: RawBatch | bytes, mark: History | Mark | None = None, **rules: object) -> Verdict:
    payload = raw if isinstance(raw, bytes) else raw.to_bytes()
    v = judge(payload, SRC, mark, Rules(**rules), NOW)  # type: ignore[arg-type]
    assert v.balanced()
    return v


def test_good_batch_becomes_candles_with_ingested_at() -> None:
    v = run(batch(rows(5)))
    assert v.outcome == "accepted" and v.dead_letters == []
    candles = [Candle.from_bytes(b) for b in v.clean]
    assert [c.time for c in candles] == [T0 + 60 * i for i in range(5)]
    assert all(c.symbol == "BTC" and c.ingested_at == NOW - 1 for c in candles)
    assert v.mark == Mark(T0 + 240, candles[-1].close)


def test_encoded_candle_is_exactly_the_models_bytes() -> None:
    one = row(T0, close=3)  # an int price becomes a float, as the model does
    model = Candle(
        symbol="ETH", ingested_at=5.0, **{k: one[k] for k in Candle.model_fields if k in one}
    )
    assert encode_candle("ETH", one, 5.0) == model.to_bytes()


@pytest.mark.parametrize("payload", [b"", b"\xff\xfe", b"{not json", b"[1, 2"])
def test_not_json_is_one_dead_letter_with_the_original_bytes(payload: bytes) -> None:
    v = run(payload)
    assert v.outcome == "malformed" and v.records == 0
    (dl,) = v.dead_letters
    assert dl.codes == [r.NOT_JSON] and dl.payload() == payload
    assert (dl.stage, dl.source_topic, dl.source_partition, dl.source_offset) == (
        "validator",
        "ticks.raw",
        2,
        41,
    )


@pytest.mark.parametrize(
    "doc", [[1, 2], {"symbol": "BTC"}, {**batch(rows(1)).model_dump(), "source": "guess"}, 3]
)
def test_json_that_is_not_a_raw_batch(doc: object) -> None:
    payload = orjson.dumps(doc)
    (dl,) = run(payload).dead_letters
    assert dl.codes == [r.NOT_RAW_BATCH] and dl.payload() == payload
    assert DeadLetter.from_bytes(dl.to_bytes()) == dl


def test_nan_from_a_lenient_encoder_reaches_the_row_rules() -> None:
    good = batch(rows(200)).model_dump()
    text = orjson.dumps(good).decode().replace('"volumeto":20.0', '"volumeto":NaN', 1)
    v = run(text.encode())
    assert v.outcome == "accepted" and v.counts[("dead_letter", r.NON_FINITE)] == 1
    assert b"NaN" in v.dead_letters[0].payload()


def test_too_few_rows() -> None:
    assert run(batch([])).dead_letters[0].codes == [r.TOO_FEW_ROWS]
    v = run(batch(rows(3)), min_rows=5)
    assert v.outcome == "rejected" and v.counts[("dead_letter", r.TOO_FEW_ROWS)] == 3


def test_non_monotonic_time_rejects_the_batch() -> None:
    candles = rows(5)
    candles[2], candles[3] = candles[3], candles[2]
    v = run(batch(candles))
    assert v.outcome == "rejected" and v.clean == [] and v.mark is None
    (dl,) = v.dead_letters
    assert dl.codes == [r.NON_MONOTONIC_TIME]
    assert RawBatch.from_bytes(dl.payload()) == batch(candles)


def test_freshness_applies_to_live_batches_only() -> None:
    old = rows(3, start=int(NOW) - 7200)  # newest candle is ~2h old
    assert run(batch(old, source="backfill")).outcome == "accepted"
    v = run(batch(old, source="live"))
    assert v.outcome == "rejected" and v.dead_letters[0].codes == [r.STALE_BATCH]
    assert run(batch(old, source="live"), max_staleness_s=0).outcome == "accepted"
    assert run(batch(rows(3, start=int(NOW) - 240), source="live")).outcome == "accepted"


def test_one_percent_invalid_passes_more_is_rejected() -> None:
    candles = rows(200)
    candles[10]["high"] = 1.0
    candles[20]["volumeto"] = -1.0
    v = run(batch(candles))  # 2 of 200 = 1%: passes, the two rows are dead-lettered
    assert v.outcome == "accepted" and len(v.clean) == 198
    assert sorted(c for d in v.dead_letters for c in d.codes) == [
        r.HIGH_BELOW_BODY,
        r.NEGATIVE_VOLUME,
    ]
    assert {d.event_time for d in v.dead_letters} == {T0 + 600, T0 + 1200}
    candles[30]["low"] = 99.0
    v = run(batch(candles))  # 3 of 200: the whole batch goes
    assert v.outcome == "rejected" and v.counts == {("dead_letter", r.TOO_MANY_INVALID): 200}
    (dl,) = v.dead_letters
    assert dl.codes[0] == r.TOO_MANY_INVALID
    assert [x.index for x in dl.reasons[1:]] == [10, 20, 30]


def test_drop_policy_counts_instead_of_dead_lettering() -> None:
    candles = rows(200)
    candles[5]["open"] = -1.0
    v = run(batch(candles), policy="drop")
    assert v.dead_letters == [] and len(v.clean) == 199
    assert v.counts[("dropped", r.NON_POSITIVE_PRICE)] == 1


def test_identical_duplicates_in_a_batch_are_counted() -> None:
    candles = rows(3)
    v = run(batch([candles[0], candles[1], candles[1], candles[2]]))
    assert len(v.clean) == 3 and v.duplicates == 1 and v.dead_letters == []


def test_replayed_batch_emits_nothing_and_overlap_emits_only_new() -> None:
    first = run(batch(rows(10)))
    again = run(batch(rows(10)), mark=first.history)
    assert again.clean == [] and again.duplicates == 10 and again.dead_letters == []
    overlap = run(batch(rows(15)), mark=first.history)
    assert [Candle.from_bytes(b).time for b in overlap.clean] == [
        T0 + 60 * i for i in range(10, 15)
    ]
    assert overlap.duplicates == 10


def test_gap_minutes_inside_a_batch_and_since_the_mark() -> None:
    candles = [row(T0), row(T0 + 60), row(T0 + 60 * 5)]  # 3 minutes missing
    v = run(batch(candles), mark=Mark(T0 - 60 * 3, 10.0))  # 2 more before the batch
    assert v.gaps == [(T0 - 180, T0, 2.0), (T0 + 60, T0 + 300, 3.0)]
    assert v.gap_minutes == 5.0 and v.dead_letters == []


def test_rejected_batch_leaves_the_mark_and_counts_no_gap() -> None:
    v = run(batch([row(T0 + 60 * 9), row(T0)]), mark=Mark(T0 - 600, 10.0))
    assert v.outcome == "rejected" and v.mark is None and v.gaps == []


def test_row_dead_letter_keeps_the_row_and_its_position() -> None:
    candles = rows(200)
    candles[7] = {**candles[7], "close": 0.0, "extra": "kept"}
    (dl,) = run(batch(candles)).dead_letters
    assert orjson.loads(dl.payload()) == candles[7]
    assert (dl.symbol, dl.event_time, dl.key, dl.reasons[0].index) == ("BTC", T0 + 420, "BTC", 7)


def test_revised_minute_is_a_dead_letter_with_both_values() -> None:
    first = run(batch(rows(10)))
    changed = {**rows(10)[4], "close": rows(10)[4]["close"] * 1.001}
    changed["high"] = max(changed["high"], changed["close"])
    v = run(batch([*rows(10)[:4], changed, *rows(10)[5:], *rows(12)[10:]]), mark=first.history)
    assert v.outcome == "accepted" and len(v.clean) == 2 and v.duplicates == 9
    (dl,) = v.dead_letters
    assert dl.codes == [r.REVISED] and dl.event_time == T0 + 240
    assert orjson.loads(dl.payload()) == changed
    assert dl.emitted == {f: float(rows(10)[4][f]) for f in r.NUMBERS}
    assert dl.letter_id == "ticks.raw:2:41:4" and dl.reasons[0].index == 4
    assert v.counts[("dead_letter", r.REVISED)] == 1


def test_late_minute_is_a_dead_letter_and_a_bad_old_row_keeps_its_own_reason() -> None:
    candles = rows(10)
    first = run(batch([c for i, c in enumerate(candles) if i != 3]))
    bad = {**candles[5], "high": 0.5}
    v = run(batch([candles[3], bad]), mark=first.history, max_invalid_fraction=1.0)
    assert [d.codes for d in v.dead_letters] == [[r.LATE], [r.HIGH_BELOW_BODY]]
    assert v.dead_letters[0].emitted is None and v.dead_letters[0].event_time == T0 + 180
    assert v.clean == [] and v.history == first.history  # a late minute is not emitted later


def test_revised_and_late_rows_never_tip_the_batch_gate_nor_get_dropped() -> None:
    candles = rows(20)
    first = run(batch(candles[::2]))  # every other minute emitted
    v = run(batch(candles), mark=first.history, policy="drop")
    assert v.outcome == "accepted" and v.counts[("dead_letter", r.LATE)] == 9
    assert v.counts[("duplicate", "duplicate")] == 10 and v.total("dropped") == 0


def test_minutes_older_than_the_window_are_unverified_not_late() -> None:
    first = run(batch(rows(10)))
    mark = first.mark
    assert mark is not None
    v = run(batch(rows(10)), mark=History(mark, {}, since=mark.time, window_s=60))
    assert v.counts[("duplicate", "unverified")] == 9 and v.counts[("duplicate", "duplicate")] == 0
    assert [d.codes for d in v.dead_letters] == [[r.LATE]]  # the one minute inside the window


def test_history_keeps_only_its_window() -> None:
    h = History(window_s=120)
    for i in range(10):
        h = h.advanced({60 * i: (1.0,) * 6}, Mark(60 * i, 1.0))
    assert list(h.values) == [420, 480, 540] and h.since == 420
