"""The CryptoCompare emulator's logic: real recorded weeks on a simulated clock, real paging.

Each symbol serves one real file of minute candles, shifted in time so that every symbol shares
one clock. ``limit=N`` answers N+1 rows, ``toTs`` is inclusive, the last row of a request at "now"
is the still-open minute (a partial candle), minute data is kept for the last 7 days only, and
before a series begins the API answers all-zero candles. Faults are drawn from a seeded RNG.

>>> ds = Dataset("BTC", [{"time": 0, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5,
...                       "volumefrom": 1.0, "volumeto": 1.5}] * 1, shift=600)
>>> rows = minute_rows(ds, now=630.0, limit=1, to_ts=None)
>>> [(r["time"], r["close"]) for r in rows]    # a zero candle, then the open minute, half-way
[(540, 0), (600, 1.25)]
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

Row = dict[str, Any]
MINUTE, HOUR, WEEK = 60, 3600, 7 * 86400
MAX_LIMIT = 2000
PRICE_FIELDS = ("high", "low", "open", "volumefrom", "volumeto", "close")

#: Error bodies verbatim from captured responses (see shared/CRYPTOCOMPARE.md).
RATE_LIMIT_BODY: Row = {
    "Response": "Error",
    "Message": "You are over your rate limit please upgrade your account!",
    "HasWarning": False,
    "Type": 99,
    "RateLimit": {
        "calls_made": {
            "second": 21,
            "minute": 30,
            "hour": 40,
            "day": 773,
            "month": 1627,
            "total_calls": 5262,
        },
        "max_calls": {"second": 20, "minute": 300, "hour": 3000, "day": 7500, "month": 50000},
    },
    "Data": {},
}


def error_body(message: str, type_: int, param: str | None = None) -> Row:
    """A ``"Response":"Error"`` body as the API sends it (always with HTTP 200)."""
    body: Row = {
        "Response": "Error",
        "Message": message,
        "HasWarning": False,
        "Type": type_,
        "RateLimit": {},
        "Data": {},
    }
    if param:
        body["ParamWithError"] = param
    return body


PATH_NOT_FOUND = error_body("Path does not exist", 0)
AUTH_REQUIRED = error_body("You need a valid auth key or api key to access this endpoint", 1)
HISTORY_LIMIT = error_body("Minute data is only available for the last 7 days.", 2, "toTs")


class EmulatorError(Exception):
    """A request the API answers with an error body."""

    def __init__(self, body: Row) -> None:
        super().__init__(body["Message"])
        self.body = body


class Dataset:
    """One symbol's real minute candles, shifted by ``shift`` seconds."""

    def __init__(self, symbol: str, rows: list[Row], shift: int = 0) -> None:
        self.symbol = symbol
        self.rows = rows
        self.shift = shift
        self.first = rows[0]["time"] + shift
        self.last = rows[-1]["time"] + shift

    @classmethod
    def from_file(cls, symbol: str, path: Path, first_time: int) -> Dataset:
        """Load a CryptoCompare v2/v1 response or bare array; its first candle at ``first_time``."""
        doc = orjson.loads(path.read_bytes())
        rows = doc if isinstance(doc, list) else doc["Data"]
        rows = rows["Data"] if isinstance(rows, dict) else rows
        rows = sorted(rows, key=lambda r: r["time"])
        return cls(symbol, rows, shift=first_time - rows[0]["time"])

    @classmethod
    def from_parquet(
        cls, symbol: str, path: Path, since: int, days: float, first_time: int
    ) -> Dataset:
        """``days`` of the shared Parquet layout from unix ``since``; its first candle at
        ``first_time``. Rows get the API's conversion fields, as the recorded responses have."""
        import pandas as pd

        filters = [("time", ">=", since), ("time", "<", since + int(days * 86400))]
        frame = pd.read_parquet(path, filters=filters).sort_values("time")
        extra = {"conversionType": "direct", "conversionSymbol": ""}
        rows = [{**r, "time": int(r["time"]), **extra} for r in frame.to_dict("records")]
        if not rows:
            raise ValueError(f"{path.name} holds no candles from {since} for {days} days")
        return cls(symbol, rows, shift=first_time - rows[0]["time"])

    def moved(self, first_time: int) -> Dataset:
        """The same candles, the first one at ``first_time``."""
        return Dataset(self.symbol, self.rows, self.shift + first_time - self.first)

    def row(self, t: int) -> Row:
        """The candle opening at ``t`` (a zero candle before the series begins)."""
        i = (t - self.first) // MINUTE
        if i < 0 or i >= len(self.rows):
            return {"time": t, **dict.fromkeys(PRICE_FIELDS, 0)}
        return {**self.rows[i], "time": t}


