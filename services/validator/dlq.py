"""Dead letters for operators, pure: summaries by reason, and what a replay re-submits.

A replay re-sends each dead letter to ticks.raw: a rejected message as it was (its original
bytes), rejected rows wrapped into one ``replay`` RawBatch per symbol. The validator's dedup makes
this idempotent for ticks.clean: a candle already emitted is only counted as a duplicate.

Revised and late minutes never enter the stream again (it keeps the first values); the batch path
takes them into the lake instead (:func:`lake_candles`, ``volstream dlq replay --to-lake``).

    >>> from services.common.schemas import DeadLetterReason
    >>> why = [DeadLetterReason(code="not_json", message="payload is not JSON")]
    >>> letter = DeadLetter.wrap(b"oops", stage="validator", reasons=why, source_topic="ticks.raw")
    >>> summarize([letter, letter]).by_reason
    Counter({'not_json': 2})
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from services.common.errors import SchemaError
from services.common.schemas import CANDLE_FIELDS, Candle, DeadLetter, RawBatch
from services.validator import rules as r
from services.validator.core import STAGE

#: The letters whose rows belong in the lake: sound candles the stream did not take.
LAKE_CODES = frozenset({r.REVISED, r.LATE})


@dataclass
class Summary:
    """Dead letters counted by primary reason code, stage and symbol."""

    total: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    by_stage: Counter[str] = field(default_factory=Counter)
    by_symbol: Counter[str] = field(default_factory=Counter)
    first_at: float | None = None
    last_at: float | None = None


def summarize(letters: Iterable[DeadLetter]) -> Summary:
    """Count dead letters by their first (primary) reason."""
    s = Summary()
    for d in letters:
        s.total += 1
        s.by_reason[d.codes[0]] += 1
        s.by_stage[d.stage] += 1
        s.by_symbol[d.symbol or "-"] += 1
        s.first_at = d.dead_at if s.first_at is None else min(s.first_at, d.dead_at)
        s.last_at = d.dead_at if s.last_at is None else max(s.last_at, d.dead_at)
    return s


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_summary(s: Summary) -> list[str]:
    """Lines for the terminal: totals, then one line per reason, most frequent first."""
    lines = [f"{s.total} dead letters, {_when(s.first_at)} .. {_when(s.last_at)}"]
    if not s.total:
        return lines
    lines.append(f"{'reason':<24} {'letters':>8}")
    lines += [f"{code:<24} {n:>8}" for code, n in s.by_reason.most_common()]
    lines.append("by stage:  " + ", ".join(f"{k} {v}" for k, v in s.by_stage.most_common()))
    lines.append("by symbol: " + ", ".join(f"{k} {v}" for k, v in s.by_symbol.most_common()))
    return lines


def render_example(d: DeadLetter, width: int = 160) -> list[str]:
    """One dead letter: where it came from, every reason, and the start of its payload."""
    where = f"{d.source_topic}[{d.source_partition}]@{d.source_offset}"
    head = f"{_when(d.dead_at)}  {d.stage}  {where}  symbol={d.symbol or '-'}"
    if d.event_time is not None:
        head += f"  time={d.event_time}"
    lines = [head]
    for why in d.reasons[:5]:
        at = "" if why.index is None else f" (row {why.index})"
        lines.append(f"    {why.code}{at}: {why.message}"[:width])
    if len(d.reasons) > 5:
        lines.append(f"    ... {len(d.reasons) - 5} more reasons")
    payload = d.payload()
    preview = payload[:width].decode("utf-8", "replace")
    lines.append(f"    payload ({len(payload)} bytes): {preview!r}"[: width + 40])
    return lines


def replay_records(
    letters: Iterable[DeadLetter], codes: set[str] | None = None, now: float | None = None
) -> tuple[list[tuple[bytes | None, bytes]], int]:
    """The (key, value) records to re-send to ticks.raw, and how many letters were skipped.

    Only the validator's own letters are replayed, filtered by primary reason when ``codes``.
    """
    out: list[tuple[bytes | None, bytes]] = []
    rows: dict[str, list[dict[str, Any]]] = {}
    skipped = 0
    for d in letters:
        if d.stage != STAGE or (codes and d.codes[0] not in codes):
            skipped += 1
            continue
        row = _row_of(d)
        if row is not None and d.symbol:
            rows.setdefault(d.symbol, []).append(row)
        else:
            key = d.key.encode() if d.key else (d.symbol.encode() if d.symbol else None)
            out.append((key, d.payload()))
    fetched = time.time() if now is None else now
    for symbol, candles in rows.items():
        out.append((symbol.encode(), replay_batch(symbol, candles, fetched).to_bytes()))
    return out, skipped


def _row_of(d: DeadLetter) -> dict[str, Any] | None:
    """The rejected row a row-level letter carries (None for a whole message)."""
    if not d.reasons or any(r.index is None for r in d.reasons):
        return None
    try:
        doc = orjson.loads(d.payload())
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) and "candles" not in doc else None


def replay_batch(symbol: str, candles: list[dict[str, Any]], fetched_at: float) -> RawBatch:
    """Rows of one symbol as a ``replay`` RawBatch, in time order (unsortable rows last)."""
    ordered = sorted(candles, key=lambda c: (not isinstance(c.get("time"), int), _t(c)))
    try:
        return RawBatch(
            batch_id=RawBatch.make_id(symbol, ordered),
            symbol=symbol,
            source="replay",
            fetched_at=fetched_at,
            candles=ordered,
        )
    except ValueError as exc:  # pydantic's error, e.g. a symbol that is not a symbol
        raise SchemaError(f"cannot rebuild a RawBatch for {symbol!r}: {exc}") from exc


def _t(c: dict[str, Any]) -> int:
    t = c.get("time")
    return t if isinstance(t, int) else 0


def lake_candles(
    letters: Iterable[DeadLetter], codes: set[str] | None = None
) -> tuple[list[Candle], int]:
    """The candles the validator's ``revised`` / ``late`` letters carry, oldest letter first (so
    the lake's "newest copy wins" keeps the latest revision); and how many letters were skipped.

    >>> from services.common.schemas import DeadLetterReason
    >>> row = {"time": 60, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volumefrom": 0,
    ...        "volumeto": 0}
    >>> why = [DeadLetterReason(code="revised", message="other values", index=0)]
    >>> d = DeadLetter.wrap(orjson.dumps(row), 0, stage="validator", reasons=why,
    ...                     source_topic="ticks.raw", symbol="BTC", event_time=60)
    >>> candles, skipped = lake_candles([d])
    >>> [(c.symbol, c.time, c.close) for c in candles], skipped
    ([('BTC', 60, 1.5)], 0)
    """
    wanted = codes or LAKE_CODES
    out: list[tuple[float, Candle]] = []
    skipped = 0
    for d in letters:
        row = _row_of(d) if d.stage == STAGE and d.codes[0] in wanted and d.symbol else None
        if row is None:
            skipped += 1
            continue
        try:
            candle = Candle.from_dict({"symbol": d.symbol, **{f: row[f] for f in CANDLE_FIELDS}})
        except (SchemaError, KeyError):
            skipped += 1
            continue
        out.append((d.dead_at, candle))
    out.sort(key=lambda pair: pair[0])
    return [c for _, c in out], skipped
