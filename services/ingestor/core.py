"""Pure ingestion logic: parse CryptoCompare envelopes, pick new closed candles, plan pages.

No HTTP and no Kafka here: the client and the app feed plain data in. Rows stay exactly as
received (dicts); only ``time`` is read, to decide what is new. A row whose ``time`` is unusable is
passed on untouched, because judging rows is the validator's job.
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from services.common.errors import ConfigError
from services.common.schemas import RawBatch
from services.ingestor.errors import (
    ApiError,
    AuthRequired,
    HistoryUnavailable,
    MalformedResponse,
    RateLimited,
)

Row = dict[str, Any]
MINUTE = 60
REAL_API_HOST = "min-api.cryptocompare.com"
#: CryptoCompare's rate-limit windows, in the order they overflow.
RATE_WINDOWS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "month": 30 * 86400}
_PRICE_FIELDS = ("open", "high", "low", "close", "volumefrom", "volumeto")


@dataclass(frozen=True)
class Page:
    """One successful response: its rows as received, and the envelope's TimeFrom/TimeTo."""

    rows: list[Row]
    time_from: int | None = None
    time_to: int | None = None


def parse_body(body: bytes) -> Page:
    """Parse a v1 (``Data`` is the list) or v2 (``Data.Data``) envelope, or raise.

    >>> parse_body(b'{"Response":"Success","Data":{"TimeFrom":0,"TimeTo":60,'
    ...            b'"Data":[{"time":0},{"time":60}]}}').rows
    [{'time': 0}, {'time': 60}]
    >>> parse_body(b'{"Response":"Success","TimeFrom":0,"TimeTo":0,"Data":[{"time":0}]}').time_to
    0
    >>> parse_body(b'{"Response":"Error","Message":"over","Type":99,"Data":{}}')
    Traceback (most recent call last):
    ...
    services.ingestor.errors.RateLimited: over
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedResponse(f"invalid JSON ({len(body)} bytes): {exc}") from exc
    if not isinstance(doc, dict):
        raise MalformedResponse(f"expected a JSON object, got {type(doc).__name__}")
    if doc.get("Response") == "Error":
        raise api_error(doc)
    data = doc.get("Data")
    envelope = doc
    if isinstance(data, dict) and "Data" in data:
        envelope, data = data, data["Data"]
    if data == {} or data is None:
        data = []
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise MalformedResponse("Data is neither a list of rows nor a {Data: [...]} object")
    return Page(data, _int_or_none(envelope.get("TimeFrom")), _int_or_none(envelope.get("TimeTo")))


def api_error(doc: dict[str, Any]) -> ApiError:
    """Map a ``"Response":"Error"`` body to its exception (Type 99 carries the wait).

    >>> type(api_error({"Message": "You need a valid auth key or api key", "Type": 1})).__name__
    'AuthRequired'
    >>> type(api_error({"Message": "Minute data is only available for the last 7 days"})).__name__
    'HistoryUnavailable'
    """
    message = str(doc.get("Message") or "unknown API error")
    kind = doc.get("Type")
    if kind == 99 or "rate limit" in message.lower():
        return RateLimited(message, retry_after=rate_limit_wait(doc.get("RateLimit")))
    if "last 7 days" in message or "only available" in message:
        return HistoryUnavailable(message)
    if kind == 1 or "api key" in message.lower() or "auth key" in message.lower():
        return AuthRequired(message)
    return ApiError(message)


def rate_limit_wait(rate_limit: Any) -> float:
    """Seconds until the shortest overflowed window has passed (1 s when unknown).

    >>> rate_limit_wait({"calls_made": {"second": 3, "minute": 300},
    ...                  "max_calls": {"second": 20, "minute": 300}})
    60.0
    >>> rate_limit_wait({})
    1.0
    """
    if isinstance(rate_limit, dict):
        made, cap = rate_limit.get("calls_made") or {}, rate_limit.get("max_calls") or {}
        for window, seconds in RATE_WINDOWS.items():
            m, c = made.get(window), cap.get(window)
            if isinstance(m, int) and isinstance(c, int) and m >= c:
                return float(seconds)
    return 1.0


def parse_retry_after(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from ``now``.

    >>> parse_retry_after("3", 0.0)
    3.0
    >>> parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", 4.0)
    6.0
    >>> parse_retry_after("soon", 0.0) is None
    True
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def row_time(row: Row) -> int | None:
    """The row's open time if it is a usable integer, else None (a bad row)."""
    return _int_or_none(row.get("time"))


