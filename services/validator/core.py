"""The validator's pure core: one ticks.raw message in, a :class:`Verdict` out. No Kafka here.

Every record of a batch ends in exactly one bucket (conservation)::

    clean + dead-lettered + dropped + duplicates == records in the batch

A message that is not JSON or not a RawBatch has no records; it becomes one dead letter with its
original bytes. A batch that fails the gate is one dead letter holding every record. Clean records
are deduplicated against the symbol's :class:`Mark` (the last emitted candle), so a replayed batch
emits nothing twice.

    >>> rows = [{"time": 60 * i, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
    ...          "volumefrom": 0.0, "volumeto": 0.0} for i in (1, 2, 5)]
    >>> raw = RawBatch(batch_id="BTC:60:300", symbol="BTC", source="replay", fetched_at=9.0,
    ...                candles=rows).to_bytes()
    >>> v = judge(raw, Source("ticks.raw", 0, 7), None, Rules(), now=1000.0)
    >>> v.outcome, len(v.clean), v.mark, v.gap_minutes
    ('accepted', 3, Mark(time=300, close=1.0), 2.0)
    >>> again = judge(raw, Source("ticks.raw", 0, 8), v.mark, Rules(), now=1000.0)
    >>> again.outcome, len(again.clean), again.duplicates, again.balanced()
    ('accepted', 0, 3, True)
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from services.common.schemas import (
    DeadLetter,
    DeadLetterReason,
    RawBatch,
    describe_validation_error,
)
from services.validator import rules as r

STAGE = "validator"
Policy = Literal["dead-letter", "drop"]
#: How many row reasons a whole-batch dead letter lists (the payload keeps every row anyway).
MAX_ROW_REASONS = 20


@dataclass(frozen=True)
class Rules:
    """The gate's thresholds (see :mod:`services.validator.settings` for their env vars)."""

    max_invalid_fraction: float = 0.01
    min_rows: int = 1
    max_log_return: float = 0.15
    max_staleness_s: float = 900.0
    policy: Policy = "dead-letter"


@dataclass(frozen=True)
class Mark:
    """The last candle emitted for a symbol: the dedup watermark and the jump reference."""

    time: int
    close: float


@dataclass(frozen=True)
class Source:
    """Where a message came from, copied onto its dead letters."""

    topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None


@dataclass
class Verdict:
    """What to do with one message: outputs, counts by (outcome, reason), the new mark, gaps."""

    outcome: Literal["accepted", "rejected", "malformed"]
    records: int = 0
    symbol: str | None = None
    batch_id: str | None = None
    clean: list[bytes] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    mark: Mark | None = None
    gaps: list[tuple[int, int, float]] = field(default_factory=list)

    @property
    def gap_minutes(self) -> float:
        """Minutes of missing candles between accepted rows (and since the previous mark)."""
        return sum(g[2] for g in self.gaps)

    @property
    def duplicates(self) -> int:
        return self.counts[("duplicate", "duplicate")]

    def total(self, outcome: str) -> int:
        """Records with this outcome (clean, dead_letter, dropped, duplicate)."""
        return sum(n for (o, _), n in self.counts.items() if o == outcome)

    def balanced(self) -> bool:
        """Conservation: every record is in exactly one bucket."""
        return sum(self.counts.values()) == self.records and self.total("clean") == len(self.clean)


def encode_candle(symbol: str, row: dict[str, Any], ingested_at: float | None) -> bytes:
    """A Candle's JSON bytes, built directly (5x faster than the model; same bytes).

    >>> encode_candle("BTC", {"time": 60, "open": 1, "high": 2, "low": 1, "close": 2,
    ...                       "volumefrom": 0, "volumeto": 0}, None)[:44]
    b'{"schema_version":1,"symbol":"BTC","time":60'
    """
    return orjson.dumps(
        {
            "schema_version": 1,
            "symbol": symbol,
            "time": row["time"],
            "open": float(row["open"]),
            "high": float(row["high"]),
            "low": float(row["low"]),
            "close": float(row["close"]),
            "volumefrom": float(row["volumefrom"]),
            "volumeto": float(row["volumeto"]),
            "ingested_at": ingested_at,
        }
    )


def row_bytes(row: dict[str, Any]) -> bytes:
    """A row as JSON, keeping NaN/Infinity tokens (orjson would turn them into null)."""
    try:
        return json.dumps(row, separators=(",", ":")).encode()
    except (ValueError, RecursionError):  # pathological nesting: keep a readable trace
        return repr(row).encode()


