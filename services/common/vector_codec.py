"""The binary wire format of :class:`~services.common.schemas.FeatureVector` on ``features``.

A JSON vector is ~2.2 KB (66 names and values as text): the featurizer built a dict and encoded
it, the broker moved it twice, the predictor validated it into a pydantic object and copied its
dict into a matrix row. A binary vector is a fixed header and the values as little-endian
float64 in the order of its feature version's names (:data:`LAYOUTS`, from
``services.common.features``): ~0.6 KB, and a micro-batch of them decodes into one float64
matrix with a single ``numpy.frombuffer``.

Byte layout, format 1 (``struct`` format ``<BBHqddBB`` for the first 30 bytes)::

    offset  size  type     field
    0       1     u8       MAGIC = 0xF1: a binary FeatureVector, format 1
                           (a JSON vector starts with ``{``, 0x7B)
    1       1     u8       flags: bit 0 = warm; the other bits are 0
    2       2     u16      n, the number of values = len(LAYOUTS[feature_version])
    4       8     i64      time (the candle's open, unix s, >= 0)
    12      8     f64      ingested_at (NaN when None)
    20      8     f64      emitted_at
    28      1     u8       s = len(symbol)
    29      1     u8       v = len(feature_version)
    30      s     ASCII    symbol (``SYMBOL_PATTERN``)
    30+s    v     ASCII    feature_version
    30+s+v  8n    f64[n]   the values, in LAYOUTS[feature_version] order; NaN = None (undefined)

Every integer and float is little-endian; the message is exactly ``30 + s + v + 8n`` bytes; its
``schema_version`` is 1 (format 1 carries schema version 1). float64 round-trips exactly, so a
model scores a binary vector and the JSON vector of the same candle identically (a non-finite
value other than NaN is written as NaN, as JSON writes it as null)::

    >>> from services.common.features import FEATURE_NAMES, FEATURE_VERSION
    >>> values = {n: float(i) for i, n in enumerate(FEATURE_NAMES)} | {"rv_5m": None}
    >>> fv = FeatureVector(symbol="BTC", time=60, feature_version=FEATURE_VERSION, warm=True,
    ...                    features=values, ingested_at=None, emitted_at=1.5)
    >>> data = encode(fv)
    >>> data[0] == MAGIC, len(data) == HEAD.size + 3 + len(FEATURE_VERSION) + 8 * len(values)
    (True, True)
    >>> decode(data) == fv == decode(fv.to_bytes())
    True
    >>> decode(data[:-1])
    Traceback (most recent call last):
    ...
    services.common.errors.SchemaError: FeatureVector: binary vector of ... bytes, expected ...
"""

from __future__ import annotations

import functools
import math
import re
import struct
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from services.common.errors import SchemaError
from services.common.features.spec import FEATURE_NAMES, FEATURE_VERSION
from services.common.schemas import (
    BINARY_FORMATS,
    SCHEMA_VERSION,
    SYMBOL_PATTERN,
    DeadLetterReason,
    FeatureVector,
)

#: The first byte of a binary vector: format 1. ``0xF0``-``0xFF`` are reserved for formats.
MAGIC = 0xF1
FORMAT_BYTES = range(BINARY_FORMATS, 0x100)
#: The fixed header: magic, flags, n, time, ingested_at, emitted_at, len(symbol), len(version).
HEAD = struct.Struct("<BBHqddBB")
WARM = 0x01
NAN = math.nan

#: feature_version -> its feature names, in the order of a binary vector's values: the
#: feature module's one ordered list (``FEATURE_NAMES``) for its version. A version not here
#: cannot be read from a binary vector (dead letter ``unknown_feature_version``).
LAYOUTS: Mapping[str, tuple[str, ...]] = MappingProxyType({FEATURE_VERSION: FEATURE_NAMES})

_SYMBOL = re.compile(SYMBOL_PATTERN.removeprefix("^").removesuffix("$").encode())
#: The values' type on the wire: little-endian float64.
F64 = np.dtype("<f8")


class VectorHead(NamedTuple):
    """A vector's header: everything but its values (what a prediction copies from it)."""

    symbol: str
    time: int
    feature_version: str
    warm: bool
    ingested_at: float | None
    emitted_at: float


class VectorError(ValueError):
    """Bytes that are not a readable vector; ``reason`` is the dead letter's reason."""

    def __init__(self, reason: DeadLetterReason) -> None:
        super().__init__(reason.message)
        self.reason = reason


def _refuse(code: str, message: str) -> VectorError:
    return VectorError(DeadLetterReason(code=code, message=f"FeatureVector: {message}"[:2000]))


def is_binary(data: bytes) -> bool:
    """Whether ``data`` claims to be a binary vector (of any format), not JSON."""
    return bool(data) and data[0] in FORMAT_BYTES