def valid_times(rows: Sequence[Row]) -> list[int]:
    """The usable ``time`` values of ``rows``."""
    return [t for t in map(row_time, rows) if t is not None]


def is_zero_row(row: Row) -> bool:
    """True for the all-zero rows the API returns before a coin's history begins."""
    return all(row.get(f) == 0 for f in _PRICE_FIELDS)


def drop_prehistory(rows: list[Row]) -> list[Row]:
    """Drop the leading all-zero rows (rows oldest first).

    >>> drop_prehistory([{"time": 0, "open": 0, "high": 0, "low": 0, "close": 0,
    ...                   "volumefrom": 0, "volumeto": 0}, {"time": 60, "open": 1}])
    [{'time': 60, 'open': 1}]
    """
    for i, row in enumerate(rows):
        if not is_zero_row(row):
            return rows[i:]
    return []


def select_new(rows: Sequence[Row], after: int | None, open_time: int | None) -> list[Row]:
    """Closed rows newer than the checkpoint ``after``, in received order; bad rows kept.

    ``open_time`` is the still-open minute (the newest row of an un-paged poll): it and anything
    newer is dropped. Rows without a usable time are kept, so the validator sees them.

    >>> rows = [{"time": 60}, {"time": 120}, {"time": None}, {"time": 180}, {"time": 240}]
    >>> select_new(rows, after=60, open_time=240)
    [{'time': 120}, {'time': None}, {'time': 180}]
    """
    out = []
    for row in rows:
        t = row_time(row)
        if t is None or ((after is None or t > after) and (open_time is None or t < open_time)):
            out.append(row)
    return out


@dataclass(frozen=True)
class PageRequest:
    """The next page to ask for: ``limit`` rows before ``to_ts`` (inclusive), N+1 returned."""

    to_ts: int
    limit: int


def page_back(oldest: int, after: int, page_limit: int = 2000) -> PageRequest | None:
    """The page just before ``oldest`` that reaches back towards ``after`` (None: no gap).

    ``toTs`` is inclusive, so it is ``oldest - 60``; ``limit=N`` returns N+1 rows, so the limit
    is one less than the rows missing.

    >>> page_back(oldest=600, after=240)
    PageRequest(to_ts=540, limit=4)
    >>> page_back(oldest=600, after=540) is None
    True
    >>> page_back(oldest=10**6, after=0, page_limit=2000).limit
    2000
    """
    to_ts = oldest - MINUTE
    missing = (to_ts - after) // MINUTE
    if missing <= 0:
        return None
    return PageRequest(to_ts=to_ts, limit=max(1, min(page_limit, missing - 1)))


def chunks(rows: Sequence[Row], size: int) -> Iterator[list[Row]]:
    """Consecutive slices of at most ``size`` rows.

    >>> [len(c) for c in chunks([{}] * 5, 2)]
    [2, 2, 1]
    """
    for i in range(0, len(rows), size):
        yield list(rows[i : i + size])


def encode_batches(
    symbol: str, rows: Sequence[Row], source: str, fetched_at: float, size: int
) -> list[bytes]:
    """RawBatch messages of at most ``size`` candles, encoded, with deterministic ids.

    The envelope is validated by :class:`RawBatch`; the candles (as received, unvalidated by
    design) are spliced in, which gives exactly ``RawBatch.to_bytes()`` at a fraction of its cost.

    >>> [RawBatch.from_bytes(b).batch_id for b in encode_batches(
    ...     "BTC", [{"time": 0}, {"time": 60}], "live", 1.0, 1)]
    ['BTC:0:0', 'BTC:60:60']
    """
    out = []
    for chunk in chunks(rows, size):
        head = RawBatch(
            batch_id=RawBatch.make_id(symbol, chunk),
            symbol=symbol,
            source=source,  # type: ignore[arg-type]
            fetched_at=fetched_at,
            candles=[],
        ).model_dump(mode="json")
        head["candles"] = chunk
        out.append(orjson.dumps(head))
    return out


