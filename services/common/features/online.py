"""The incremental path: a per-symbol state that turns new candles into feature rows.

The state is a ring of the last ``LOOKBACK_MINUTES`` (plus up to an hour) of candles and the
clock-hour aggregates of the last week. Each call builds the minute grid of ring + new candles and
runs the same kernel as :func:`~.batch.featurize_many`, vectorised over the micro-batch::

    >>> state = OnlineFeatures("BTC")
    >>> rows = state.update_many([{"time": 1_700_000_040 + 60 * i, "open": 1.0, "high": 1.0,
    ...     "low": 1.0, "close": 1.0, "volumeto": 2.0} for i in range(3)])
    >>> [(r.time, r.warm, r.features["ret_1m"]) for r in rows]
    [(1700000040, False, None), (1700000100, False, 0.0), (1700000160, False, 0.0)]
    >>> state.last_time
    1700000160
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np

from services.common.features.frame import COLUMNS, HOUR, Frame, frame_start, is_warm
from services.common.features.kernel import PRIOR_HOURS, Derived, Rows, compute, derive
from services.common.features.spec import FEATURE_NAMES, MINUTE


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """The features of one candle; ``None`` marks a value undefined (by a gap or a flat window)."""

    time: int
    warm: bool
    features: dict[str, float | None]


class OnlineFeatures:
    """Rolling feature state of one symbol; equal to the batch path on the same history."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.last_time: int | None = None
        self.origin: int | None = None
        self._times = np.empty(0, dtype=np.int64)
        self._cols = {name: np.empty(0) for name in COLUMNS}
        self._hours: dict[int, tuple[float, int]] = {}

    def _columns(self, candles: Sequence[Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The candles as arrays; ``ValueError`` unless times are minute-aligned and increasing."""
        fields = ("time", *COLUMNS)
        get = (itemgetter if isinstance(candles[0], Mapping) else attrgetter)(*fields)
        table = np.array([get(c) for c in candles], dtype=np.float64).reshape(-1, len(fields))
        times = table[:, 0].astype(np.int64)
        floor = -1 if self.last_time is None else self.last_time
        bad = (times != table[:, 0]) | (times % MINUTE != 0) | (np.diff(times, prepend=floor) <= 0)
        if bad.any():
            raise ValueError(f"{self.symbol}: candle times must increase past {self.last_time}")
        return times, {name: table[:, k + 1] for k, name in enumerate(COLUMNS)}

    def _prior(self, t0: int) -> tuple[np.ndarray, np.ndarray]:
        """Aggregates of the hours before the grid (zeros where no candle was seen)."""
        hours = [self._hours.get(t0 // HOUR - k, (0.0, 0)) for k in range(PRIOR_HOURS, 0, -1)]
        return np.array([h[0] for h in hours]), np.array([h[1] for h in hours], dtype=np.int64)

    def _grid(self, times: np.ndarray, cols: dict[str, np.ndarray]) -> Derived:
        t0 = frame_start(int(times[0]))
        keep = self._times >= t0 - MINUTE  # the close before the grid: its first return
        all_times = np.concatenate((self._times[keep], times))
        all_cols = {n: np.concatenate((self._cols[n][keep], cols[n])) for n in COLUMNS}
        frame = Frame.from_points(t0, int(times[-1]), all_times, all_cols)
        return derive(frame, *self._prior(t0))

    def _remember(self, d: Derived, times: np.ndarray, cols: dict[str, np.ndarray]) -> None:
        """Keep hour aggregates of the grid, and the candles the next grid can reach."""
        first_hour = d.frame.t0 // HOUR
        sums = zip(d.hour_r2.tolist(), d.hour_n.tolist(), strict=True)
        for k, (total, n) in enumerate(sums):
            self._hours[first_hour + k] = (total, n)
        self.last_time = int(times[-1])
        oldest_hour = frame_start(self.last_time) // HOUR - PRIOR_HOURS
        self._hours = {h: v for h, v in self._hours.items() if h >= oldest_hour}
        keep_from = frame_start(self.last_time) - MINUTE
        keep = self._times >= keep_from
        new = times >= keep_from
        self._times = np.concatenate((self._times[keep], times[new]))
        self._cols = {n: np.concatenate((self._cols[n][keep], cols[n][new])) for n in COLUMNS}

    def restore(self, candles: Sequence[Any]) -> None:
        """Load history without computing features (e.g. the last ``HISTORY_MINUTES`` replayed)."""
        self._advance(candles, emit=False)

    def update_many(self, candles: Sequence[Any]) -> list[FeatureRow]:
        """Feature rows of new candles (dicts or ``Candle``s), in order; times > ``last_time``."""
        return self._advance(candles, emit=True)

    def _advance(self, candles: Sequence[Any], emit: bool) -> list[FeatureRow]:
        if not len(candles):
            return []
        times, cols = self._columns(candles)
        if self.origin is None:
            self.origin = int(times[0])
        d = self._grid(times, cols)
        rows: list[FeatureRow] = []
        if emit:
            rows = self._rows(d, d.frame.slot(times))
        self._remember(d, times, cols)
        return rows

    def _rows(self, d: Derived, slots: np.ndarray) -> list[FeatureRow]:
        values = compute(d, Rows(slice(int(slots[0]), int(slots[-1]) + 1)))
        table = np.column_stack([values[name] for name in FEATURE_NAMES])[slots - slots[0]]
        cells = table.astype(object)
        cells[np.isnan(table)] = None
        times = d.frame.times(slots)
        warm = is_warm(times, self.origin or 0).tolist()
        return [
            FeatureRow(time=t, warm=w, features=dict(zip(FEATURE_NAMES, row, strict=True)))
            for t, w, row in zip(times.tolist(), warm, cells.tolist(), strict=True)
        ]
