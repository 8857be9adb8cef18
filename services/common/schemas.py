"""The message contract: the only place messages are defined.

Every message carries ``schema_version`` and an event time, validates strictly, and round-trips
through JSON bytes::

    >>> c = Candle(symbol="BTC", time=1700000040, open=1.0, high=2.0, low=0.5, close=1.5,
    ...            volumefrom=3.0, volumeto=4.5)
    >>> Candle.from_bytes(c.to_bytes()) == c
    True
    >>> Candle.from_bytes(b'{"symbol": "BTC"}')
    Traceback (most recent call last):
    ...
    services.common.errors.SchemaError: Candle: time: Field required; open: Field required; ...

Candles keep CryptoCompare's field names (``time`` is the candle's *open*, unix seconds, UTC).
A RawBatch carries its rows exactly as received, unvalidated: judging them is the validator's job.
"""

from __future__ import annotations

import base64
import functools
import re
import time as _time
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Self, cast

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from services.common.errors import SchemaError

SCHEMA_VERSION: Literal[1] = 1
Symbol = str  # upper-case base asset, e.g. "BTC"
SYMBOL_PATTERN = r"^[A-Z0-9]{1,15}$"
CANDLE_FIELDS = ("time", "open", "high", "low", "close", "volumefrom", "volumeto")


_setattr = object.__setattr__


@functools.cache
def _field_names(cls: type[BaseModel]) -> frozenset[str]:
    return frozenset(cls.model_fields)


def now() -> float:
    """Wall-clock time in unix seconds (the processing-time stamps below)."""
    return _time.time()


def describe_validation_error(name: str, exc: ValidationError) -> str:
    """One readable line per field, e.g. ``Candle: high: Input should be a finite number``."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return f"{name}: " + "; ".join(parts)


class Message(BaseModel):
    """Base of every message: strict, frozen, no unknown fields, finite floats only."""

    model_config = ConfigDict(
        strict=True, frozen=True, extra="forbid", allow_inf_nan=False, validate_default=True
    )
    schema_version: Literal[1] = SCHEMA_VERSION
    kind: ClassVar[str] = "message"

    def to_bytes(self) -> bytes:
        """Encode as compact JSON bytes."""
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_bytes(cls, data: bytes | str) -> Self:
        """Decode JSON bytes, raising :class:`SchemaError` with field-level messages."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise SchemaError(describe_validation_error(cls.__name__, exc)) from exc

    @classmethod
    def trusted(cls, values: dict[str, Any]) -> Self:
        """The message around ``values`` without validation, for hot paths that built or
        checked every value themselves: ``values`` must hold every field, in declaration
        order, each already of its declared JSON-native type (then ``to_bytes()`` equals
        ``orjson.dumps(values)``). Several times cheaper than ``model_construct``.

        >>> v = {"schema_version": 1, "code": "late", "message": "m", "index": None}
        >>> DeadLetterReason.trusted(v) == DeadLetterReason(code="late", message="m")
        True
        """
        msg = cls.__new__(cls)
        _setattr(msg, "__dict__", values)
        _setattr(msg, "__pydantic_fields_set__", set(_field_names(cls)))
        _setattr(msg, "__pydantic_extra__", None)
        _setattr(msg, "__pydantic_private__", None)
        return msg

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Validate a plain dict (as parsed JSON), raising :class:`SchemaError`."""
        try:
            return cls.model_validate(data, strict=False)
        except ValidationError as exc:
            raise SchemaError(describe_validation_error(cls.__name__, exc)) from exc


class Candle(Message):
    """One closed 1-minute candle, in CryptoCompare's field names. Key: ``symbol``."""

    symbol: Symbol = Field(pattern=SYMBOL_PATTERN)
    time: int = Field(ge=0, description="candle open time, unix seconds UTC (the event time)")
    open: float
    high: float
    low: float
    close: float
    volumefrom: float = Field(description="base volume")
    volumeto: float = Field(description="quote volume")
    ingested_at: float | None = Field(default=None, description="when the ingestor fetched it")


#: Candle's fields in declaration order (the validator writes them so), and its float fields.
_CANDLE_FIELDS = tuple(Candle.model_fields)
_CANDLE_FLOATS = ("open", "high", "low", "close", "volumefrom", "volumeto")
_SYMBOL = re.compile(SYMBOL_PATTERN.removeprefix("^").removesuffix("$"))


