"""Record rules: one row of a RawBatch against the candle contract, each failure a stable code.

A rule never raises: it returns the reasons a row is bad (empty when it is good). Codes are part of
the operator interface (``volstream dlq show`` groups by them, alerts select on them), so they
never change meaning; add a new code rather than reuse one.

    >>> row = {"time": 1700000040, "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5,
    ...        "volumefrom": 1.0, "volumeto": 10.5}
    >>> check_row(row, interval_s=60, now=1700000100.0)
    []
    >>> [r.code for r in check_row({**row, "high": 10.2}, interval_s=60, now=1700000100.0)]
    ['high_below_body']
"""

from __future__ import annotations

import math
from typing import Any

from services.common.schemas import CANDLE_FIELDS, DeadLetterReason

# Record-level codes (one row).
RECORD_SCHEMA = "record_schema"
NON_FINITE = "non_finite"
NON_POSITIVE_PRICE = "non_positive_price"
HIGH_BELOW_BODY = "high_below_body"
LOW_ABOVE_BODY = "low_above_body"
NEGATIVE_VOLUME = "negative_volume"
MISALIGNED_TIME = "misaligned_time"
FUTURE_TIME = "future_time"
IMPLAUSIBLE_JUMP = "implausible_jump"
CONFLICTING_DUPLICATE = "conflicting_duplicate"
#: A minute already emitted, now with other values (the source revised it).
REVISED = "revised"
#: A minute before the last emitted one that was never emitted (arrived out of order).
LATE = "late"

# Message- and batch-level codes (the whole RawBatch).
NOT_JSON = "not_json"
NOT_RAW_BATCH = "not_raw_batch"
TOO_FEW_ROWS = "too_few_rows"
NON_MONOTONIC_TIME = "non_monotonic_time"
STALE_BATCH = "stale_batch"
TOO_MANY_INVALID = "too_many_invalid"

RECORD_CODES = (
    RECORD_SCHEMA,
    NON_FINITE,
    NON_POSITIVE_PRICE,
    HIGH_BELOW_BODY,
    LOW_ABOVE_BODY,
    NEGATIVE_VOLUME,
    MISALIGNED_TIME,
    FUTURE_TIME,
    IMPLAUSIBLE_JUMP,
    CONFLICTING_DUPLICATE,
    REVISED,
    LATE,
)
BATCH_CODES = (
    NOT_JSON,
    NOT_RAW_BATCH,
    TOO_FEW_ROWS,
    NON_MONOTONIC_TIME,
    STALE_BATCH,
    TOO_MANY_INVALID,
)

PRICES = ("open", "high", "low", "close")
VOLUMES = ("volumefrom", "volumeto")
NUMBERS = (*PRICES, *VOLUMES)


def reason(code: str, message: str, index: int | None = None) -> DeadLetterReason:
    """A reason, built without re-validation (the code constants are known-good)."""
    return DeadLetterReason.model_construct(code=code, message=message, index=index)


