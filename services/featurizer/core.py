"""The featurizer's pure logic: per-partition state, late/replay triage, output messages.

No Kafka here. :class:`Featurizer` takes records of ``ticks.clean`` (partition, offset, key,
value bytes) and returns the FeatureVectors and DeadLetters to publish; the Faust shell in
``app.py`` reads them from the broker, publishes the outputs and commits.

Recovery contract (why the state is exact after kill -9, restart and rebalance):

- every partition's state is a pure function of that partition's log up to ``next_offset``;
- a partition is *stale* when unseen or when a record arrives beyond ``next_offset`` (it was
  processed elsewhere meanwhile); the shell then re-reads the log up to that record and calls
  :meth:`Featurizer.rebuild`, which replays the same triage and keeps the last
  ``HISTORY_MINUTES`` of accepted candles, all the online features need;
- records below ``next_offset`` are re-deliveries (a rebalance seeks back to the committed
  offset) and are skipped;
- a candle at or before its symbol's last time is a *replay* when identical to the candle
  accepted at that time (an upstream retry; dropped) and *late* otherwise (dead-lettered).

Warm-up: every closed candle yields a FeatureVector; ``warm`` is false until the feature
module's ``WARMUP_MINUTES`` of history are covered (the predictor scores warm vectors only).

    >>> f = Featurizer(online_factory=_CountingOnline, feature_version="demo-1", history_minutes=5)
    >>> recs = [Record(0, i, b"BTC", _candle_bytes("BTC", 60 * i)) for i in range(3)]
    >>> out = f.process(recs)
    >>> [v.time for v in out.features], out.features[-1].features
    ([0, 60, 120], {'n': 3.0})
    >>> out = f.process([Record(0, 3, b"BTC", _candle_bytes("BTC", 60))])   # identical replay
    >>> len(out.features), dict(out.replayed)
    (0, {'BTC': 1})
    >>> out = f.process([Record(0, 4, b"BTC", _candle_bytes("BTC", 60, close=2.0))])
    >>> out.dead[0].codes, dict(out.late)
    (['late'], {'BTC': 1})
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Protocol

import orjson

from services.common.errors import SchemaError
from services.common.records import PositionedRecord
from services.common.schemas import (
    CANDLE_FIELDS,
    SCHEMA_VERSION,
    Candle,
    DeadLetter,
    DeadLetterReason,
    FeatureVector,
    now,
    read_candles,
)
from services.common.topics import TICKS_CLEAN
from services.common.vector_codec import F64, LAYOUTS, encodable, encode_values, pack

STAGE = "featurizer"
#: How far back an identical re-delivered candle is recognised as a replay, not late.
REPLAY_WINDOW_MINUTES = 1440
#: Records of a rebuild's history validated per call (:func:`read_candles`).
READ_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class Record:
    """One record of ``ticks.clean`` as read from the broker."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes


#: What the featurizer reads of a record: a :class:`Record`, or aiokafka's ``ConsumerRecord``
#: as the transport hands them over (no copy per record).
RecordLike = PositionedRecord


class FeatureRowLike(Protocol):
    time: int
    warm: bool
    features: dict[str, float | None]


class OnlineLike(Protocol):
    last_time: int | None

    def update_many(self, candles: Sequence[Any]) -> list[Any]: ...

    def restore(self, candles: Sequence[Any]) -> None: ...


OnlineFactory = Callable[[str], OnlineLike]


@dataclass
class SymbolState:
    """One symbol's online features plus the recent accepted candles (for replay detection)."""

    symbol: str
    online: OnlineLike
    last_time: int | None = None
    recent: dict[int, tuple[float, ...]] = field(default_factory=dict)
    order: deque[int] = field(default_factory=deque)

    def triage(self, candle: Candle) -> str:
        """``accept`` (newer than the state), ``replay`` (identical re-delivery) or ``late``."""
        if self.last_time is None or candle.time > self.last_time:
            return "accept"
        return "replay" if self.recent.get(candle.time) == _values(candle) else "late"

    def remember(self, candle: Candle) -> None:
        """Record an accepted candle; forget those older than the replay window."""
        self.last_time = candle.time
        self.recent[candle.time] = _values(candle)
        self.order.append(candle.time)
        horizon = candle.time - REPLAY_WINDOW_MINUTES * 60
        while self.order and self.order[0] <= horizon:
            self.recent.pop(self.order.popleft(), None)


@dataclass
class PartitionState:
    """The state rebuilt from, and advanced along, one partition of ``ticks.clean``."""

    next_offset: int
    symbols: dict[str, SymbolState] = field(default_factory=dict)


