"""The one numeric kernel: features for a block of rows of a minute grid.

The batch path and the online path both call :func:`derive` on a :class:`~.frame.Frame` and
then :func:`compute` on rows of it, so stream and batch run the same operations on the same
numbers. Every window is summed directly (a row of ``sliding_window_view(x, w).sum(-1)``, or the
same sum over a gathered copy), never kept as a running add/subtract total, so a window of zero
returns is exactly 0. Counts of present minutes are integer prefix differences (exact).

Gaps: a missing minute is NaN on the grid; per-minute terms of missing minutes are 0 in the
sums and not counted. A window feature is NaN when fewer than ``MIN_COVERAGE`` of its minutes
(returns, or candles for range and volume) are present; otherwise the sum of the present terms is
rescaled to the full window (``sum * w / n``). See ``docs/features.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from services.common.features.frame import FloatArray, Frame, IntArray
from services.common.features.momentum import ema_states
from services.common.features.spec import (
    EMA_LOOKBACK,
    HAR_HOURS,
    HORIZON_MINUTES,
    JUMP_WINDOWS,
    LONG_HAR_HOURS,
    MACD_FAST,
    MACD_SIGNAL,
    MACD_SLOW,
    MARKET_OPEN_MINUTE,
    MARKET_TZ,
    MIN_COVERAGE,
    RANGE_ESTIMATORS,
    RANGE_WINDOWS,
    RETURN_LAGS,
    RSI_PERIOD,
    RV_WINDOWS,
    SEASON_DAYS,
    VOLUME_BASELINE,
    VOLUME_WINDOW,
)

PK_SCALE = 1.0 / (4.0 * math.log(2.0))
GK_CLOSE = 2.0 * math.log(2.0) - 1.0
BPV_SCALE = math.pi / 2.0
PRIOR_HOURS = LONG_HAR_HOURS - 1
_MARKET_ZONE = ZoneInfo(MARKET_TZ)
"""The 168 h window is the current (partial) clock hour plus the 167 complete hours before."""


@lru_cache(maxsize=4096)
def _hour_offset(hour: int) -> int:
    """Seconds from UTC to New York wall time during the UTC clock hour ``hour`` (unix hours).

    US clocks change at 02:00 local, on a full UTC hour, so one offset holds for the hour."""
    offset = datetime.fromtimestamp(hour * 3600, tz=UTC).astimezone(_MARKET_ZONE).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def market_offset(times: IntArray) -> IntArray:
    """Seconds to add to unix times ``times`` to get New York wall-clock time (DST-aware).

    >>> market_offset(np.array([1_704_067_200, 1_720_000_000])).tolist()  # January, July
    [-18000, -14400]
    """
    hours = np.asarray(times, dtype=np.int64) // 3600
    unique, inverse = np.unique(hours, return_inverse=True)
    offsets = np.array([_hour_offset(int(h)) for h in unique], dtype=np.int64)
    return offsets[inverse.reshape(hours.shape)]


class Rows:
    """The rows to compute: a contiguous slice of slots (views) or an index array (gathers).

    Both give the same windows, value for value, so the sums agree bit for bit.
    """

    def __init__(self, sel: slice | IntArray) -> None:
        self.sel = sel
        self.idx = np.arange(sel.start, sel.stop) if isinstance(sel, slice) else sel
        self.size = len(self.idx)

    def col(self, x: np.ndarray, off: int = 0) -> np.ndarray:
        """``x`` at each row's slot plus ``off``."""
        if isinstance(self.sel, slice):
            return x[self.sel.start + off : self.sel.stop + off]
        return x[self.idx + off]

    def window(self, x: FloatArray, w: int) -> FloatArray:
        """The ``w`` slots ending at each row, as a (rows, w) array."""
        if not isinstance(self.sel, slice):
            return x[self.idx[:, None] + np.arange(1 - w, 1)]
        start = self.sel.start - w + 1
        if start < 0 or self.sel.stop > len(x):
            raise IndexError(f"rows need {w - 1} slots before them")
        if not x.flags.c_contiguous:
            return sliding_window_view(x[start : self.sel.stop], w)
        # the same strided view as sliding_window_view, without its per-call Python overhead
        step = x.itemsize
        return np.ndarray(
            (self.size, w), x.dtype, buffer=x, offset=start * step, strides=(step, step)
        )

    def wsum(self, x: FloatArray, w: int) -> FloatArray:
        """Direct sum of each row's trailing window."""
        total: FloatArray = self.window(x, w).sum(axis=-1)
        return total

    def count(self, cum: IntArray, w: int) -> IntArray:
        """Present minutes in each row's window, from an exact integer prefix count."""
        present: IntArray = self.col(cum, 1) - self.col(cum, 1 - w)
        return present


