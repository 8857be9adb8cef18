"""Every record rule on the pure core, each with its reason code."""

from __future__ import annotations

import pytest

from services.validator import rules as r
from services.validator.core import Mark, Rules, Source, Verdict, judge_batch
from tests.unit.validator.helpers import NOW, T0, batch, row

SRC = Source("ticks.raw", 0, 1, "BTC")


def codes_of(one_row: dict) -> list[str]:
    return [x.code for x in r.check_row(one_row, interval_s=60, now=NOW)]


def test_a_good_row_has_no_reasons() -> None:
    assert codes_of(row(T0)) == []


def test_extra_fields_from_cryptocompare_are_ignored() -> None:
    assert codes_of({**row(T0), "conversionType": "direct", "conversionSymbol": ""}) == []


@pytest.mark.parametrize(
    "change",
    [
        {"close": None},
        {"open": "10.0"},
        {"high": True},
        {"time": 1.7e9},
        {"time": -60},
        {"time": "1700000040"},
    ],
)
def test_schema(change: dict) -> None:
    assert codes_of({**row(T0), **change}) == [r.RECORD_SCHEMA]


def test_schema_missing_field_names_it() -> None:
    bad = row(T0)
    del bad["volumeto"]
    (reason,) = r.check_row(bad, interval_s=60, now=NOW)
    assert reason.code == r.RECORD_SCHEMA and "volumeto: missing" in reason.message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 10**400])
def test_non_finite(value: float) -> None:
    assert codes_of({**row(T0), "volumefrom": value}) == [r.NON_FINITE]


@pytest.mark.parametrize("field", ["open", "high", "low", "close"])
def test_non_positive_price(field: str) -> None:
    candle = {"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, field: 0.0}
    assert r.NON_POSITIVE_PRICE in codes_of({**row(T0), **candle})


def test_high_below_body() -> None:
    assert codes_of({**row(T0), "open": 10.0, "close": 12.0, "high": 11.0}) == [r.HIGH_BELOW_BODY]


def test_low_above_body() -> None:
    assert codes_of({**row(T0), "open": 10.0, "close": 9.0, "low": 9.5}) == [r.LOW_ABOVE_BODY]


@pytest.mark.parametrize("field", ["volumefrom", "volumeto"])
def test_negative_volume(field: str) -> None:
    assert codes_of({**row(T0), field: -0.5}) == [r.NEGATIVE_VOLUME]


def test_zero_volume_is_fine() -> None:
    assert codes_of({**row(T0), "volumefrom": 0.0, "volumeto": 0}) == []


def test_misaligned_time() -> None:
    assert codes_of(row(T0 + 30)) == [r.MISALIGNED_TIME]


def test_future_time_allows_one_interval() -> None:
    current = (int(NOW) // 60) * 60
    assert codes_of(row(current + 60)) == []
    assert codes_of(row(current + 120)) == [r.FUTURE_TIME]


def test_several_value_rules_are_all_reported() -> None:
    bad = {**row(T0 + 1), "high": 1.0, "low": 20.0, "volumeto": -1.0}
    assert codes_of(bad) == [
        r.HIGH_BELOW_BODY,
        r.LOW_ABOVE_BODY,
        r.NEGATIVE_VOLUME,
        r.MISALIGNED_TIME,
    ]


def judge(rows: list[dict], mark: Mark | None = None, **rules: object) -> Verdict:
    raw = batch(rows)
    return judge_batch(raw, raw.to_bytes(), SRC, mark, Rules(**rules), NOW)  # type: ignore[arg-type]


def test_implausible_jump_against_previous_close() -> None:
    rows = [row(T0, close=100.0), row(T0 + 60, close=130.0), row(T0 + 120, close=101.0)]
    v = judge(rows, max_invalid_fraction=1.0)
    assert v.outcome == "accepted"
    assert [d.codes for d in v.dead_letters] == [[r.IMPLAUSIBLE_JUMP]]
    assert v.dead_letters[0].event_time == T0 + 60
    assert len(v.clean) == 2  # the row after the spike is judged against the last clean close


def test_implausible_jump_against_the_recovered_mark() -> None:
    v = judge([row(T0 + 60, close=200.0)], mark=Mark(T0, 100.0), max_invalid_fraction=1.0)
    assert v.counts[("dead_letter", r.IMPLAUSIBLE_JUMP)] == 1


def test_jump_threshold_widens_with_a_gap() -> None:
    rows = [row(T0, close=100.0), row(T0 + 60 * 30, close=130.0)]  # 30 intervals later
    assert judge(rows).outcome == "accepted" and len(judge(rows).clean) == 2


def test_jump_threshold_is_configurable() -> None:
    rows = [row(T0, close=100.0), row(T0 + 60, close=103.0)]
    assert judge(rows).total("clean") == 2
    assert judge(rows, max_log_return=0.01, max_invalid_fraction=1.0).total("clean") == 1


def test_conflicting_duplicate_in_a_batch() -> None:
    rows = [row(T0), row(T0, close=10.1), row(T0 + 60)]
    v = judge(rows, max_invalid_fraction=1.0)
    assert v.counts[("dead_letter", r.CONFLICTING_DUPLICATE)] == 1
    assert v.dead_letters[0].reasons[0].index == 1
