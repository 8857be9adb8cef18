"""Row and batch builders for the validator's unit tests."""

from __future__ import annotations

from typing import Any

from services.common.schemas import RawBatch

T0 = 1_700_000_040  # a minute boundary
NOW = T0 + 86_400.0


def row(t: int, close: float = 10.0, **fields: Any) -> dict[str, Any]:
    """A good candle at ``t`` closing at ``close``."""
    base = {
        "time": t,
        "open": close,
        "high": close * 1.001,
        "low": close * 0.999,
        "close": close,
        "volumefrom": 2.0,
        "volumeto": 2.0 * close,
    }
    return {**base, **fields}


def rows(n: int, start: int = T0) -> list[dict[str, Any]]:
    """``n`` consecutive good candles from ``start``."""
    return [row(start + 60 * i, close=10.0 + 0.01 * i) for i in range(n)]


def batch(candles: list[dict[str, Any]], source: str = "replay", symbol: str = "BTC") -> RawBatch:
    """A RawBatch around ``candles``, with the deterministic id."""
    return RawBatch(
        batch_id=RawBatch.make_id(symbol, candles),
        symbol=symbol,
        source=source,  # type: ignore[arg-type]
        fetched_at=NOW - 1,
        candles=candles,
    )
