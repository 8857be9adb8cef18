"""The pure part of ``volstream data fetch``: which archives, their paths, checksums, CSV parsing.

Binance publishes 1-minute klines as zips of a header-less 12-column CSV, one per month
(``data/spot/monthly/klines/<PAIR>/1m/<PAIR>-1m-<YYYY-MM>.zip``) and one per day
(``data/spot/daily/klines/...-<YYYY-MM-DD>.zip``), each beside a ``.CHECKSUM`` file in
``sha256sum`` format. Open times are milliseconds up to 2024 and microseconds from 2025-01-01;
the unit is read from the values of each file (never from its date), then checked against the
file's own period, so a wrong guess is an error, not a shifted series::

    >>> plan_archives("BTCUSDT", "2024-11", "2024-12", today=date(2024, 12, 4))
    ... # doctest: +NORMALIZE_WHITESPACE
    [Archive(pair='BTCUSDT', period='2024-11'), Archive(pair='BTCUSDT', period='2024-12-01'),
     Archive(pair='BTCUSDT', period='2024-12-02'), Archive(pair='BTCUSDT', period='2024-12-03')]
    >>> Archive("BTCUSDT", "2025-01").path
    'data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2025-01.zip'
    >>> time_unit([1735689600000000, 1735689660000000])   # 2025-01-01 00:00 in microseconds
    1000000
    >>> lake_symbol("ETHUSDT"), lake_symbol("BTCUSDT", {"BTCUSDT": "XBT"})
    ('ETH', 'XBT')
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from services.common.registry import sha256

#: The archive's 12 CSV columns, in order (Binance's names).
KLINE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
#: The shared layout (``../shared/data/btcusdt_1m_2023-2024.parquet``): CryptoCompare's names.
SHARED_COLUMNS = ("time", "open", "high", "low", "close", "volumefrom", "volumeto")
SHARED_SCHEMA = pa.schema([("time", pa.int64())] + [(c, pa.float64()) for c in SHARED_COLUMNS[1:]])
_RENAME = {"open_time": "time", "volume": "volumefrom", "quote_volume": "volumeto"}
#: Quote assets stripped from a pair to get the project's symbol, longest first (BTCUSDT -> BTC).
DEFAULT_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USD")
MINUTE = 60
#: Open-time units by magnitude: a 2020s instant is ~1.7e9 s, ~1.7e12 ms, ~1.7e15 us.
_UNITS = ((10**14, 1_000_000), (10**11, 1_000), (0, 1))
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class DataFetchError(Exception):
    """Root of the fetch errors; ``str()`` names the archive file concerned."""


class ChecksumMismatch(DataFetchError):
    """The zip's SHA-256 is not the one published beside it."""


class MissingArchive(DataFetchError):
    """The archive (or its checksum) is not published (HTTP 404)."""


class BadArchive(DataFetchError):
    """The zip is truncated or unreadable, or its CSV is not 1-minute klines of its period."""


@dataclass(frozen=True, order=True)
class Archive:
    """One published zip: a pair and a period (``YYYY-MM`` monthly, ``YYYY-MM-DD`` daily)."""

    pair: str
    period: str

    @property
    def daily(self) -> bool:
        return len(self.period) == 10

    @property
    def name(self) -> str:
        return f"{self.pair}-1m-{self.period}.zip"

    @property
    def path(self) -> str:
        """The path under the base URL (and under the local cache)."""
        kind = "daily" if self.daily else "monthly"
        return f"data/spot/{kind}/klines/{self.pair}/1m/{self.name}"

    @property
    def bounds(self) -> tuple[int, int]:
        """[start, end) of the period in unix seconds."""
        start = datetime.fromisoformat(self.period if self.daily else f"{self.period}-01")
        start = start.replace(tzinfo=UTC)
        if self.daily:
            end = start + timedelta(days=1)
        else:
            end = (start + timedelta(days=32)).replace(day=1)
        return int(start.timestamp()), int(end.timestamp())