def next_tick(now: float, interval_s: float, delay_s: float) -> float:
    """The next ``k * interval_s + delay_s`` after ``now``: the aligned live schedule.

    >>> next_tick(125.0, 60, 2.0), next_tick(122.5, 60, 2.0), next_tick(0.7, 0.3, 0.0)
    (182.0, 182.0, 0.8999999999999999)
    """
    k = math.floor((now - delay_s) / interval_s) + 1
    return k * interval_s + delay_s


def lead_time(observed: Sequence[float], retry_s: float, floor_s: float) -> float:
    """How long after a tick to poll first: a retry step before the quickest recent showing of
    a closed minute (so the first try usually just misses or just hits), never under ``floor_s``.

    >>> lead_time([], 0.25, 0.05), lead_time([2.1, 2.4], 0.25, 0.05), lead_time([0.1], 0.25, 0.05)
    (0.05, 1.85, 0.05)
    """
    return max(floor_s, min(observed) - retry_s) if observed else floor_s


def closing_minute(tick: float) -> int:
    """The minute that ended at (or just before) ``tick``: the one an aligned poll waits for.

    >>> closing_minute(180.0), closing_minute(182.5)
    (120, 120)
    """
    return int(tick // MINUTE) * MINUTE - MINUTE


def newest_time(rows: Sequence[Row]) -> int | None:
    """The newest usable time in ``rows`` (the checkpoint after publishing them)."""
    times = valid_times(rows)
    return max(times) if times else None


def lag_seconds(newest: int, now: float, interval_s: int = MINUTE) -> float:
    """Now minus the close of the newest published candle.

    >>> lag_seconds(newest=0, now=90.0)
    30.0
    """
    return now - (newest + interval_s)


def parse_speed(value: str | float) -> float | None:
    """``max`` (None: as fast as the broker takes it) or a positive multiple of real time.

    >>> parse_speed("max") is None, parse_speed("600")
    (True, 600.0)
    """
    if isinstance(value, str) and value.strip().lower() == "max":
        return None
    speed = float(value)
    if speed <= 0:
        raise ConfigError(f"replay speed must be 'max' or > 0, got {value!r}")
    return speed


_QUOTES = ("USDT", "USDC", "BUSD", "USD", "EUR")


def symbol_from_filename(path: Path) -> str | None:
    """The base symbol a shared-data file name implies (``btcusdt_1m_...`` -> ``BTC``).

    >>> symbol_from_filename(Path("btcusdt_1m_2023-2024.parquet"))
    'BTC'
    >>> symbol_from_filename(Path("cc_histominute_ETHUSD_2020-03-09_7d.json"))
    'ETH'
    """
    for token in re.split(r"[_\-.]", path.name.upper()):
        for quote in _QUOTES:
            base = token.removesuffix(quote)
            if base != token and re.fullmatch(r"[A-Z0-9]{2,10}", base):
                return base
    return None


def require_api_key(base_url: str, api_key: str | None) -> None:
    """Refuse the real API without a key: since May 2026 it needs a subscription key."""
    if not api_key and urlsplit(base_url).hostname == REAL_API_HOST:
        raise ConfigError(
            "CryptoCompare's API needs a key since 21 May 2026: "
            "set INGESTOR_CRYPTOCOMPARE_API_KEY. "
            "Without one, replay real history from files "
            "(`volstream ingest replay --file ../shared/data/btcusdt_1m_2023-2024.parquet`) "
            "or run the local emulator (`volstream emulator --port 8765` and "
            "INGESTOR_CRYPTOCOMPARE_BASE_URL=http://127.0.0.1:8765)."
        )
