"""Minute slots: candles placed on a time-indexed grid, NaN where a minute is missing.

Both paths build the same grid: the batch path over the whole history, the online path over its
ring plus the new candles. A gap stays a gap; no row is ever shifted into a missing minute::

    >>> f = Frame.from_points(3600, 3780, [3600, 3720], {"close": [1.0, 2.0]})
    >>> f.n, f.cols["close"].tolist()
    (4, [1.0, nan, 2.0, nan])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.common.features.spec import LOOKBACK_MINUTES, MINUTE, WARMUP_MINUTES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
#: Candle value columns the kernel reads (``volumeto`` is the quote volume).
COLUMNS = ("open", "high", "low", "close", "volumeto")
HOUR = 3600


def hour_floor(t: int) -> int:
    """Start of the clock hour holding unix time ``t``.

    >>> hour_floor(7259)
    7200
    """
    return t - t % HOUR


def frame_start(first_time: int) -> int:
    """The grid's first slot for rows from ``first_time`` on: hour-aligned, lookback covered.

    >>> frame_start(100 * 3600) == 100 * 3600 - 25 * 3600
    True
    """
    return hour_floor(first_time - LOOKBACK_MINUTES * MINUTE)


@dataclass(frozen=True)
class Frame:
    """Columns on a minute grid starting at ``t0`` (hour-aligned); NaN marks a missing minute."""

    t0: int
    n: int
    cols: dict[str, FloatArray]
    before: dict[str, float]
    """The candle in the minute before ``t0`` (NaN if none): the first slot's return needs it."""

    @classmethod
    def from_points(
        cls,
        t0: int,
        t_end: int,
        times: Sequence[int] | IntArray,
        cols: Mapping[str, Iterable[float]],
    ) -> Frame:
        """Place candles on the grid ``t0 .. t_end``; the one at ``t0 - 60`` goes to ``before``."""
        n = (t_end - t0) // MINUTE + 1
        idx = (np.asarray(times, dtype=np.int64) - t0) // MINUTE
        inside, lead = idx >= 0, idx == -1
        grid, before = {}, {}
        for name, values in cols.items():
            array = np.asarray(values, dtype=np.float64)
            grid[name] = np.full(n, np.nan)
            grid[name][idx[inside]] = array[inside]
            before[name] = float(array[lead][0]) if lead.any() else math.nan
        return cls(t0=t0, n=n, cols=grid, before=before)

    def slot(self, t: IntArray) -> IntArray:
        """Indices of the slots holding times ``t``."""
        return (np.asarray(t, dtype=np.int64) - self.t0) // MINUTE

    def times(self, rows: slice | IntArray) -> IntArray:
        """Candle times of the given slots."""
        return self.t0 + MINUTE * np.arange(self.n, dtype=np.int64)[rows]


def is_warm(times: np.ndarray, origin: int) -> np.ndarray:
    """A row is warm once ``WARMUP_MINUTES`` of history since ``origin`` precede it."""
    return (times - origin) >= WARMUP_MINUTES * MINUTE