def encode_values(
    symbol: str,
    time: int,
    feature_version: str,
    warm: bool,
    values: Sequence[float | None] | np.ndarray,
    ingested_at: float | None,
    emitted_at: float,
) -> bytes:
    """A binary vector from its fields; ``values`` in ``LAYOUTS[feature_version]`` order: a
    float64 array, or floats with ``None`` for undefined (an infinity is written as NaN). A
    wrong count of values or an unknown version raises ``ValueError``."""
    names = LAYOUTS.get(feature_version)
    if names is None or len(values) != len(names):
        raise ValueError(f"{feature_version!r}: no layout of {len(values)} values")
    if isinstance(values, np.ndarray):
        row = values.astype(F64, copy=False)
        if not np.isfinite(row).all():  # as JSON writes them: null, i.e. undefined
            row = np.where(np.isfinite(row), row, NAN)
        body = row.tobytes()
    else:  # x - x is 0.0 for a finite x, NaN (true) for an infinite or NaN one
        body = _values(len(names)).pack(*[NAN if x is None or x - x else x for x in values])
    return pack(symbol, time, feature_version, warm, body, ingested_at, emitted_at)


def pack(
    symbol: str,
    time: int,
    feature_version: str,
    warm: bool,
    body: bytes,
    ingested_at: float | None,
    emitted_at: float,
) -> bytes:
    """A binary vector around ``body``, its values' bytes: little-endian float64 in
    ``LAYOUTS[feature_version]`` order, NaN where undefined and no infinity, which the caller
    vouches for (the featurizer packs its rows as they are); a body of the wrong size, an
    unknown version or a non-ASCII or too long name raises ``ValueError``."""
    n = len(body) // 8
    names = LAYOUTS.get(feature_version)
    if names is None or len(body) != 8 * len(names):
        raise ValueError(f"{feature_version!r}: no layout of {len(body)} bytes of values")
    sym, ver = symbol.encode("ascii"), feature_version.encode("ascii")
    at = NAN if ingested_at is None else ingested_at
    head = HEAD.pack(MAGIC, WARM if warm else 0, n, time, at, emitted_at, len(sym), len(ver))
    return b"".join((head, sym, ver, body))


@functools.cache
def _values(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}d")


def encode(fv: FeatureVector) -> bytes:
    """``fv`` as a binary vector; its features must be exactly its version's layout, in order
    (``ValueError`` otherwise: :func:`encodable` says whether they are)."""
    if not encodable(fv.feature_version, fv.features):
        raise ValueError(f"{fv.feature_version!r}: features are not its layout")
    return encode_values(
        fv.symbol,
        fv.time,
        fv.feature_version,
        fv.warm,
        list(fv.features.values()),
        fv.ingested_at,
        fv.emitted_at,
    )


def encodable(feature_version: str, features: Mapping[str, Any]) -> bool:
    """Whether ``features`` are the layout of ``feature_version`` (its names, in order)."""
    names = LAYOUTS.get(feature_version)
    return names is not None and len(features) == len(names) and tuple(features) == names


class Decoded(NamedTuple):
    """A vector read: its header, its layout (feature names) and its values' bytes (float64,
    little-endian, layout order, NaN = undefined)."""

    head: VectorHead
    names: tuple[str, ...]
    values: bytes


@functools.lru_cache(maxsize=64)
def _symbol(raw: bytes) -> str | None:
    return raw.decode("ascii") if _SYMBOL.fullmatch(raw) else None


@functools.lru_cache(maxsize=16)
def _layout(raw: bytes) -> tuple[str, tuple[str, ...] | None]:
    version = raw.decode("ascii", "replace")
    return version, LAYOUTS.get(version)


def read_binary(data: bytes) -> Decoded:
    """Header and value bytes of a binary vector; ``VectorError`` when the bytes are not one:
    ``unknown_vector_format`` (a format byte this code does not know), ``malformed`` (too
    short, a wrong length or count of values, bad flags, a bad symbol, a negative time, a
    non-finite stamp or value), ``unknown_feature_version`` (no layout for its version)."""
    size = len(data)
    if size < HEAD.size:
        raise _refuse("malformed", f"binary vector of {size} bytes, shorter than its header")
    magic, flags, n, t, ingested, emitted, s, v = HEAD.unpack_from(data)
    if magic != MAGIC:
        raise _refuse("unknown_vector_format", f"binary vector format byte {magic:#04x}")
    if flags & ~WARM:
        raise _refuse("malformed", f"binary vector flags {flags:#04x}")
    start = HEAD.size + s + v
    if size != start + 8 * n:
        raise _refuse("malformed", f"binary vector of {size} bytes, expected {start + 8 * n}")
    symbol = _symbol(data[HEAD.size : HEAD.size + s])
    if symbol is None:
        raise _refuse("malformed", f"symbol {data[HEAD.size : HEAD.size + s]!r}")
    version, names = _layout(data[HEAD.size + s : start])
    if names is None:
        known = sorted(LAYOUTS)
        raise _refuse("unknown_feature_version", f"feature_version {version!r}, known: {known}")
    if n != len(names):
        raise _refuse("malformed", f"{n} values, {version!r} has {len(names)}")
    if t < 0 or not math.isfinite(emitted) or math.isinf(ingested):
        raise _refuse("malformed", f"time {t}, ingested_at {ingested}, emitted_at {emitted}")
    at = None if ingested != ingested else ingested
    head = VectorHead(symbol, t, version, bool(flags), at, emitted)
    return Decoded(head, names, data[start:])