@dataclass
class Outcome:
    """What one micro-batch produced, and the positions to commit once it is published."""

    published: list[tuple[bytes, bytes]] = field(default_factory=list)
    """Key and value of each FeatureVector for ``features``, encoded (binary, see
    :mod:`services.common.vector_codec`; JSON for a feature set without a binary layout)."""
    emitted: Counter[str] = field(default_factory=Counter)
    dead: list[DeadLetter] = field(default_factory=list)
    late: Counter[str] = field(default_factory=Counter)
    replayed: Counter[str] = field(default_factory=Counter)
    commit: dict[int, int] = field(default_factory=dict)

    @property
    def features(self) -> list[FeatureVector]:
        """The published vectors as messages, read back from their bytes (for tests and tools:
        the featurizer itself never builds them)."""
        return [FeatureVector.from_bytes(value) for _, value in self.published]


class Featurizer:
    """Per-partition, per-symbol online features over ``ticks.clean`` records."""

    def __init__(
        self, online_factory: OnlineFactory, feature_version: str, history_minutes: int
    ) -> None:
        self.online_factory = online_factory
        self.feature_version = feature_version
        self.history_s = history_minutes * 60
        self.partitions: dict[int, PartitionState] = {}
        layout = LAYOUTS.get(feature_version)
        self._width = -1 if layout is None else len(layout)  # values packed as they are

    @property
    def symbol_count(self) -> int:
        """Symbols held in memory (the ``featurizer_state_symbols`` gauge)."""
        return sum(len(p.symbols) for p in self.partitions.values())

    def stale(self, records: Iterable[RecordLike]) -> dict[int, int]:
        """Partitions needing a rebuild, mapped to the offset to rebuild up to (exclusive)."""
        out: dict[int, int] = {}
        expected = {p: s.next_offset for p, s in self.partitions.items()}
        for rec in records:
            if rec.partition in out:
                continue
            nxt = expected.get(rec.partition)
            if nxt is None or rec.offset > nxt:
                out[rec.partition] = rec.offset
            else:
                expected[rec.partition] = max(nxt, rec.offset + 1)
        return out

    def retain(self, partitions: Iterable[int]) -> None:
        """Forget the partitions not assigned to this worker any more."""
        keep = set(partitions)
        for p in [p for p in self.partitions if p not in keep]:
            del self.partitions[p]

    def rebuild(self, partition: int, history: Iterable[RecordLike], upto: int) -> None:
        """Recreate a partition's state from its log records with offsets below ``upto``."""
        triage = _Triage()
        chunk: list[bytes] = []
        for rec in history:
            if rec.offset < upto:
                chunk.append(rec.value or b"")
            if len(chunk) == READ_CHUNK:
                triage.add_many(read_candles(chunk))
                chunk = []
        triage.add_many(read_candles(chunk))
        state = PartitionState(next_offset=upto)
        for symbol, accepted in triage.accepted.items():
            sym = self._new_symbol(symbol)
            tail = [c for c in accepted if c.time > accepted[-1].time - self.history_s]
            sym.online.restore(tail)
            for c in accepted[-REPLAY_WINDOW_MINUTES:]:
                sym.remember(c)
            state.symbols[symbol] = sym
        self.partitions[partition] = state

    def process(self, records: Sequence[RecordLike]) -> Outcome:
        """Triage a micro-batch and compute the features of every accepted candle.

        Partitions must be fresh (see :meth:`stale`); unseen ones start empty at the first offset.
        """
        out = Outcome()
        fresh: list[tuple[RecordLike, PartitionState]] = []
        for rec in records:
            state = self.partitions.get(rec.partition)
            if state is None:
                state = self.partitions[rec.partition] = PartitionState(rec.offset)
            if rec.offset < state.next_offset:
                continue  # re-delivered after a rebalance: already published
            state.next_offset = rec.offset + 1
            out.commit[rec.partition] = rec.offset + 1
            fresh.append((rec, state))
        candles = read_candles([rec.value or b"" for rec, _ in fresh])  # one validation
        pending: dict[tuple[int, str], list[Candle]] = {}
        for (rec, state), candle in zip(fresh, candles, strict=True):
            self._triage_one(rec, candle, state, out, pending)
        stamp = now()
        for (partition, symbol), candles in pending.items():
            sym = self.partitions[partition].symbols[symbol]
            rows = sym.online.update_many(candles)
            key = symbol.encode()
            out.published += [
                (key, self._vector(symbol, r, c, stamp)) for r, c in zip(rows, candles, strict=True)
            ]
            out.emitted[symbol] += len(rows)
        return out

    def _triage_one(
        self,
        rec: RecordLike,
        candle: Candle | SchemaError,
        state: PartitionState,
        out: Outcome,
        pending: dict[tuple[int, str], list[Candle]],
    ) -> None:
        if isinstance(candle, SchemaError):
            out.dead.append(_dead(rec, "schema", str(candle)))
            return
        sym = state.symbols.get(candle.symbol)
        if sym is None:
            sym = state.symbols[candle.symbol] = self._new_symbol(candle.symbol)
        verdict = sym.triage(candle)
        if verdict == "accept":
            sym.remember(candle)
            pending.setdefault((rec.partition, candle.symbol), []).append(candle)
        elif verdict == "replay":
            out.replayed[candle.symbol] += 1
        else:
            out.late[candle.symbol] += 1
            msg = f"candle time {candle.time} <= symbol's current time {sym.last_time}"
            out.dead.append(_dead(rec, "late", msg, candle))

    def _new_symbol(self, symbol: str) -> SymbolState:
        return SymbolState(symbol=symbol, online=self.online_factory(symbol))

    def _vector(self, symbol: str, row: Any, candle: Candle, stamp: float) -> bytes:
        """One vector as published. The hot path: a row of the feature module's array kernel
        carries its float64 values in layout order (``row.values``), packed as they are behind
        a binary header, with no dict and no message object; a row with only its dict (the
        one-row path, a toy feature set) is encoded from it by :func:`encode_fields`."""
        if row.time != candle.time:
            raise RuntimeError(f"{symbol}: feature row {row.time} for candle {candle.time}")
        values = getattr(row, "values", None)
        version = self.feature_version
        if values is not None and values.dtype == F64 and len(values) == self._width:
            body = values.tobytes()
            return pack(symbol, row.time, version, bool(row.warm), body, candle.ingested_at, stamp)
        return encode_fields(
            {
                "schema_version": SCHEMA_VERSION,
                "symbol": symbol,
                "time": row.time,
                "feature_version": version,
                "warm": bool(row.warm),
                "features": row.features,
                "ingested_at": candle.ingested_at,
                "emitted_at": stamp,
            }
        )