def is_number(value: object) -> bool:
    """JSON numbers only: bool is an int in Python but never a price."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite(value: float) -> bool:
    """Finite, and representable as a float (a 400-digit JSON integer is not).

    >>> is_finite(1.5), is_finite(float("nan")), is_finite(10**400)
    (True, False, False)
    """
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def row_time(row: dict[str, Any]) -> int | None:
    """The row's candle time when it is a usable non-negative int, else None.

    >>> row_time({"time": 60}), row_time({"time": True}), row_time({"time": 60.0})
    (60, None, None)
    """
    t = row.get("time")
    if isinstance(t, int) and not isinstance(t, bool) and t >= 0:
        return t
    return None


def schema_reasons(row: dict[str, Any]) -> list[DeadLetterReason]:
    """The row parses as a candle: every field present, ``time`` a non-negative int, numbers."""
    problems = [f"{f}: missing" for f in CANDLE_FIELDS if f not in row]
    if "time" in row and row_time(row) is None:
        problems.append(f"time: expected a non-negative integer, got {row['time']!r}")
    problems += [
        f"{f}: expected a number, got {row[f]!r}"
        for f in NUMBERS
        if f in row and not is_number(row[f])
    ]
    return (
        [reason(RECORD_SCHEMA, "row is not a candle: " + "; ".join(problems))] if problems else []
    )


def finite_reasons(row: dict[str, Any]) -> list[DeadLetterReason]:
    """Every number is finite (NaN or infinity arrive through lenient JSON encoders)."""
    bad = [f for f in NUMBERS if not is_finite(row[f])]
    return [reason(NON_FINITE, f"not finite: {', '.join(bad)}")] if bad else []


def value_reasons(row: dict[str, Any]) -> list[DeadLetterReason]:
    """Prices positive, high and low bracket the body, volumes non-negative."""
    out = []
    bad = [f for f in PRICES if row[f] <= 0]
    if bad:
        out.append(reason(NON_POSITIVE_PRICE, f"price <= 0: {', '.join(bad)}"))
    top, bottom = max(row["open"], row["close"]), min(row["open"], row["close"])
    if row["high"] < top:
        out.append(reason(HIGH_BELOW_BODY, f"high {row['high']} < max(open, close) {top}"))
    if row["low"] > bottom:
        out.append(reason(LOW_ABOVE_BODY, f"low {row['low']} > min(open, close) {bottom}"))
    bad = [f for f in VOLUMES if row[f] < 0]
    if bad:
        out.append(reason(NEGATIVE_VOLUME, f"volume < 0: {', '.join(bad)}"))
    return out


def time_reasons(t: int, interval_s: int, now: float) -> list[DeadLetterReason]:
    """Aligned to the interval, and not beyond now plus one interval."""
    out = []
    if t % interval_s:
        out.append(reason(MISALIGNED_TIME, f"time {t} is not a multiple of {interval_s}s"))
    if t > now + interval_s:
        out.append(reason(FUTURE_TIME, f"time {t} is beyond now {now:.0f} + {interval_s}s"))
    return out


#: Above this a number is not a finite float (a huge JSON integer compares fine but won't convert).
FLOAT_MAX = 1.7976931348623157e308
_NUMERIC = frozenset((int, float))


def sound(row: dict[str, Any], interval_s: int, now: float) -> bool:
    """The fast path: True only when every rule of :func:`check_row` would pass.

    One expression instead of six rule functions; a row it refuses (NaN and infinity fail the
    comparisons) goes through the detailed rules for its reasons.

    >>> sound({"time": 60, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5,
    ...        "volumefrom": 0, "volumeto": 0.0}, 60, 120.0)
    True
    """
    try:
        t, o, h, lo, c = row["time"], row["open"], row["high"], row["low"], row["close"]
        vf, vt = row["volumefrom"], row["volumeto"]
    except KeyError:
        return False
    return (
        type(t) is int
        and 0 <= t <= now + interval_s
        and t % interval_s == 0
        and type(o) in _NUMERIC
        and type(h) in _NUMERIC
        and type(lo) in _NUMERIC
        and type(c) in _NUMERIC
        and type(vf) in _NUMERIC
        and type(vt) in _NUMERIC
        and 0 < lo <= o <= h < FLOAT_MAX
        and lo <= c <= h
        and 0 <= vf < FLOAT_MAX
        and 0 <= vt < FLOAT_MAX
    )


def check_row(row: dict[str, Any], interval_s: int, now: float) -> list[DeadLetterReason]:
    """Every stateless rule, in order; schema and finiteness stop early (later rules need them)."""
    for stage in (schema_reasons, finite_reasons):
        found = stage(row)
        if found:
            return found
    t = row_time(row)
    assert t is not None  # schema_reasons guarantees it
    return value_reasons(row) + time_reasons(t, interval_s, now)


def jump_reason(
    close: float, prev_close: float, elapsed_intervals: int, max_log_return: float
) -> DeadLetterReason | None:
    """Flag |log(close / prev_close)| beyond the threshold, scaled by sqrt(elapsed intervals).

    Volatility grows with the square root of time, so a gap widens the allowance instead of
    flagging the first candle after an outage.

    >>> jump_reason(100.0, 99.0, 1, 0.15) is None
    True
    >>> jump_reason(150.0, 100.0, 1, 0.15).code
    'implausible_jump'
    >>> jump_reason(150.0, 100.0, 16, 0.15) is None
    True
    """
    if prev_close <= 0:
        return None  # no usable reference (cannot come from a clean mark)
    move = abs(math.log(close) - math.log(prev_close))
    allowed = max_log_return * math.sqrt(max(1, elapsed_intervals))
    if move <= allowed:
        return None
    return reason(
        IMPLAUSIBLE_JUMP,
        f"|log return| {move:.4f} vs previous close {prev_close} exceeds {allowed:.4f}",
    )