def decode(data: bytes) -> FeatureVector:
    """A vector from either format (JSON or binary), as a validated :class:`FeatureVector`
    (``None`` for NaN); ``SchemaError`` when it is neither."""
    if not is_binary(data):
        return FeatureVector.from_bytes(data)
    try:
        b = read_binary(data)
        values = np.frombuffer(b.values, dtype=F64)
        if np.isinf(values).any():
            raise _refuse("malformed", "an infinite value")
    except VectorError as exc:
        raise SchemaError(str(exc)) from exc
    features = dict(zip(b.names, values.tolist(), strict=True))
    h = b.head
    return FeatureVector.from_dict(
        {
            "schema_version": SCHEMA_VERSION,
            "symbol": h.symbol,
            "time": h.time,
            "feature_version": h.feature_version,
            "warm": h.warm,
            "features": {k: (None if x != x else x) for k, x in features.items()},
            "ingested_at": h.ingested_at,
            "emitted_at": h.emitted_at,
        }
    )


def head_of(data: bytes) -> VectorHead:
    """The header of a vector in either format (``SchemaError`` when it is neither): for
    readers that need its symbol, time or warmth only."""
    if is_binary(data):
        try:
            return read_binary(data).head
        except VectorError as exc:
            raise SchemaError(str(exc)) from exc
    fv = FeatureVector.from_bytes(data)
    return VectorHead(
        fv.symbol, fv.time, fv.feature_version, fv.warm, fv.ingested_at, fv.emitted_at
    )


def warm_of(data: bytes) -> bool:
    """Whether a well-formed vector in either format is warm, without decoding it (for
    counters reading a whole topic: its flags byte, or the featurizer's compact JSON)."""
    if is_binary(data):
        return len(data) > 1 and bool(data[1] & WARM)
    return b'"warm":true' in data


def document(data: bytes) -> dict[str, Any]:
    """A vector in either format as its JSON document (``volstream tail``, digests)."""
    return decode(data).model_dump(mode="json")


class Plan(NamedTuple):
    """How to read the columns ``names`` from rows of a ``layout``."""

    columns: np.ndarray  # each name's column in the layout (len(layout) for one it lacks)
    missing: tuple[str, ...]  # the names the layout lacks
    identity: bool  # names == layout


_plans: dict[tuple[int, int], tuple[tuple[str, ...], Sequence[str], Plan]] = {}


def plan(layout: tuple[str, ...], names: Sequence[str]) -> Plan:
    """The :class:`Plan` of ``names`` (a model's feature names, never changed in place) over
    ``layout``, made once per pair of objects: a micro-batch of one vector must not pay for
    hashing 66 names."""
    key = (id(layout), id(names))
    hit = _plans.get(key)
    if hit is not None and hit[0] is layout and hit[1] is names:
        return hit[2]
    at = {n: i for i, n in enumerate(layout)}
    index = np.array([at.get(n, len(layout)) for n in names], dtype=np.intp)
    found = Plan(index, tuple(n for n in names if n not in at), tuple(names) == layout)
    if len(_plans) >= 256:  # models and layouts come and go with reloads
        _plans.clear()
    _plans[key] = (layout, names, found)
    return found


def gather(block: np.ndarray, layout: tuple[str, ...], names: Sequence[str]) -> np.ndarray:
    """Columns ``names`` of a float64 block of rows in ``layout`` order, as a new array (one
    column gather; a name the layout lacks is a NaN column).

    >>> rows = [np.array([1.0, 2.0]), np.array([3.0, NAN])]
    >>> block = np.frombuffer(b"".join(r.tobytes() for r in rows)).reshape(2, 2)
    >>> gather(block, ("a", "b"), ["b", "a", "c"]).tolist()
    [[2.0, 1.0, nan], [nan, 3.0, nan]]
    """
    how = plan(layout, names)
    if how.identity:
        return block.copy()
    if how.missing and len(block):
        block = np.concatenate([block, np.full((len(block), 1), NAN)], axis=1)
    return block[:, how.columns]