class _Triage:
    """The live triage replayed over a log, keeping only the accepted candles per symbol."""

    def __init__(self) -> None:
        self.states: dict[str, SymbolState] = {}
        self.accepted: dict[str, list[Candle]] = {}

    def add_many(self, candles: Iterable[Candle | SchemaError]) -> None:
        """Add the readable candles, in order (unreadable records are skipped, as live)."""
        for candle in candles:
            if isinstance(candle, Candle):
                self.add(candle)

    def add(self, candle: Candle) -> None:
        sym = self.states.get(candle.symbol)
        if sym is None:
            sym = self.states[candle.symbol] = SymbolState(candle.symbol, online=_NoOnline())
        if sym.triage(candle) == "accept":
            sym.remember(candle)
            self.accepted.setdefault(candle.symbol, []).append(candle)


class _NoOnline:
    last_time: int | None = None

    def update_many(self, candles: Sequence[Any]) -> list[Any]:
        return []

    def restore(self, candles: Sequence[Any]) -> None:
        pass


_values: Callable[[Candle], tuple[float, ...]] = attrgetter(*CANDLE_FIELDS)
"""A candle's identity for replay detection: every CryptoCompare field."""


def encode_vector(vector: FeatureVector) -> bytes:
    """A vector as the featurizer publishes it (:func:`encode_fields` of its fields)."""
    return encode_fields(vector.__dict__)


def encode_fields(fields: dict[str, Any]) -> bytes:
    """A FeatureVector's fields (all of them, in declaration order, JSON-native) encoded for
    ``features``: the binary format of :mod:`services.common.vector_codec` (~0.6 KB against
    ~2.2 KB of JSON) when its features are its version's layout, as the feature module's
    always are; else its JSON, ``to_bytes()`` three times faster (orjson, like pydantic's JSON
    mode, writes non-finite floats as null; unit tests pin both)."""
    features = fields["features"]
    if encodable(fields["feature_version"], features):
        return encode_values(
            fields["symbol"],
            fields["time"],
            fields["feature_version"],
            fields["warm"],
            list(features.values()),
            fields["ingested_at"],
            fields["emitted_at"],
        )
    return orjson.dumps(fields)


def _dead(rec: RecordLike, code: str, message: str, candle: Candle | None = None) -> DeadLetter:
    return DeadLetter.wrap(
        rec.value or b"",
        stage=STAGE,
        reasons=[DeadLetterReason(code=code, message=message)],
        source_topic=TICKS_CLEAN,
        source_partition=rec.partition,
        source_offset=rec.offset,
        key=rec.key.decode("utf-8", "replace") if rec.key is not None else None,
        symbol=candle.symbol if candle else None,
        event_time=candle.time if candle else None,
    )


# --- doctest helpers: a toy online state (counts candles) and candle bytes ------------------


@dataclass
class _ToyRow:
    time: int
    warm: bool
    features: dict[str, float | None]


class _CountingOnline:
    def __init__(self, symbol: str) -> None:
        self.last_time: int | None = None
        self.n = 0

    def update_many(self, candles: Sequence[Candle]) -> list[_ToyRow]:
        rows = []
        for c in candles:
            self.n += 1
            self.last_time = c.time
            rows.append(_ToyRow(c.time, self.n >= 2, {"n": float(self.n)}))
        return rows

    def restore(self, candles: Sequence[Candle]) -> None:
        self.update_many(candles)


def _candle_bytes(symbol: str, time: int, close: float = 1.0) -> bytes:
    return orjson.dumps(
        {"symbol": symbol, "time": time, "open": 1.0, "high": 2.0, "low": 0.5, "close": close}
        | {"volumefrom": 1.0, "volumeto": 1.0}
    )