def parse(payload: bytes) -> RawBatch | DeadLetterReason:
    """The RawBatch, or why the payload is not one (lenient JSON: NaN reaches the row rules)."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        try:
            doc = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            return r.reason(r.NOT_JSON, f"payload is not JSON: {str(exc)[:200]}")
    try:
        return _validate(doc)
    except ValidationError as exc:
        return r.reason(r.NOT_RAW_BATCH, describe_validation_error("RawBatch", exc)[:2000])


def _validate(doc: Any) -> RawBatch:
    """RawBatch validation without the per-row walk when ``candles`` is plainly a list of
    objects (each row is judged afterwards anyway): a third of the parse cost."""
    rows = doc.get("candles") if isinstance(doc, dict) else None
    if isinstance(rows, list) and all(type(x) is dict for x in rows):
        head = RawBatch.model_validate({**doc, "candles": []})
        return head.model_copy(update={"candles": rows})
    return RawBatch.model_validate(doc)


def judge(payload: bytes, source: Source, mark: Mark | None, rules: Rules, now: float) -> Verdict:
    """The full verdict on one ticks.raw message (never raises on bad input)."""
    batch = parse(payload)
    if isinstance(batch, DeadLetterReason):
        return malformed(payload, source, batch)
    return judge_batch(batch, payload, source, mark, rules, now)


def malformed(payload: bytes, source: Source, why: DeadLetterReason) -> Verdict:
    """One dead letter around bytes that are not a RawBatch; there are no records to count."""
    return Verdict(outcome="malformed", dead_letters=[_letter(payload, source, [why])])


def _letter(
    payload: bytes,
    source: Source,
    reasons: list[DeadLetterReason],
    symbol: str | None = None,
    event_time: int | None = None,
) -> DeadLetter:
    return DeadLetter.wrap(
        payload,
        stage=STAGE,
        reasons=reasons,
        source_topic=source.topic,
        source_partition=source.partition,
        source_offset=source.offset,
        key=source.key,
        symbol=symbol,
        event_time=event_time,
    )


class _Pass:
    """One pass over a batch's rows: sorts each into clean, bad or duplicate, in order.

    Also notes what the gate needs (time order, newest time), so rows are walked only once.
    """

    def __init__(self, batch: RawBatch, mark: Mark | None, rules: Rules, now: float) -> None:
        self.batch, self.rules, self.now = batch, rules, now
        self.t: int | None = mark.time if mark else None
        self.close = mark.close if mark else 0.0
        self.clean: list[bytes] = []
        self.bad: list[tuple[int, list[DeadLetterReason]]] = []
        self.duplicates = 0
        self.gaps: list[tuple[int, int, float]] = []
        self.last_row: dict[str, Any] | None = None  # the last clean row of this batch
        self.seen: int | None = None  # the last usable time seen, clean or not
        self.backwards: tuple[int, int] | None = None
        # close / previous close inside this band is a plausible one-interval move (a hair
        # narrower than the exact rule, so the band never lets through what the rule flags)
        a = rules.max_log_return * (1 - 1e-9)
        self.band = (math.exp(-a), math.exp(a))
        self.newest: int | None = None

    @property
    def mark(self) -> Mark | None:
        return None if self.t is None else Mark(self.t, self.close)

    def run(self) -> _Pass:
        for i, row in enumerate(self.batch.candles):
            self.row(i, row)
        return self

    def order(self, t: int | None) -> None:
        """Track monotonic time and the newest time for the gate."""
        if t is None:
            return
        if self.seen is not None and t < self.seen and self.backwards is None:
            self.backwards = (self.seen, t)
        self.seen = t
        if self.newest is None or t > self.newest:
            self.newest = t

    def row(self, i: int, row: dict[str, Any]) -> None:
        """Sort one row; a clean row advances the mark (time and close)."""
        interval = self.batch.interval_s
        sound = r.sound(row, interval, self.now)
        self.order(row["time"] if sound else r.row_time(row))
        found = [] if sound else r.schema_reasons(row) or r.finite_reasons(row)
        if not found:
            t = row["time"]
            if self.t is not None and t <= self.t:
                self.duplicate(i, row, t)
                return
            if not sound:
                found = r.value_reasons(row) + r.time_reasons(t, interval, self.now)
            if not found and self.t is not None:
                found = self.jump(row["close"], t)
        if found:
            self.bad.append((i, [x.model_copy(update={"index": i}) for x in found]))
            return
        self.clean.append(encode_candle(self.batch.symbol, row, self.batch.fetched_at))
        self.t, self.close, self.last_row = row["time"], float(row["close"]), row

    def jump(self, close: float, t: int) -> list[DeadLetterReason]:
        """The jump rule against the last clean close; a plausible step over a gap records it."""
        assert self.t is not None
        elapsed = (t - self.t) // self.batch.interval_s
        if elapsed == 1 and self.band[0] <= close / self.close <= self.band[1]:
            return []  # the common case: the next interval, a plausible move
        found = r.jump_reason(close, self.close, elapsed, self.rules.max_log_return)
        if found is not None:
            return [found]
        if elapsed > 1:
            self.gaps.append((self.t, t, (elapsed - 1) * self.batch.interval_s / 60))
        return []

    def duplicate(self, i: int, row: dict[str, Any], t: int) -> None:
        """A time already emitted: a counted duplicate, or a conflict inside this batch."""
        last = self.last_row
        if last is not None and t == self.t and any(row[f] != last[f] for f in r.NUMBERS):
            why = f"time {t} already emitted in this batch with other values"
            self.bad.append((i, [r.reason(r.CONFLICTING_DUPLICATE, why, i)]))
        else:
            self.duplicates += 1


def judge_batch(
    batch: RawBatch, payload: bytes, source: Source, mark: Mark | None, rules: Rules, now: float
) -> Verdict:
    """Run every row through the rules and dedup, then the batch gate decides."""
    state = _Pass(batch, mark, rules, now).run()
    gate = gate_reasons(batch, state, rules, now)
    verdict = Verdict(
        outcome="rejected" if gate else "accepted",
        records=len(batch.candles),
        symbol=batch.symbol,
        batch_id=batch.batch_id,
    )
    if gate:
        rows = [x for _, reasons in state.bad for x in reasons][:MAX_ROW_REASONS]
        verdict.dead_letters.append(_letter(payload, source, gate + rows, batch.symbol))
        verdict.counts[("dead_letter", gate[0].code)] = verdict.records
        return verdict
    _accept(verdict, batch, source, state, rules)
    return verdict


def _accept(verdict: Verdict, batch: RawBatch, source: Source, state: _Pass, rules: Rules) -> None:
    """Fill a passing batch's verdict: clean rows, row-level rejects by policy, duplicates."""
    verdict.clean, verdict.mark, verdict.gaps = state.clean, state.mark, state.gaps
    verdict.counts[("clean", "ok")] += len(state.clean)
    if state.duplicates:
        verdict.counts[("duplicate", "duplicate")] += state.duplicates
    outcome = "dead_letter" if rules.policy == "dead-letter" else "dropped"
    for i, reasons in state.bad:
        verdict.counts[(outcome, reasons[0].code)] += 1
        if outcome == "dead_letter":
            row = batch.candles[i]
            letter = _letter(row_bytes(row), source, reasons, batch.symbol, r.row_time(row))
            verdict.dead_letters.append(letter)


def gate_reasons(batch: RawBatch, seen: _Pass, rules: Rules, now: float) -> list[DeadLetterReason]:
    """The batch gate: minimum rows, monotonic time, freshness (live only), invalid share."""
    out = []
    n, invalid = len(batch.candles), len(seen.bad)
    if n < rules.min_rows:
        out.append(r.reason(r.TOO_FEW_ROWS, f"{n} rows, fewer than the minimum {rules.min_rows}"))
    if seen.backwards is not None:
        msg = "time goes back from {} to {}".format(*seen.backwards)
        out.append(r.reason(r.NON_MONOTONIC_TIME, msg))
    if batch.source == "live" and seen.newest is not None and rules.max_staleness_s > 0:
        age = now - seen.newest
        if age > rules.max_staleness_s:
            msg = f"live batch's newest candle is {age:.0f}s old (max {rules.max_staleness_s:.0f}s)"
            out.append(r.reason(r.STALE_BATCH, msg))
    if n and invalid / n > rules.max_invalid_fraction:
        msg = f"{invalid} of {n} rows invalid, above {rules.max_invalid_fraction:.2%}"
        out.append(r.reason(r.TOO_MANY_INVALID, msg))
    return out
