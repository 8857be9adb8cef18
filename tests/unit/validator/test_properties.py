"""Properties over arbitrary bytes and mutated batches: the core never raises, nothing vanishes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.schemas import Candle, DeadLetter, RawBatch
from services.validator.core import Mark, Rules, Source, Verdict, judge
from tests.unit.validator.helpers import NOW, T0, batch, rows

SRC = Source("ticks.raw", 0, 0, None)
FIELDS = ["time", "open", "high", "low", "close", "volumefrom", "volumeto"]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
rules_st = st.builds(
    Rules,
    max_invalid_fraction=st.sampled_from([0.0, 0.01, 0.5, 1.0]),
    min_rows=st.integers(0, 3),
    max_log_return=st.sampled_from([0.001, 0.15, 5.0]),
    policy=st.sampled_from(["dead-letter", "drop"]),
)
marks = st.none() | st.builds(
    Mark,
    time=st.integers(T0 - 600, T0 + 600).map(lambda t: t - t % 60),
    close=st.floats(0.01, 1e6),
)


def check(v: Verdict, payload: bytes, mark: Mark | None) -> None:
    """The invariants every verdict keeps."""
    assert v.balanced()
    assert (
        v.total("clean") + v.total("dead_letter") + v.total("dropped") + v.duplicates == v.records
    )
    times = [Candle.from_bytes(b).time for b in v.clean]
    assert times == sorted(set(times))
    if mark is not None and times:
        assert times[0] > mark.time
    for dl in v.dead_letters:
        assert DeadLetter.from_bytes(dl.to_bytes()) == dl
    if v.outcome != "accepted":
        assert v.clean == [] and [d.payload() for d in v.dead_letters] == [payload]


@given(payload=st.binary(max_size=300), rules=rules_st)
def test_arbitrary_bytes(payload: bytes, rules: Rules) -> None:
    v = judge(payload, SRC, None, rules, NOW)
    check(v, payload, None)
    assert v.outcome == "malformed" or RawBatch.from_bytes(payload)


@given(doc=json_values)
def test_arbitrary_json(doc: Any) -> None:
    payload = json.dumps(doc).encode()
    check(judge(payload, SRC, None, Rules(), NOW), payload, None)


@st.composite
def mutated_batches(draw: st.DrawFn) -> bytes:
    """A good batch with random rows broken, duplicated, moved or dropped."""
    candles = rows(draw(st.integers(0, 30)), start=T0 + 60 * draw(st.integers(-5, 5)))
    for _ in range(draw(st.integers(0, 6))):
        if not candles:
            break
        i = draw(st.integers(0, len(candles) - 1))
        action = draw(st.sampled_from(["set", "delete", "dup", "move", "extra"]))
        if action == "set":
            candles[i] = {**candles[i], draw(st.sampled_from(FIELDS)): draw(json_scalars)}
        elif action == "delete":
            candles[i] = {k: v for k, v in candles[i].items() if k != draw(st.sampled_from(FIELDS))}
        elif action == "dup":
            candles.insert(i, dict(candles[i]))
        elif action == "move":
            candles.insert(draw(st.integers(0, len(candles) - 1)), candles.pop(i))
        else:
            candles[i] = {**candles[i], "conversionType": draw(json_values)}
    raw = batch(candles, source=draw(st.sampled_from(["live", "backfill", "replay"])))
    return json.dumps(raw.model_dump(mode="python")).encode()  # keeps NaN/Infinity tokens


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(payload=mutated_batches(), mark=marks, rules=rules_st)
def test_mutated_batches(payload: bytes, mark: Mark | None, rules: Rules) -> None:
    v = judge(payload, SRC, mark, rules, NOW)
    check(v, payload, mark)
    assert v.outcome != "malformed"
    if rules.policy == "drop":
        assert v.total("dead_letter") in (0, v.records)


@st.composite
def mutated_rows(draw: st.DrawFn) -> dict[str, Any]:
    """A good row with up to three fields set to arbitrary JSON scalars."""
    one = rows(1, start=T0 + 60 * draw(st.integers(-3, 3)))[0]
    for f in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        one[f] = draw(json_scalars)
    return one


@settings(max_examples=200)
@given(one=mutated_rows(), interval=st.sampled_from([60, 3600]))
def test_the_fast_path_never_passes_what_the_rules_reject(one: dict, interval: int) -> None:
    from services.validator.rules import check_row, sound

    if sound(one, interval, NOW):
        assert check_row(one, interval, NOW) == []
