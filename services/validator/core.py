"""The validator's pure core: one ticks.raw message in, a :class:`Verdict` out. No Kafka here.

Every record of a batch ends in exactly one bucket (conservation)::

    clean + dead-lettered + dropped + duplicates == records in the batch

A message that is not JSON or not a RawBatch has no records; it becomes one dead letter with its
original bytes. A batch that fails the gate is one dead letter holding every record.

Each symbol's :class:`History` (its :class:`Mark`, the last emitted candle, and the values emitted
for every minute of the last ``window_s``) decides a row at or before the mark:

- the same values as emitted: a counted ``duplicate`` (live polling re-fetches the last hour);
- other values than emitted: a dead letter ``revised``, carrying both (the stream keeps the first
  values, see docs/reliability.md for the batch path);
- a minute inside the history that was never emitted: a dead letter ``late``;
- a minute older than the history: counted ``duplicate`` / ``unverified`` (nothing to compare).

    >>> rows = [{"time": 60 * i, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
    ...          "volumefrom": 0.0, "volumeto": 0.0} for i in (1, 2, 5)]
    >>> raw = RawBatch(batch_id="BTC:60:300", symbol="BTC", source="replay", fetched_at=9.0,
    ...                candles=rows).to_bytes()
    >>> v = judge(raw, Source("ticks.raw", 0, 7), None, Rules(), now=1000.0)
    >>> v.outcome, len(v.clean), v.mark, v.gap_minutes
    ('accepted', 3, Mark(time=300, close=1.0), 2.0)
    >>> again = judge(raw, Source("ticks.raw", 0, 8), v.history, Rules(), now=1000.0)
    >>> again.outcome, len(again.clean), again.duplicates, again.balanced()
    ('accepted', 0, 3, True)
    >>> revised = [{**rows[1], "close": 0.9, "low": 0.9}, {**rows[0], "time": 180}]
    >>> raw = RawBatch(batch_id="BTC:120:180", symbol="BTC", source="live", fetched_at=9.0,
    ...                candles=revised).to_bytes()
    >>> late = judge(raw, Source("ticks.raw", 0, 9), v.history, Rules(), now=1000.0)
    >>> [(d.codes, d.event_time, d.emitted["close"] if d.emitted else None)
    ...  for d in late.dead_letters]
    [(['revised'], 120, 1.0), (['late'], 180, None)]
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
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


#: A candle's values in :data:`rules.NUMBERS` order: what "the same candle" means.
Values = tuple[float, ...]
#: How long the validator remembers what it emitted (``VALIDATOR_REVISION_WINDOW_S``).
WINDOW_S = 86_400


def values_of(row: Mapping[str, Any]) -> Values:
    """A row's (or an emitted candle's) values, as floats, in :data:`rules.NUMBERS` order."""
    return tuple(float(row[f]) for f in r.NUMBERS)


@dataclass(frozen=True)
class History:
    """What the validator emitted for one symbol: the mark and each minute's values.

    ``values`` holds every emitted minute from ``since`` on (in time order); a minute at or after
    ``since`` that is missing was never emitted. ``since`` trails the mark by ``window_s``.
    """

    mark: Mark | None = None
    values: Mapping[int, Values] = field(default_factory=dict)
    since: int = 0
    window_s: int = WINDOW_S

    @classmethod
    def of(cls, mark: Mark | History | None, window_s: int = WINDOW_S) -> History:
        """A history from a bare mark knows nothing before it (all its past is unverified)."""
        if isinstance(mark, History):
            return mark
        return cls(mark, {}, 0 if mark is None else mark.time + 1, window_s)

    def advanced(self, emitted: Mapping[int, Values], mark: Mark) -> History:
        """A new history with ``emitted`` (newer than the mark, in time order) added, and what
        fell out of the window forgotten."""
        values = {**self.values, **emitted}
        horizon = mark.time - self.window_s
        for t in list(values):  # time order: stop at the first one inside the window
            if t >= horizon:
                break
            del values[t]
        return History(mark, values, max(self.since, horizon), self.window_s)


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
    history: History | None = None

    @property
    def gap_minutes(self) -> float:
        """Minutes of missing candles between accepted rows (and since the previous mark)."""
        return sum(g[2] for g in self.gaps)

    @property
    def duplicates(self) -> int:
        """Rows not emitted because that minute was (or may have been) emitted before."""
        return self.total("duplicate")

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


def judge(
    payload: bytes, source: Source, mark: History | Mark | None, rules: Rules, now: float
) -> Verdict:
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
    index: int | None = None,
    emitted: dict[str, float] | None = None,
) -> DeadLetter:
    return DeadLetter.wrap(
        payload,
        index,
        emitted=emitted,
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

    def __init__(self, batch: RawBatch, history: History, rules: Rules, now: float) -> None:
        self.batch, self.rules, self.now, self.history = batch, rules, now, history
        mark = history.mark
        self.t: int | None = mark.time if mark else None
        self.close = mark.close if mark else 0.0
        self.clean: list[bytes] = []
        self.emitted: dict[int, Values] = {}  # this batch's clean rows
        self.bad: list[tuple[int, list[DeadLetterReason]]] = []
        #: rows that are sound but not new: ``revised`` (with the emitted values) or ``late``
        self.past: list[tuple[int, DeadLetterReason, Values | None]] = []
        self.duplicates = 0
        self.unverified = 0
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
                self.older(i, row, t, sound)
                return
            if not sound:
                found = r.value_reasons(row) + r.time_reasons(t, interval, self.now)
            if not found and self.t is not None:
                found = self.jump(row["close"], t)
        if found:
            self.bad.append((i, [x.model_copy(update={"index": i}) for x in found]))
            return
        self.clean.append(encode_candle(self.batch.symbol, row, self.batch.fetched_at))
        self.emitted[row["time"]] = values_of(row)
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

    def older(self, i: int, row: dict[str, Any], t: int, sound: bool) -> None:
        """A time at or before the mark: duplicate, revised, late, bad, or unverified."""
        values = values_of(row)
        emitted = self.emitted.get(t)
        if emitted is None:
            emitted = self.history.values.get(t)
        if emitted == values:
            self.duplicates += 1
            return
        found = [] if sound else r.value_reasons(row) + r.time_reasons(t, self.interval, self.now)
        if found:
            self.bad.append((i, [x.model_copy(update={"index": i}) for x in found]))
        elif t in self.emitted:
            why = f"time {t} already emitted in this batch with other values"
            self.bad.append((i, [r.reason(r.CONFLICTING_DUPLICATE, why, i)]))
        elif emitted is not None:
            why = f"time {t} was emitted with {_show(emitted)}; now {_show(values)}"
            self.past.append((i, r.reason(r.REVISED, why, i), emitted))
        elif t >= self.history.since:
            assert self.t is not None
            why = f"time {t} is before the symbol's last emitted {self.t} and was never emitted"
            self.past.append((i, r.reason(r.LATE, why, i), None))
        else:
            self.unverified += 1

    @property
    def interval(self) -> int:
        return self.batch.interval_s


def _show(values: Values) -> str:
    """Values as ``open=1.0 high=...`` for a reason message."""
    return " ".join(f"{f}={v:g}" for f, v in zip(r.NUMBERS, values, strict=True))


def judge_batch(
    batch: RawBatch,
    payload: bytes,
    source: Source,
    mark: History | Mark | None,
    rules: Rules,
    now: float,
) -> Verdict:
    """Run every row through the rules and dedup, then the batch gate decides."""
    state = _Pass(batch, History.of(mark), rules, now).run()
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
    if state.mark is not None:
        verdict.history = (
            state.history.advanced(state.emitted, state.mark) if state.emitted else state.history
        )
    verdict.counts[("clean", "ok")] += len(state.clean)
    if state.duplicates:
        verdict.counts[("duplicate", "duplicate")] += state.duplicates
    if state.unverified:
        verdict.counts[("duplicate", "unverified")] += state.unverified
    for i, why, emitted in state.past:  # never dropped: the batch path may want them
        verdict.counts[("dead_letter", why.code)] += 1
        row = batch.candles[i]
        was = None if emitted is None else dict(zip(r.NUMBERS, emitted, strict=True))
        verdict.dead_letters.append(
            _letter(row_bytes(row), source, [why], batch.symbol, row["time"], i, was)
        )
    outcome = "dead_letter" if rules.policy == "dead-letter" else "dropped"
    for i, reasons in state.bad:
        verdict.counts[(outcome, reasons[0].code)] += 1
        if outcome == "dead_letter":
            row = batch.candles[i]
            letter = _letter(row_bytes(row), source, reasons, batch.symbol, r.row_time(row), i)
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
