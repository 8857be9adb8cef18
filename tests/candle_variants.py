"""Encoded candles the schema takes or refuses, for tests of the fast candle readers
(``services.common.schemas.candle_close`` and ``read_candles``) against ``Candle.from_bytes``."""

from __future__ import annotations

import orjson


def candle_variants(value: bytes) -> list[bytes]:
    """Variants of one encoded Candle (as the validator writes it): altered fields, an int where
    a float goes, a missing default, another key order, and values that are not JSON candles.
    ``Candle.from_bytes`` reads five of them (int close, int and float ``ingested_at``, the
    default, the other order)."""
    d = orjson.loads(value)
    altered = [
        {**d, "close": 1},  # an int where a float goes: the schema takes it as 1.0
        {**d, "close": True},
        {**d, "close": "1.5"},
        {**d, "time": True},
        {**d, "time": 1.7e9},
        {**d, "time": -60},
        {**d, "symbol": "btc"},
        {**d, "symbol": "BTC\n"},
        {**d, "schema_version": 2},
        {**d, "ingested_at": 1},
        {**d, "ingested_at": 1.5},
        {**d, "extra": 1},
        {k: v for k, v in d.items() if k != "ingested_at"},  # a default
        {k: v for k, v in d.items() if k != "close"},
        dict(reversed(d.items())),  # another order: the schema does not care
    ]
    return [orjson.dumps(a) for a in altered] + [
        b"",
        b"null",
        b"[]",
        value[:-1],
        value.replace(b'"close":', b'"close":1e999,"x":'),
        value.replace(b'"close":', b'"close":NaN,"x":'),
        b'{"symbol":"BTC"}',
    ]