def candle_close(value: bytes) -> tuple[str, int, float] | None:
    """``(symbol, time, close)`` of an encoded :class:`Candle`, None when ``Candle`` refuses it.

    For readers that need only the close of every candle (the predictor's live-accuracy join).
    A candle as the validator writes it (every field, in order, each of its JSON type, floats as
    floats) is read with orjson and checked against :class:`Candle`'s constraints here, next to
    them (orjson itself refuses NaN, infinities and numbers beyond a double): ~0.6 against
    ~2.5 µs for pydantic's validation; anything else goes through ``Candle.from_bytes``.

    >>> c = Candle(symbol="BTC", time=60, open=1.0, high=2.0, low=0.5, close=1.5,
    ...            volumefrom=3.0, volumeto=4.0)
    >>> candle_close(c.to_bytes()), candle_close(b'{"symbol": "b@d"}')
    (('BTC', 60, 1.5), None)
    """
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError:
        d = None
    if type(d) is dict and tuple(d) == _CANDLE_FIELDS:
        symbol, t, at = d["symbol"], d["time"], d["ingested_at"]
        if (
            type(d["schema_version"]) is int
            and d["schema_version"] == SCHEMA_VERSION
            and type(symbol) is str
            and _SYMBOL.fullmatch(symbol) is not None
            and type(t) is int
            and t >= 0
            and (at is None or type(at) is float)
            and all(type(d[k]) is float for k in _CANDLE_FLOATS)
        ):
            return symbol, t, d["close"]
    try:
        c = Candle.from_bytes(value)
    except ValueError:
        return None
    return c.symbol, c.time, c.close


_CANDLE_LIST: TypeAdapter[list[Candle]] = TypeAdapter(list[Candle])


def read_candles(values: Sequence[bytes]) -> list[Candle | SchemaError]:
    """``Candle.from_bytes`` of each value, in one validation for the whole batch: about half
    the cost per candle (the featurizer reads every candle of ``ticks.clean``). Each value's
    outcome is its :class:`Candle`, or the :class:`SchemaError` ``Candle.from_bytes`` raises.

    The values are validated as one JSON array of their bytes joined by commas when each is a
    JSON object on its own terms: it starts with ``{`` and ends with ``}``. A Candle is a flat
    object whose only string fields (its keys, its symbol) cannot hold a ``,`` or a brace, so
    when the array validates into as many Candles as values, the i-th Candle is the i-th value.
    Any refusal, or any other value, and every value is read on its own.

    >>> c = Candle(symbol="BTC", time=60, open=1.0, high=2.0, low=0.5, close=1.5,
    ...            volumefrom=3.0, volumeto=4.0)
    >>> [type(x).__name__ for x in read_candles([c.to_bytes(), b'{"symbol": "b@d"}'])]
    ['Candle', 'SchemaError']
    >>> read_candles([c.to_bytes()] * 2) == [c, c]
    True
    """
    if all(v[:1] == b"{" and v[-1:] == b"}" for v in values):
        try:
            candles: list[Candle | SchemaError] = list(
                _CANDLE_LIST.validate_json(b"[" + b",".join(values) + b"]")
            )
        except ValidationError:
            pass
        else:
            if len(candles) == len(values):
                return candles
    return [_read_one(v) for v in values]


def _read_one(value: bytes) -> Candle | SchemaError:
    try:
        return Candle.from_bytes(value)
    except SchemaError as exc:
        return exc


class RawBatch(Message):
    """What the ingestor fetched in one poll, page or replay chunk. Key: ``symbol``.

    ``candles`` are the rows as received (dicts), so that bad rows reach the validator.
    """

    batch_id: str = Field(min_length=1, description="symbol:first_time:last_time, deterministic")
    symbol: Symbol = Field(pattern=SYMBOL_PATTERN)
    source: Literal["live", "backfill", "replay"]
    fetched_at: float = Field(description="processing time of the fetch (unix s)")
    interval_s: int = Field(default=60, gt=0)
    candles: list[dict[str, Any]]

    @staticmethod
    def make_id(symbol: str, candles: list[dict[str, Any]]) -> str:
        """The deterministic batch id: symbol plus first and last candle time."""
        first = candles[0].get("time") if candles else None
        last = candles[-1].get("time") if candles else None
        return f"{symbol}:{first}:{last}"