def parse_month(text: str) -> date:
    """``YYYY-MM`` to the first day of that month; a clear ValueError otherwise."""
    if not _MONTH.match(text):
        raise ValueError(f"expected a month as YYYY-MM, got {text!r}")
    return date(int(text[:4]), int(text[5:]), 1)


def plan_archives(pair: str, start: str, end: str, today: date) -> list[Archive]:
    """Monthly archives for whole past months, daily ones for the current month's complete days.

    Months after the current one are refused; the current month's days run up to yesterday (a day
    is published once it is over).
    """
    first, last, this_month = parse_month(start), parse_month(end), today.replace(day=1)
    if last < first:
        raise ValueError(f"--from {start} is after --to {end}")
    if last > this_month:
        raise ValueError(f"--to {end} is in the future (today is {today.isoformat()})")
    out, month = [], first
    while month <= last:
        if month < this_month:
            out.append(Archive(pair, month.strftime("%Y-%m")))
        else:
            out += [
                Archive(pair, (month + timedelta(days=d)).isoformat())
                for d in range((today - month).days)
            ]
        month = (month + timedelta(days=32)).replace(day=1)
    return out


def previous_month(today: date) -> str:
    """``YYYY-MM`` of the month before ``today``'s (its archive may not be published yet)."""
    return (today.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")


def days_of(archive: Archive) -> list[Archive]:
    """The daily archives covering a monthly one."""
    start, end = archive.bounds
    return [
        Archive(archive.pair, datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d"))
        for t in range(start, end, 86400)
    ]


def lake_symbol(
    pair: str, overrides: Mapping[str, str] | None = None, quotes: Iterable[str] = DEFAULT_QUOTES
) -> str:
    """The project's symbol for a Binance pair: an override, else the pair minus its quote asset."""
    pair = pair.upper()
    if overrides and pair in overrides:
        return overrides[pair].upper()
    for quote in sorted(quotes, key=len, reverse=True):
        if pair.endswith(quote) and len(pair) > len(quote):
            return pair[: -len(quote)]
    raise ValueError(f"no known quote asset at the end of {pair}; map it with PAIR=SYMBOL")


def checksum_line(data: bytes, name: str) -> str:
    """The ``.CHECKSUM`` file's content, as ``sha256sum`` writes it."""
    return f"{sha256(data)}  {name}\n"


def parse_checksum(text: str, archive: Archive) -> str:
    """The hex digest from a ``.CHECKSUM`` file (``<sha256>  <file name>``)."""
    fields = text.split()
    if not fields or not re.fullmatch(r"[0-9a-fA-F]{64}", fields[0]):
        raise BadArchive(f"{archive.name}.CHECKSUM is not a sha256sum line: {text[:80]!r}")
    if len(fields) > 1 and fields[1].lstrip("*") != archive.name:
        raise BadArchive(f"{archive.name}.CHECKSUM is for another file: {fields[1]}")
    return fields[0].lower()


def verify(data: bytes, expected: str, archive: Archive) -> None:
    """Raise ChecksumMismatch (naming the file) unless ``data`` hashes to ``expected``."""
    actual = sha256(data)
    if actual != expected:
        raise ChecksumMismatch(
            f"{archive.path}: checksum mismatch (published {expected}, downloaded {actual})"
        )


def time_unit(open_times: Iterable[int]) -> int:
    """Ticks per second of the open times (1, 1_000 or 1_000_000), from their magnitude."""
    values = np.asarray(list(open_times) if not isinstance(open_times, np.ndarray) else open_times)
    if values.size == 0:
        raise ValueError("no open times")
    units = {next(u for floor, u in _UNITS if v >= floor) for v in (values.min(), values.max())}
    if len(units) != 1:
        raise ValueError("open times mix units within one file")
    return units.pop()


def parse_klines(csv: bytes, archive: Archive) -> pd.DataFrame:
    """A kline CSV (header optional) to the shared layout, sorted, times in unix seconds."""
    first = csv.lstrip()[:1]
    header = bool(first) and not first.isdigit()
    types = {c: pa.float64() for c in KLINE_COLUMNS}
    types.update(open_time=pa.int64(), close_time=pa.int64(), count=pa.int64())
    try:
        table = pacsv.read_csv(
            io.BytesIO(csv),
            read_options=pacsv.ReadOptions(column_names=KLINE_COLUMNS, skip_rows=int(header)),
            convert_options=pacsv.ConvertOptions(
                column_types=types, include_columns=[*_RENAME, "open", "high", "low", "close"]
            ),
        )
    except pa.ArrowInvalid as exc:
        raise BadArchive(f"{archive.path}: not a 12-column kline CSV ({exc})") from exc
    frame = table.to_pandas().rename(columns=_RENAME)[list(SHARED_COLUMNS)]
    if frame.empty:
        raise BadArchive(f"{archive.path}: no candles")
    try:
        unit = time_unit(frame["time"].to_numpy())
    except ValueError as exc:
        raise BadArchive(f"{archive.path}: {exc}") from exc
    frame["time"] = frame["time"] // unit
    start, end = archive.bounds
    outside = ((frame["time"] < start) | (frame["time"] >= end)).sum()
    if outside or (frame["time"] % MINUTE).any():
        raise BadArchive(
            f"{archive.path}: open times are not 1-minute candles of {archive.period}"
            f" ({outside} outside it, unit read as 1/{unit} s)"
        )
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


def to_kline_csv(frame: pd.DataFrame, unit: int = 1_000) -> bytes:
    """Shared-layout candles as the archive's CSV (the inverse of ``parse_klines``).

    Columns the shared layout lacks (trades, taker volumes) are written as zeros.
    """
    t = frame["time"].to_numpy(np.int64) * unit
    zeros = np.zeros(len(frame), dtype=np.int64)
    cols = [
        t.astype(str),
        *(np.char.mod("%.8f", frame[c].to_numpy(np.float64)) for c in ("open", "high", "low")),
        np.char.mod("%.8f", frame["close"].to_numpy(np.float64)),
        np.char.mod("%.8f", frame["volumefrom"].to_numpy(np.float64)),
        (t + MINUTE * unit - 1).astype(str),
        np.char.mod("%.8f", frame["volumeto"].to_numpy(np.float64)),
        zeros.astype(str),
        np.char.mod("%.8f", zeros.astype(np.float64)),
        np.char.mod("%.8f", zeros.astype(np.float64)),
        zeros.astype(str),
    ]
    lines = [",".join(row) for row in zip(*cols, strict=True)]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def combine(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate periods into one sorted frame (later copies of a minute win), shared dtypes."""
    parts = list(frames)
    if not parts:
        return SHARED_SCHEMA.empty_table().to_pandas()
    merged = pd.concat(parts, ignore_index=True).drop_duplicates("time", keep="last")
    merged = merged.sort_values("time", kind="stable").reset_index(drop=True)
    return merged.astype({"time": "int64", **{c: "float64" for c in SHARED_COLUMNS[1:]}})


@dataclass(frozen=True)
class Summary:
    """One pair's result: candles, range, gaps (left as gaps) and the minutes they miss."""

    pair: str
    candles: int
    first: int | None
    last: int | None
    gaps: int
    missing_minutes: int


def summarize(pair: str, frame: pd.DataFrame) -> Summary:
    """Count the gaps (consecutive candles more than a minute apart) without filling them.

    >>> f = pd.DataFrame({"time": [0, 60, 300, 360]})
    >>> summarize("BTCUSDT", f).gaps, summarize("BTCUSDT", f).missing_minutes
    (1, 3)
    """
    if frame.empty:
        return Summary(pair, 0, None, None, 0, 0)
    steps = np.diff(frame["time"].to_numpy(np.int64))
    jumps = steps[steps > MINUTE]
    missing = int((jumps // MINUTE - 1).sum())
    first, last = int(frame["time"].iloc[0]), int(frame["time"].iloc[-1])
    return Summary(pair, len(frame), first, last, len(jumps), missing)