@dataclass(frozen=True)
class Derived:
    """Per-minute terms on the grid (zero where missing) and clock-hour aggregates."""

    frame: Frame
    close: FloatArray
    terms: dict[str, FloatArray]
    cum_ret: IntArray
    cum_bar: IntArray
    cum_bp: IntArray
    partial_r2: FloatArray
    partial_n: IntArray
    hour_r2: FloatArray
    hour_n: IntArray
    long_r2: FloatArray
    long_n: IntArray
    all_r2: FloatArray  # clock-hour sums of r2: the PRIOR_HOURS before the grid, then its hours
    all_n: IntArray


def _cum(mask: np.ndarray) -> IntArray:
    return np.concatenate(([0], np.cumsum(mask, dtype=np.int64)))


def _hourly(x: np.ndarray, n: int) -> np.ndarray:
    """Cumulative sums inside each clock hour (the grid starts on an hour)."""
    padded = np.zeros(-(-n // 60) * 60, dtype=x.dtype)
    padded[:n] = x
    return np.cumsum(padded.reshape(-1, 60), axis=1)


@dataclass(frozen=True)
class Minutes:
    """The per-minute terms of a run of slots and which minutes have a return, a candle, and a
    return with a return before it (the masks the window counts are made of)."""

    terms: dict[str, FloatArray]
    has_r: np.ndarray
    has_bar: np.ndarray
    has_bp: np.ndarray


def minute_terms(cols: dict[str, FloatArray], before_close: float) -> Minutes:
    """Per-minute terms of consecutive slots; ``before_close``: the close of the slot before the
    first (NaN if none). The online path derives only its new slots with this."""
    c = cols
    close = c["close"]
    with np.errstate(divide="ignore", invalid="ignore"):
        prev = np.concatenate(([before_close], close[:-1]))
        r = np.log(close / prev)
        hl = np.log(c["high"] / c["low"])
        co = np.log(close / c["open"])
    has_r, has_bar = ~np.isnan(r), ~np.isnan(close)
    r2 = np.where(has_r, r * r, 0.0)
    abs_r = np.where(has_r, np.abs(r), 0.0)
    has_bp = has_r & np.concatenate(([False], has_r[:-1]))  # a return and the one before it
    with np.errstate(divide="ignore", invalid="ignore"):
        hc, ho = np.log(c["high"] / close), np.log(c["high"] / c["open"])
        lc, lo = np.log(c["low"] / close), np.log(c["low"] / c["open"])
    lqv = np.where(has_bar, np.log1p(c["volumeto"]), 0.0)
    terms = {
        "r2": r2,
        "pk": np.where(has_bar, PK_SCALE * hl * hl, 0.0),
        "gk": np.where(has_bar, 0.5 * hl * hl - GK_CLOSE * co * co, 0.0),
        "rs": np.where(has_bar, hc * ho + lc * lo, 0.0),
        "r2_neg": np.where(has_r & (r < 0), r2, 0.0),
        "bp": np.where(has_bp, abs_r * np.concatenate(([0.0], abs_r[:-1])), 0.0),
        "qv": np.where(has_bar, c["volumeto"], 0.0),
        "lqv": lqv,
        "lqv2": lqv * lqv,
    }
    return Minutes(terms=terms, has_r=has_r, has_bar=has_bar, has_bp=has_bp)


def hourly(m: Minutes, n: int) -> tuple[FloatArray, IntArray]:
    """Running sums of r2 and of the returns present inside each clock hour, as (hours, 60)
    arrays (the slots start on an hour; slots past ``n`` count as empty)."""
    return _hourly(m.terms["r2"], n), _hourly(m.has_r.astype(np.int64), n)


def derive(frame: Frame, prior_r2: FloatArray, prior_n: IntArray) -> Derived:
    """Per-minute terms and hour aggregates; ``prior_*``: the 167 hours before ``frame.t0``."""
    m = minute_terms(frame.cols, frame.before["close"])
    h_r2, h_n = hourly(m, frame.n)
    all_r2 = np.concatenate((prior_r2, h_r2[:, -1]))
    all_n = np.concatenate((prior_n, h_n[:, -1]))
    return Derived(
        frame=frame,
        close=frame.cols["close"],
        terms=m.terms,
        cum_ret=_cum(m.has_r),
        cum_bar=_cum(m.has_bar),
        cum_bp=_cum(m.has_bp),
        partial_r2=h_r2.ravel(),
        partial_n=h_n.ravel(),
        hour_r2=h_r2[:, -1],
        hour_n=h_n[:, -1],
        long_r2=sliding_window_view(all_r2, PRIOR_HOURS).sum(axis=-1),
        long_n=sliding_window_view(all_n, PRIOR_HOURS).sum(axis=-1),
        all_r2=all_r2,
        all_n=all_n,
    )


def _rescale(
    total: FloatArray, n: IntArray, w: int | IntArray, per: float | IntArray
) -> FloatArray:
    """``total * per / n`` where coverage is enough (``n >= MIN_COVERAGE * w``), else NaN."""
    ok = n >= MIN_COVERAGE * np.asarray(w)
    return np.where(ok, total * per / np.maximum(n, 1), np.nan)


def _log(x: FloatArray) -> FloatArray:
    """Natural log, NaN where ``x`` is not positive (log of zero volatility is undefined)."""
    positive = x > 0
    return np.where(positive, np.log(np.where(positive, x, 1.0)), np.nan)


def _windows(
    rows: Rows, x: FloatArray, cum: IntArray, ws: tuple[int, ...]
) -> tuple[FloatArray, IntArray]:
    """Window sums of ``x`` and present counts from ``cum``, one row per window in ``ws``: the
    same per-window sums, stacked, so each later step is one array call for every window (a
    one-row micro-batch pays per call, not per value)."""
    total = np.stack([rows.wsum(x, w) for w in ws])
    n = np.stack([rows.count(cum, w) for w in ws])
    return total, n


def _column(values: tuple[int, ...]) -> IntArray:
    return np.array(values, dtype=np.int64)[:, None]


def _volatility(d: Derived, rows: Rows, out: dict[str, FloatArray]) -> None:
    """Realized volatility per window and HAR variances per hour (1 h .. 168 h)."""
    ws = _column(RV_WINDOWS)
    total, n = _windows(rows, d.terms["r2"], d.cum_ret, RV_WINDOWS)
    rv = np.sqrt(_rescale(total, n, ws, ws))
    lrv = _log(rv)
    har = [i for i, w in enumerate(RV_WINDOWS) if w % 60 == 0 and w // 60 in HAR_HOURS]
    har_var = _rescale(total[har], n[har], ws[har], 60.0)
    for i, w in enumerate(RV_WINDOWS):
        out[f"rv_{w}m"], out[f"lrv_{w}m"] = rv[i], lrv[i]
    for j, i in enumerate(har):
        out[f"har_{RV_WINDOWS[i] // 60}h"] = har_var[j]
    slot = rows.idx
    minutes = PRIOR_HOURS * 60 + slot % 60 + 1
    total_long = d.long_r2[slot // 60] + d.partial_r2[slot]
    n_long = d.long_n[slot // 60] + d.partial_n[slot]
    out[f"har_{LONG_HAR_HOURS}h"] = _rescale(total_long, n_long, minutes, 60.0)
    lhar = _log(np.stack([out[f"har_{h}h"] for h in HAR_HOURS]))
    for i, h in enumerate(HAR_HOURS):
        out[f"lhar_{h}h"] = lhar[i]


def _seasonal(d: Derived, rows: Rows, out: dict[str, FloatArray]) -> None:
    """The same clock hour on each of the last ``SEASON_DAYS`` days: its mean variance per hour.

    The forecast covers the next 60 minutes, so "the same hour" is the clock hour holding
    ``t + 30 min`` (the current one before minute 30, the next one from minute 30 on). A day's
    hour counts when ``MIN_COVERAGE`` of its returns are present; the mean needs
    ``MIN_COVERAGE`` of the days. ``lsea_6d`` is half the log of that mean variance (log RV per
    hour) and ``sea_ratio_6d`` is it minus the trailing 24 h log RV per hour (``lhar_24h / 2``):
    how much livelier that hour usually is than the day around it.
    """
    slot = rows.idx
    target_hour = PRIOR_HOURS + slot // 60 + (slot % 60 >= 30)
    j = target_hour[None, :] - 24 * np.arange(1, SEASON_DAYS + 1)[:, None]  # (days, rows)
    n = d.all_n[j]
    ok = n >= MIN_COVERAGE * 60
    # summed day after day, as a running total from 0 would be
    total = np.where(ok, d.all_r2[j] * 60.0 / np.maximum(n, 1), 0.0).sum(axis=0)
    days = ok.sum(axis=0)
    mean = np.where(days >= MIN_COVERAGE * SEASON_DAYS, total / np.maximum(days, 1), np.nan)
    out[f"lsea_{SEASON_DAYS}d"] = 0.5 * _log(mean)
    out[f"sea_ratio_{SEASON_DAYS}d"] = out[f"lsea_{SEASON_DAYS}d"] - 0.5 * out["lhar_24h"]


def _jumps(d: Derived, rows: Rows, out: dict[str, FloatArray]) -> None:
    """Downside share of realized variance, bipower variation and the jump ratio per window.

    ``rsn_share``: the sum of squared negative returns over the sum of all squared returns
    (Barndorff-Nielsen, Kinnebrock and Shephard's semivariance). ``lbpv``: half the log of
    bipower variation ``pi/2 * sum |r_s| |r_(s-1)|`` (pairs of present returns, rescaled to the
    window), robust to jumps. ``jump``: ``ln(RV^2 / BPV)``, positive when jumps dominate.
    """
    t, ws = d.terms, _column(JUMP_WINDOWS)
    total, n = _windows(rows, t["r2"], d.cum_ret, JUMP_WINDOWS)
    var = _rescale(total, n, ws, ws)
    neg, _ = _windows(rows, t["r2_neg"], d.cum_ret, JUMP_WINDOWS)
    share = neg / np.where(total > 0, total, 1.0)
    share = np.where((total > 0) & ~np.isnan(var), share, np.nan)
    bp, n_bp = _windows(rows, t["bp"], d.cum_bp, JUMP_WINDOWS)
    log_bpv = _log(_rescale(BPV_SCALE * bp, n_bp, ws, ws))
    jump = _log(var) - log_bpv
    for i, w in enumerate(JUMP_WINDOWS):
        out[f"rsn_share_{w}m"], out[f"lbpv_{w}m"] = share[i], 0.5 * log_bpv[i]
        out[f"jump_{w}m"] = jump[i]


def _ranges(d: Derived, rows: Rows, out: dict[str, FloatArray]) -> None:
    """Parkinson, Garman-Klass and Rogers-Satchell volatility per window (GK clipped at 0
    before the root; RS is a sum of non-negative terms)."""
    pairs = [(est, w) for w in RANGE_WINDOWS for est in RANGE_ESTIMATORS]
    ws = _column(tuple(w for _, w in pairs))
    total = np.stack([rows.wsum(d.terms[est], w) for est, w in pairs])
    n = np.repeat(np.stack([rows.count(d.cum_bar, w) for w in RANGE_WINDOWS]), 3, axis=0)
    var = _rescale(total, n, ws, ws)
    vol = np.sqrt(np.where(var < 0, 0.0, var))
    log_vol = _log(vol)
    for i, (est, w) in enumerate(pairs):
        out[f"{est}_{w}m"], out[f"l{est}_{w}m"] = vol[i], log_vol[i]


def _returns(d: Derived, rows: Rows, out: dict[str, FloatArray]) -> None:
    """Log returns over each lag; NaN unless both end minutes are present."""
    now = rows.col(d.close)
    for lag in RETURN_LAGS:
        out[f"ret_{lag}m"] = np.log(now / rows.col(d.close, -lag))


def _volume(d: Derived, rows: Rows, out: dict[str, FloatArray]) -> None:
    """Log 60-minute quote volume, its ratio to the 24 h hourly mean, a per-minute z-score."""
    t = d.terms
    n60, n_day = rows.count(d.cum_bar, VOLUME_WINDOW), rows.count(d.cum_bar, VOLUME_BASELINE)
    hour_vol = _rescale(rows.wsum(t["qv"], VOLUME_WINDOW), n60, VOLUME_WINDOW, VOLUME_WINDOW)
    day_mean = _rescale(rows.wsum(t["qv"], VOLUME_BASELINE), n_day, VOLUME_BASELINE, 60.0)
    out["lqv_60m"] = np.log1p(hour_vol)
    out["qv_ratio_24h"] = np.where(
        day_mean > 0, hour_vol / np.where(day_mean > 0, day_mean, 1), np.nan
    )
    s1, s2 = rows.wsum(t["lqv"], VOLUME_BASELINE), rows.wsum(t["lqv2"], VOLUME_BASELINE)
    mean = _rescale(s1, n_day, VOLUME_BASELINE, 1.0)
    var = (s2 - s1 * mean) / np.maximum(n_day - 1, 1)
    sd = np.sqrt(np.where(var > 0, var, 1.0))
    out["qv_z_24h"] = np.where(var > 0, (rows.col(t["lqv"]) - mean) / sd, np.nan)


def _momentum(d: Derived, rows: Rows, out: dict[str, FloatArray]) -> None:
    """RSI and MACD over exactly ``EMA_LOOKBACK`` minutes (see :mod:`.momentum`).

    MACD, its signal and histogram are divided by the current close (scale-free).
    """
    alphas = (2.0 / (MACD_FAST + 1), 2.0 / (MACD_SLOW + 1), 2.0 / (MACD_SIGNAL + 1))
    window = rows.window(d.close, EMA_LOOKBACK + 1)
    macd, signal, gain, loss = ema_states(window, alphas, 1.0 / RSI_PERIOD)
    ok = rows.count(d.cum_bar, EMA_LOOKBACK) >= MIN_COVERAGE * EMA_LOOKBACK
    close = rows.col(d.close)
    total = gain + loss
    rsi = np.where(total > 0, 100.0 * gain / np.where(total > 0, total, 1.0), 50.0)
    out[f"rsi_{RSI_PERIOD}"] = np.where(ok, rsi, np.nan)
    out["macd"] = np.where(ok, macd / close, np.nan)
    out["macd_signal"] = np.where(ok, signal / close, np.nan)
    out["macd_hist"] = np.where(ok, (macd - signal) / close, np.nan)


def _calendar(times: IntArray, out: dict[str, FloatArray]) -> None:
    """Time of day at the middle of the forecast window (``t + 30 min``, in hours with their
    minutes) and day of week (Monday = 0) of the candle's open, UTC, as sin and cos. The
    minutes matter for origins off the full hour: at 10:40 most of the next hour is hour 11."""
    hour = ((times + HORIZON_MINUTES * 30) % 86400) / 3600
    dow = (times // 86400 + 3) % 7
    out["hod_sin"], out["hod_cos"] = np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24)
    out["dow_sin"], out["dow_cos"] = np.sin(2 * np.pi * dow / 7), np.cos(2 * np.pi * dow / 7)
    _market_calendar(times + HORIZON_MINUTES * 30, out)


def _market_calendar(middle: IntArray, out: dict[str, FloatArray]) -> None:
    """The forecast window's middle in New York wall-clock time (DST-aware, ``zoneinfo``):
    time of day as sin and cos (``nyh_*``), 1 on a New York weekday (``ny_weekday``), and the
    minutes since that day's 09:30 open (``ny_open_min``, negative before it; every day, the
    weekday flag tells weekends apart). US macro releases and the equity open keep their New
    York time when UTC moves by an hour at a DST change."""
    local = middle + market_offset(middle)
    minute = (local % 86400) // 60
    hour = minute / 60
    out["nyh_sin"], out["nyh_cos"] = np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24)
    out["ny_weekday"] = ((local // 86400 + 3) % 7 < 5).astype(np.float64)
    out["ny_open_min"] = (minute - MARKET_OPEN_MINUTE).astype(np.float64)


def compute(d: Derived, rows: Rows) -> dict[str, FloatArray]:
    """Every feature for the given rows of the grid (rows need ``LOOKBACK_MINUTES`` before them)."""
    out: dict[str, FloatArray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        _volatility(d, rows, out)
        _seasonal(d, rows, out)
        _ranges(d, rows, out)
        _jumps(d, rows, out)
        _returns(d, rows, out)
        _volume(d, rows, out)
        _momentum(d, rows, out)
        _calendar(d.frame.times(rows.idx), out)
    return out
