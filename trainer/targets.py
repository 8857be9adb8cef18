"""Point-in-time targets and baseline inputs: forecast origins, the log-RV target and splits.

Everything here is pure (pandas/numpy in, pandas/numpy out). Candles live on a minute grid:
a missing minute stays missing (its return, and the next one, are undefined), never filled.

- The 1-minute log return of candle ``s`` is ``log(close_s / close_{s-60})``, defined only
  when both candles exist.
- The target at origin ``t`` (a candle's open time) is ``log max(RV, TRAINER_RV_FLOOR)`` with
  ``RV = sqrt(sum of r_s^2 for s in t+60 .. t+60*H)``: the H candles after ``t``. It is
  defined only when all H returns exist. The first uses ``close_t``, known at ``t``.
- Baseline inputs at ``t`` use returns of candles ``<= t`` only: the HAR components are the
  per-hour RV over the last 1, 4, 24 and 168 hours (mean squared return x 60, so a gap shrinks
  the sample, not the scale); a window with under 80% of its returns is undefined.

The same windowed-sum kernel computes targets and baseline inputs, from one prefix sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

MINUTE = 60
HOUR = 3600
HAR_HOURS = (1, 4, 24, 168)
SPLITS = ("train", "valid", "test")
MIN_COVERAGE = 0.8
#: Baseline input columns (prefixed, so they never clash with feature names).
HAR_COLUMNS = tuple(f"b_har_{h}h" for h in HAR_HOURS)
HOUR_COL, DOW_COL = "b_hour", "b_dow"


@dataclass(frozen=True)
class MinuteGrid:
    """Squared 1-minute log returns on a gap-preserving minute grid starting at ``t0``."""

    t0: int
    r2: np.ndarray  # squared log return per grid minute, NaN where undefined
    csum: np.ndarray  # prefix sums of r2 (NaN as 0), csum[i] = sum r2[:i]
    ccount: np.ndarray  # prefix counts of defined returns

    def index(self, times: np.ndarray) -> np.ndarray:
        """Grid index of each candle time."""
        return (np.asarray(times, dtype=np.int64) - self.t0) // MINUTE

    def window(self, end: np.ndarray, minutes: int) -> tuple[np.ndarray, np.ndarray]:
        """Sum and count of r2 over grid indices ``end-minutes+1 .. end`` (clipped to the grid)."""
        n = len(self.r2)
        hi = np.clip(end + 1, 0, n)
        lo = np.clip(end + 1 - minutes, 0, n)
        return self.csum[hi] - self.csum[lo], self.ccount[hi] - self.ccount[lo]


def clean_candles(candles: pd.DataFrame) -> pd.DataFrame:
    """Sorted, one row per minute-aligned time (the last duplicate wins)."""
    df = candles[candles["time"] % MINUTE == 0]
    df = df.drop_duplicates("time", keep="last").sort_values("time")
    return df.reset_index(drop=True)


def minute_grid(candles: pd.DataFrame) -> MinuteGrid:
    """Build the grid of squared log returns from clean candles.

    >>> df = pd.DataFrame({"time": [0, 60, 180], "close": [1.0, np.e, np.e]})
    >>> g = minute_grid(df)
    >>> g.r2.tolist()  # minute 120 is missing: returns at 120 and 180 are undefined
    [nan, 1.0, nan, nan]
    """
    times = candles["time"].to_numpy(dtype=np.int64)
    t0 = int(times[0])
    logc = np.full((times[-1] - t0) // MINUTE + 1, np.nan)
    logc[(times - t0) // MINUTE] = np.log(candles["close"].to_numpy(dtype=np.float64))
    r2 = np.full_like(logc, np.nan)
    r2[1:] = np.diff(logc) ** 2
    ok = ~np.isnan(r2)
    csum = np.concatenate(([0.0], np.cumsum(np.where(ok, r2, 0.0))))
    ccount = np.concatenate(([0], np.cumsum(ok)))
    return MinuteGrid(t0, r2, csum, ccount)


def log_rv_target(
    grid: MinuteGrid, origins: np.ndarray, horizon: int = 60, floor: float = 1e-5
) -> np.ndarray:
    """``log max(RV, floor)`` of the ``horizon`` minutes after each origin; NaN if incomplete.

    >>> df = pd.DataFrame({"time": [0, 60, 120, 180], "close": [1.0, np.e, 1.0, 1.0]})
    >>> log_rv_target(minute_grid(df), np.array([0, 60]), horizon=2).round(6).tolist()
    [0.346574, 0.0]
    """
    end = grid.index(origins) + horizon
    total, count = grid.window(end, horizon)
    ok = (count == horizon) & (end < len(grid.r2))
    rv = np.sqrt(np.where(ok, total, np.nan))
    return np.log(np.maximum(rv, floor))


def past_log_rv(
    grid: MinuteGrid, origins: np.ndarray, hours: int, floor: float = 1e-5
) -> np.ndarray:
    """Per-hour log RV over the last ``hours`` hours at each origin (candles <= origin).

    >>> df = pd.DataFrame({"time": np.arange(121) * 60, "close": np.exp(np.arange(121) * 0.01)})
    >>> past_log_rv(minute_grid(df), np.array([3600, 7200]), 1).round(6).tolist()
    [-2.557998, -2.557998]
    """
    minutes = hours * 60
    total, count = grid.window(grid.index(origins), minutes)
    ok = count >= MIN_COVERAGE * minutes
    hourly_var = np.where(ok, total / np.maximum(count, 1) * 60.0, np.nan)
    return np.log(np.maximum(np.sqrt(hourly_var), floor))


def ewma_log_rv(
    grid: MinuteGrid, origins: np.ndarray, lam: float, horizon: int = 60, floor: float = 1e-5
) -> np.ndarray:
    """EWMA forecast ``0.5 log(H * sigma2_t)``, ``sigma2_t = lam sigma2_{t-1} + (1-lam) r_t^2``.

    Undefined returns are skipped (the state holds); the recursion starts at the first return.

    >>> df = pd.DataFrame({"time": [0, 60, 120], "close": [1.0, np.e, np.e]})
    >>> np.exp(2 * ewma_log_rv(minute_grid(df), np.array([60, 120]), 0.5, horizon=1)).tolist()
    [1.0, 0.5]
    """
    from scipy.signal import lfilter

    valid = np.flatnonzero(~np.isnan(grid.r2))
    x = grid.r2[valid]
    state = lfilter([1.0 - lam], [1.0, -lam], x, zi=[lam * x[0]])[0]
    k = np.searchsorted(valid, grid.index(origins), side="right") - 1
    sigma2 = np.where(k >= 0, state[np.maximum(k, 0)], np.nan)
    return 0.5 * np.log(np.maximum(horizon * sigma2, floor**2))


def origin_times(times: np.ndarray, step_minutes: int = 60) -> np.ndarray:
    """Candle times that fall on the origin grid (every full hour for ``step_minutes=60``).

    >>> origin_times(np.arange(0, 7260, 60), 60).tolist()
    [0, 3600, 7200]
    """
    times = np.asarray(times, dtype=np.int64)
    return times[times % (step_minutes * MINUTE) == 0]


def calendar(origins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UTC hour of day and day of week (Monday = 0) of each origin.

    >>> calendar(np.array([0, 90000]))  # 1970-01-01 was a Thursday
    (array([0, 1]), array([3, 4]))
    """
    days = np.asarray(origins, dtype=np.int64) // 86400
    return (np.asarray(origins) % 86400) // HOUR, (days + 3) % 7