def floor_minute(t: float) -> int:
    return int(t // MINUTE) * MINUTE


def open_candle(row: Row, progress: float) -> Row:
    """The still-open minute: price part-way from open to close, volume so far."""
    if not row.get("open"):
        return row
    close = round(row["open"] + (row["close"] - row["open"]) * progress, 8)
    return {
        **row,
        "close": close,
        "high": max(row["open"], close),
        "low": min(row["open"], close),
        "volumefrom": round(row["volumefrom"] * progress, 8),
        "volumeto": round(row["volumeto"] * progress, 8),
    }


def minute_rows(ds: Dataset, now: float, limit: int, to_ts: int | None) -> list[Row]:
    """``limit + 1`` minute rows ending at ``to_ts`` (inclusive), within the last 7 days."""
    current = floor_minute(now)
    end = floor_minute(min(to_ts, now)) if to_ts is not None else current
    oldest = current - WEEK
    if end < oldest:
        raise EmulatorError(HISTORY_LIMIT)
    start = max(oldest, end - max(0, min(limit, MAX_LIMIT)) * MINUTE)
    rows = [ds.row(t) for t in range(start, end + MINUTE, MINUTE)]
    if end == current:
        rows[-1] = open_candle(rows[-1], (now - current) / MINUTE)
    return rows


def hour_rows(ds: Dataset, now: float, limit: int, to_ts: int | None) -> list[Row]:
    """``limit + 1`` hour rows aggregated from the minutes (hours are kept for years)."""
    current = floor_minute(now)
    end_hour = int(min(to_ts if to_ts is not None else now, now) // HOUR) * HOUR
    start = end_hour - max(0, min(limit, MAX_LIMIT)) * HOUR
    out = []
    for h in range(start, end_hour + HOUR, HOUR):
        minutes = [ds.row(t) for t in range(h, min(h + HOUR, current + MINUTE), MINUTE)]
        out.append(aggregate(h, minutes))
    return out


def aggregate(t: int, minutes: list[Row]) -> Row:
    """One candle from consecutive minutes (zeros when there is no data)."""
    live = [m for m in minutes if m.get("open")]
    if not live:
        return {"time": t, **dict.fromkeys(PRICE_FIELDS, 0)}
    return {
        "time": t,
        "high": max(m["high"] for m in live),
        "low": min(m["low"] for m in live),
        "open": live[0]["open"],
        "volumefrom": round(sum(m["volumefrom"] for m in live), 8),
        "volumeto": round(sum(m["volumeto"] for m in live), 8),
        "close": live[-1]["close"],
        "conversionType": "direct",
        "conversionSymbol": "",
    }


def envelope(rows: list[Row], version: int) -> Row:
    """Wrap rows in the v2 (``Data.Data``) or v1 (``Data`` list) success envelope."""
    time_from = rows[0]["time"] if rows else 0
    time_to = rows[-1]["time"] if rows else 0
    if version == 1:
        return {
            "Response": "Success",
            "Type": 100,
            "Aggregated": False,
            "TimeTo": time_to,
            "TimeFrom": time_from,
            "FirstValueInArray": True,
            "ConversionType": {"type": "direct", "conversionSymbol": ""},
            "Data": rows,
            "RateLimit": {},
            "HasWarning": False,
        }
    data = {"Aggregated": False, "TimeFrom": time_from, "TimeTo": time_to, "Data": rows}
    return {
        "Response": "Success",
        "Message": "",
        "HasWarning": False,
        "Type": 100,
        "RateLimit": {},
        "Data": data,
    }


@dataclass
class SimClock:
    """Simulated "now": ``start`` plus ``speed`` simulated seconds per real second."""

    start: float
    speed: float = 1.0
    _real0: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return self.start + (time.monotonic() - self._real0) * self.speed

    def set(self, speed: float | None = None, advance_s: float = 0.0) -> None:
        """Change the speed (from now on) and/or jump ahead."""
        self.start, self._real0 = self.now() + advance_s, time.monotonic()
        if speed is not None:
            self.speed = speed


TRANSPORT_FAULTS = ("http_500", "http_429", "rate_limit", "malformed", "slow")
ROW_FAULTS = ("duplicate", "out_of_order", "null_fields")
FAULT_KINDS = TRANSPORT_FAULTS + ROW_FAULTS


@dataclass
class Faults:
    """Fault probabilities per response (seeded), and a record of what was injected."""

    probabilities: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    slow_s: float = 3.0
    retry_after_s: float = 1.0
    injected: dict[str, int] = field(default_factory=dict)
    duplicated: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = set(self.probabilities) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        self.rng = random.Random(self.seed)

    def _hit(self, kind: str) -> bool:
        if self.rng.random() < self.probabilities.get(kind, 0.0):
            self.injected[kind] = self.injected.get(kind, 0) + 1
            return True
        return False

    def transport_fault(self) -> str | None:
        """At most one of the response-level faults for this request."""
        return next((k for k in TRANSPORT_FAULTS if self._hit(k)), None)

    def mutate(self, symbol: str, rows: list[Row], has_open: bool) -> list[Row]:
        """Apply the row-level faults to the closed rows (the open row stays last)."""
        closed = len(rows) - 1 if has_open else len(rows)
        if closed < 2:
            return rows
        rows = list(rows)
        last = rows[closed - 1]
        if self._hit("out_of_order"):
            i = self.rng.randrange(max(0, closed - 5), closed - 1)
            rows[i], rows[i + 1] = rows[i + 1], rows[i]
        if self._hit("duplicate"):
            rows.insert(closed, dict(last))
            self.duplicated.append((symbol, last["time"]))
        if self._hit("null_fields"):
            bad = dict(last)
            victim = self.rng.choice(("time", *PRICE_FIELDS))
            if self.rng.random() < 0.5:
                bad.pop(victim)
            else:
                bad[victim] = None
            rows.insert(closed, bad)
        return rows


@dataclass
class RateLimits:
    """The API's rate limit, enforced on real (monotonic) time over sliding windows.

    ``max_calls`` maps a window name of the API's ``RateLimit`` object (second, minute, hour)
    to its cap; a call over any cap is refused with the Type 99 body, counting the calls made in
    each window, as the real API does. Refused calls count too (the API counts them).

    >>> rl = RateLimits({"second": 2})
    >>> [rl.admit(now=0.0) is None for _ in range(3)], rl.refused
    ([True, True, False], 1)
    >>> rl.admit(now=1.5) is None
    True
    """

    max_calls: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    calls: deque[float] = field(default_factory=deque)

    WINDOWS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}

    def __post_init__(self) -> None:
        unknown = set(self.max_calls) - set(self.WINDOWS)
        if unknown:
            raise ValueError(f"unknown rate windows {sorted(unknown)}; known: {list(self.WINDOWS)}")

    def admit(self, now: float | None = None) -> Row | None:
        """None when the call is within every cap, else the rate-limit error body."""
        if not self.max_calls:
            return None
        now = time.monotonic() if now is None else now
        longest = max(self.WINDOWS[w] for w in self.max_calls)
        while self.calls and self.calls[0] <= now - longest:
            self.calls.popleft()
        made = {w: sum(1 for t in self.calls if t > now - s) for w, s in self.WINDOWS.items()}
        self.calls.append(now)
        if all(made[w] < cap for w, cap in self.max_calls.items()):
            return None
        self.refused += 1
        limits = {"calls_made": {w: n + 1 for w, n in made.items()}, "max_calls": self.max_calls}
        return {**RATE_LIMIT_BODY, "RateLimit": limits}


def malformed(body: bytes) -> bytes:
    """A truncated body, as a proxy cutting the connection would leave it."""
    return body[: max(1, math.floor(len(body) * 0.6))]
