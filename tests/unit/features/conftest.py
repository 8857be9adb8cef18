"""Small hand-made candle frames for the feature unit tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pytest

#: 2024-12-02 00:00 UTC, a Monday.
MONDAY = 1_733_097_600


def candles(
    closes: Sequence[float],
    *,
    start: int = MONDAY,
    high: Sequence[float] | float | None = None,
    low: Sequence[float] | float | None = None,
    open_: Sequence[float] | float | None = None,
    volumeto: Sequence[float] | float = 1000.0,
    drop: Sequence[int] = (),
) -> pd.DataFrame:
    """One candle a minute from ``start``; ``drop`` removes minutes by index (real gaps)."""
    close = np.asarray(closes, dtype=float)
    frame = pd.DataFrame(
        {
            "time": start + 60 * np.arange(len(close)),
            "open": close if open_ is None else open_,
            "high": close if high is None else high,
            "low": close if low is None else low,
            "close": close,
            "volumefrom": 1.0,
            "volumeto": volumeto,
        }
    )
    return frame.drop(index=list(drop)).reset_index(drop=True)


@pytest.fixture()
def make_candles() -> Callable[..., pd.DataFrame]:
    return candles