class DeadLetterReason(Message):
    """Why a message (or one row of it) was rejected: a stable code and a human message."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    message: str
    index: int | None = Field(default=None, description="row index inside a batch, if any")


def letter_id(
    topic: str | None, partition: int | None, offset: int | None, index: int | None = None
) -> str | None:
    """A dead letter's deterministic key, or None when its source position is unknown.

    >>> letter_id("ticks.raw", 0, 41, 7), letter_id("ticks.raw", 0, 41), letter_id("x", None, 1)
    ('ticks.raw:0:41:7', 'ticks.raw:0:41:-', None)
    """
    if topic is None or partition is None or offset is None:
        return None
    return f"{topic}:{partition}:{offset}:{'-' if index is None else index}"


class DeadLetter(Message):
    """A rejected message, its original bytes preserved, with where it came from and why."""

    stage: str
    reasons: list[DeadLetterReason] = Field(min_length=1)
    source_topic: str
    source_partition: int | None = None
    source_offset: int | None = None
    key: str | None = None
    symbol: str | None = None
    event_time: int | None = Field(default=None, description="candle time, when known")
    dead_at: float = Field(default_factory=now, description="when it was dead-lettered")
    payload_b64: str = Field(description="the original message value, base64")
    letter_id: str | None = Field(
        default=None,
        description="deterministic key: source topic, partition, offset and row index; a"
        " restarted stage publishes at most one letter per id",
    )
    emitted: dict[str, float] | None = Field(
        default=None,
        description="reason `revised`: the values already emitted on ticks.clean for this"
        " candle (the payload holds the new ones)",
    )

    @classmethod
    def wrap(cls, payload: bytes, index: int | None = None, **fields: Any) -> DeadLetter:
        """Build a dead letter around original bytes; its ``letter_id`` comes from where the
        bytes were read (and the row ``index`` inside a batch), when that is known."""
        if "letter_id" not in fields:
            fields["letter_id"] = letter_id(
                fields.get("source_topic"),
                fields.get("source_partition"),
                fields.get("source_offset"),
                index,
            )
        return cls(payload_b64=base64.b64encode(payload).decode(), **fields)

    def payload(self) -> bytes:
        """The original message value."""
        return base64.b64decode(self.payload_b64)

    @property
    def codes(self) -> list[str]:
        """The reason codes."""
        return [r.code for r in self.reasons]


class FeatureVector(Message):
    """The features of one symbol at one closed candle. Key: ``symbol``.

    ``features`` maps feature name to value; ``None`` marks a value undefined by a gap.
    """

    symbol: Symbol = Field(pattern=SYMBOL_PATTERN)
    time: int = Field(ge=0, description="the candle's open time (event time)")
    feature_version: str = Field(min_length=1)
    warm: bool
    features: dict[str, float | None]
    ingested_at: float | None = None
    emitted_at: float = Field(default_factory=now)

    @classmethod
    def from_bytes(cls, data: bytes | str) -> Self:
        """Decode either wire format: JSON (``to_bytes()``), or the binary format the featurizer
        publishes (first byte 0xF0-0xFF; layout in :mod:`services.common.vector_codec`)."""
        if not isinstance(data, str) and data[:1] and data[0] >= BINARY_FORMATS:
            from services.common.vector_codec import decode

            return cast(Self, decode(bytes(data)))
        return super().from_bytes(data)


#: A first byte from here on marks a binary FeatureVector (``services.common.vector_codec``).
BINARY_FORMATS = 0xF0


class Prediction(Message):
    """A forecast of the realized volatility of the next ``horizon_minutes``. Key: ``symbol``."""

    symbol: Symbol = Field(pattern=SYMBOL_PATTERN)
    time: int = Field(ge=0, description="the feature (candle) time the forecast is made at")
    horizon_minutes: int = 60
    rv: float = Field(ge=0, description="predicted realized volatility over the horizon")
    log_rv: float = Field(description="natural log of rv: what the model predicts")
    model_name: str
    model_version: str
    role: Literal["champion", "shadow"]
    feature_version: str
    ingested_at: float | None = None
    features_emitted_at: float | None = None
    emitted_at: float = Field(default_factory=now)
    rv_lo: float | None = Field(default=None, ge=0, description="interval: lower bound of rv")
    rv_hi: float | None = Field(default=None, ge=0, description="interval: upper bound of rv")
    interval_level: float | None = Field(
        default=None, gt=0, lt=1, description="central probability of [rv_lo, rv_hi]"
    )

    @model_validator(mode="after")
    def _interval(self) -> Self:
        """An interval comes whole (bounds and level) and ordered, or not at all."""
        given = (self.rv_lo is not None, self.rv_hi is not None, self.interval_level is not None)
        if any(given) and not all(given):
            raise ValueError("rv_lo, rv_hi and interval_level go together")
        if self.rv_lo is not None and self.rv_hi is not None and self.rv_lo > self.rv_hi:
            raise ValueError(f"rv_lo {self.rv_lo} > rv_hi {self.rv_hi}")
        return self


class ModelEvent(Message):
    """A registry decision: registered, promoted, refused, or a reload request. Key: model name."""

    event: Literal["registered", "promoted", "refused", "reload"]
    model_name: str
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    reason: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    time: float = Field(default_factory=now, description="when the decision was made")
    forced: bool = Field(
        default=False, description="promoted by `volstream promote --force` (reason says why)"
    )


MESSAGE_TYPES: tuple[type[Message], ...] = (
    Candle,
    RawBatch,
    DeadLetter,
    FeatureVector,
    Prediction,
    ModelEvent,
)