def baseline_inputs(
    grid: MinuteGrid,
    origins: np.ndarray,
    lambdas: Sequence[float] = (),
    horizon: int = 60,
    floor: float = 1e-5,
) -> pd.DataFrame:
    """The baselines' point-in-time inputs at each origin: HAR components, calendar, EWMAs."""
    hour, dow = calendar(origins)
    cols: dict[str, np.ndarray] = {"time": np.asarray(origins, dtype=np.int64)}
    for h, col in zip(HAR_HOURS, HAR_COLUMNS, strict=True):
        cols[col] = past_log_rv(grid, origins, h, floor)
    cols[HOUR_COL], cols[DOW_COL] = hour, dow
    for lam in lambdas:
        cols[ewma_column(lam)] = ewma_log_rv(grid, origins, lam, horizon, floor)
    return pd.DataFrame(cols)


def ewma_column(lam: float) -> str:
    """Column name of an EWMA forecast.

    >>> ewma_column(0.975)
    'b_ewma_0.975'
    """
    return f"b_ewma_{lam:g}"


def assign_splits(
    origins: np.ndarray, bounds: tuple[int, int], horizon: int = 60, embargo: int = 60
) -> np.ndarray:
    """Label each origin train/valid/test, or '' when embargoed.

    An origin is kept only if its target window ends ``embargo`` minutes before the next split's
    first time: ``t + 60*(horizon + embargo) <= boundary``.

    >>> assign_splits(np.arange(0, 10) * 3600, (4 * 3600, 7 * 3600), 60, 60).tolist()
    ['train', 'train', 'train', '', 'valid', 'valid', '', 'test', 'test', 'test']
    """
    t = np.asarray(origins, dtype=np.int64)
    gap = (horizon + embargo) * MINUTE
    valid_start, test_start = bounds
    labels = np.where(t < valid_start, "train", np.where(t < test_start, "valid", "test"))
    embargoed = ((t < valid_start) & (t + gap > valid_start)) | (
        (t >= valid_start) & (t < test_start) & (t + gap > test_start)
    )
    return np.where(embargoed, "", labels).astype(object)


def split_bounds(
    origins: np.ndarray, valid_start: str, test_start: str, fractions: tuple[float, float]
) -> tuple[tuple[int, int], str]:
    """Split boundaries (unix s) by date when both dates leave data on each side, else by fraction.

    >>> t = np.arange(0, 1000) * 3600
    >>> split_bounds(t, "2030-01-01", "2030-02-01", (0.7, 0.85))
    ((2516400, 3056400), 'fractions')
    """
    lo, hi = int(np.min(origins)), int(np.max(origins))
    v, s = (int(pd.Timestamp(d, tz="UTC").timestamp()) for d in (valid_start, test_start))
    if lo < v < s < hi:
        return (v, s), "dates"
    q = np.quantile(np.asarray(origins), fractions)
    return (int(q[0]) // HOUR * HOUR, int(q[1]) // HOUR * HOUR), "fractions"
