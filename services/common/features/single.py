"""The kernel for one row: a live candle's features without an array call per feature.

:func:`~.kernel.compute` pays numpy's per-call cost (~1 µs) a few hundred times per call, which
is nothing for a micro-batch of thousands of rows and ~0.7 ms for one live candle. Here one row
is computed with the same floating-point operations in the same order, so it gives the kernel's
values bit for bit (``tests/unit/features/test_single.py`` compares every feature with ``==``):

- every window sum is still numpy's sum of the same slots (``np.add.reduce`` along the last
  axis sums each row pairwise, as the kernel's ``(rows, w)`` windows do), nine terms at once;
- elementwise arithmetic (``+ - * /``, ``sqrt``, comparisons) is IEEE in Python as in numpy;
- ``log``, ``log1p``, ``sin`` and ``cos`` are numpy's own (its SIMD versions differ from
  ``math``'s in the last bit), one array call for all the values of a row;
- counts are the same exact integer prefix differences.

There are no running sums, so no residue: a window of zero returns is exactly 0, as in batch.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from services.common.features.kernel import (
    BPV_SCALE,
    GK_CLOSE,
    PK_SCALE,
    PRIOR_HOURS,
    _hour_offset,
)
from services.common.features.momentum import _weights
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

if TYPE_CHECKING:
    from services.common.features.online import _Grid

#: Row order of the grid's term matrix (``_Grid.terms`` holds views of its rows): each window
#: sums the rows it needs, which are consecutive in this order.
TERMS = ("lqv", "lqv2", "qv", "r2", "pk", "gk", "rs", "r2_neg", "bp")
_T = {name: i for i, name in enumerate(TERMS)}


def term_row(name: str) -> int:
    """The row of term ``name`` in the grid's term matrix."""
    return _T[name]


_NEEDS: dict[int, set[str]] = {}
for _w in RV_WINDOWS:
    _NEEDS.setdefault(_w, set()).add("r2")
for _w in RANGE_WINDOWS:
    _NEEDS.setdefault(_w, set()).update(RANGE_ESTIMATORS)
for _w in JUMP_WINDOWS:
    _NEEDS.setdefault(_w, set()).update(("r2", "r2_neg", "bp"))
_NEEDS.setdefault(VOLUME_WINDOW, set()).add("qv")
_NEEDS.setdefault(VOLUME_BASELINE, set()).update(("qv", "lqv", "lqv2"))
WINDOWS = tuple(sorted(_NEEDS))
#: Per window: the first and past-the-last term rows it sums.
_ROWS = {
    w: (min(_T[k] for k in ks), max(_T[k] for k in ks) + 1) for w, ks in sorted(_NEEDS.items())
}
_PAD = {a: [0.0] * a for a, _ in _ROWS.values()}
_ALPHAS = (2.0 / (MACD_FAST + 1), 2.0 / (MACD_SLOW + 1), 2.0 / (MACD_SIGNAL + 1))
_RSI_ALPHA = 1.0 / RSI_PERIOD
_LAGS = np.array(RETURN_LAGS, dtype=np.int64)
_NAN = math.nan
_TWO_PI = 2 * np.pi


def slot_terms(
    cols: tuple[float, float, float, float, float], prev: float, prev2: float
) -> tuple[tuple[float, ...], bool, bool, bool]:
    """The nine per-minute terms of one slot (in ``TERMS`` order) and its has-return, has-candle
    and has-bipower flags, as :func:`~.kernel.minute_terms` derives them; ``prev`` and ``prev2``
    are the closes of the two slots before it (NaN when missing)."""
    o, h, low, c, v = cols
    num = np.array((c, prev, h, c, h, h, low, low))
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(num / np.array((prev, prev2, low, o, c, o, c, o))).tolist()
        lqv = float(np.log1p(v))
    r, r_prev, hl, co, hc, ho, lc, lo = logs
    has_r, has_bar = r == r, c == c
    if not has_bar:  # no candle, so no return either: every term 0, as the kernel's masks give
        return (0.0,) * len(TERMS), False, False, False
    has_bp = has_r and r_prev == r_prev
    r2 = r * r if has_r else 0.0
    terms = (  # in TERMS order
        lqv,
        lqv * lqv,
        v,
        r2,
        PK_SCALE * hl * hl,
        0.5 * hl * hl - GK_CLOSE * co * co,
        hc * ho + lc * lo,
        r2 if has_r and r < 0 else 0.0,
        abs(r) * abs(r_prev) if has_bp else 0.0,
    )
    return terms, has_r, has_bar, has_bp


def _rescale(total: float, n: int, w: float, per: float) -> float:
    """``total * per / n`` where ``n >= MIN_COVERAGE * w``, else NaN (the kernel's rule)."""
    return total * per / max(n, 1) if n >= MIN_COVERAGE * w else _NAN


def _names(pattern: str, keys: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(pattern.format(k) for k in keys)


_RV, _LRV = _names("rv_{}m", RV_WINDOWS), _names("lrv_{}m", RV_WINDOWS)
_HAR = tuple((f"har_{w // 60}h", w) for w in RV_WINDOWS if w % 60 == 0 and w // 60 in HAR_HOURS)
_LHAR, _HARS = _names("lhar_{}h", HAR_HOURS), _names("har_{}h", HAR_HOURS)
_RANGE = tuple(
    (w, _T[e], f"{e}_{w}m", f"l{e}_{w}m") for w in RANGE_WINDOWS for e in RANGE_ESTIMATORS
)
_HAR_LONG = f"har_{LONG_HAR_HOURS}h"
_JUMP = tuple((w, f"rsn_share_{w}m", f"lbpv_{w}m", f"jump_{w}m") for w in JUMP_WINDOWS)
_RET = _names("ret_{}m", RETURN_LAGS)
_W_AT = (*WINDOWS, EMA_LOOKBACK)
_W_AT_ARR = np.array(_W_AT, dtype=np.int64)
_R2, _NEG, _BP, _QV, _LQV, _LQV2 = (_T[k] for k in ("r2", "r2_neg", "bp", "qv", "lqv", "lqv2"))
_LONG_MINUTES = PRIOR_HOURS * 60 + 1
_SEA, _SEA_RATIO = f"lsea_{SEASON_DAYS}d", f"sea_ratio_{SEASON_DAYS}d"


def compute_one(grid: _Grid, s: int, t: int) -> dict[str, float]:
    """Every feature of slot ``s`` (time ``t``) of an online ``_Grid``; NaN where undefined."""
    terms, close, counts = grid.term_matrix, grid.cols["close"], grid.count_matrix
    end = s + 1
    sums = {
        w: _PAD[a] + np.add.reduce(terms[a:b, end - w : end], axis=-1).tolist()
        for w, (a, b) in _ROWS.items()
    }
    present = (counts[:, end, None] - counts[:, end - _W_AT_ARR]).tolist()
    n_ret, n_bar, n_bp = (dict(zip(_W_AT, c, strict=True)) for c in present)
    out: dict[str, float] = {}
    logs: list[float] = []  # _log arguments (NaN where not positive), one array call

    # volatility and HAR
    for w, name in zip(RV_WINDOWS, _RV, strict=True):
        out[name] = rv = math.sqrt(_rescale(sums[w][_R2], n_ret[w], w, w))
        logs.append(rv)
    for name, w in _HAR:
        out[name] = _rescale(sums[w][_R2], n_ret[w], w, 60.0)
    hour, minute = divmod(s, 60)
    total_long = float(grid.long_r2[hour]) + float(grid.partial_r2[s])
    n_long = int(grid.long_n[hour]) + int(grid.partial_n[s])
    out[_HAR_LONG] = _rescale(total_long, n_long, _LONG_MINUTES + minute, 60.0)
    logs += [out[name] for name in _HARS]

    # seasonal: the same clock hour on each of the previous days, summed day after day
    target = PRIOR_HOURS + hour + (minute >= 30)
    days_at = slice(target - 24, target - 24 * SEASON_DAYS - 1, -24)
    total, days = 0.0, 0
    for k, (r2, n) in enumerate(
        zip(grid.all_r2[days_at].tolist(), grid.all_n[days_at].tolist(), strict=True)
    ):
        ok = n >= MIN_COVERAGE * 60
        value = r2 * 60.0 / max(n, 1) if ok else 0.0
        total = value if k == 0 else total + value
        days += ok
    logs.append(total / max(days, 1) if days >= MIN_COVERAGE * SEASON_DAYS else _NAN)

    # ranges
    for w, row, name, _ in _RANGE:
        var = _rescale(sums[w][row], n_bar[w], w, w)
        out[name] = vol = math.sqrt(0.0 if var < 0 else var)
        logs.append(vol)

    # jumps
    for w, share_name, _, _ in _JUMP:
        total = sums[w][_R2]
        var = _rescale(total, n_ret[w], w, w)
        share = sums[w][_NEG] / (total if total > 0 else 1.0)
        out[share_name] = share if total > 0 and var == var else _NAN
        logs += [_rescale(BPV_SCALE * sums[w][_BP], n_bp[w], w, w), var]

    # volume
    n60, n_day = n_bar[VOLUME_WINDOW], n_bar[VOLUME_BASELINE]
    hour_vol = _rescale(sums[VOLUME_WINDOW][_QV], n60, VOLUME_WINDOW, VOLUME_WINDOW)
    day_mean = _rescale(sums[VOLUME_BASELINE][_QV], n_day, VOLUME_BASELINE, 60.0)
    out["qv_ratio_24h"] = hour_vol / (day_mean if day_mean > 0 else 1) if day_mean > 0 else _NAN
    s1, s2 = sums[VOLUME_BASELINE][_LQV], sums[VOLUME_BASELINE][_LQV2]
    mean = _rescale(s1, n_day, VOLUME_BASELINE, 1.0)
    var = (s2 - s1 * mean) / max(n_day - 1, 1)
    sd = math.sqrt(var if var > 0 else 1.0)
    out["qv_z_24h"] = (float(terms[_LQV, s]) - mean) / sd if var > 0 else _NAN

    _momentum(close, s, n_bar[EMA_LOOKBACK], out)

    # every log of the row in one call: the _log arguments, then the returns' ratios
    args = np.array([x if x > 0 else 1.0 for x in logs])
    with np.errstate(divide="ignore", invalid="ignore"):
        logged = np.log(np.concatenate((args, close[s] / close[s - _LAGS]))).tolist()
        out["lqv_60m"] = float(np.log1p(hour_vol))
    y = [v if x > 0 else _NAN for x, v in zip(logs, logged, strict=False)]
    out.update(zip(_RET, logged[len(logs) :], strict=True))
    out.update(zip(_LRV, y, strict=False))
    k = len(_LRV)
    out.update(zip(_LHAR, y[k:], strict=False))
    k += len(_LHAR)
    out[_SEA] = lsea = 0.5 * y[k]
    out[_SEA_RATIO] = lsea - 0.5 * out["lhar_24h"]
    k += 1
    for (_, _, _, name), v in zip(_RANGE, y[k:], strict=False):
        out[name] = v
    k += len(_RANGE)
    for (_, _, lbpv_name, jump_name), i in zip(_JUMP, range(k, len(y), 2), strict=True):
        out[lbpv_name], out[jump_name] = 0.5 * y[i], y[i + 1] - y[i]
    _calendar(t, out)
    return out


def _momentum(close: np.ndarray, s: int, present: int, out: dict[str, float]) -> None:
    """RSI and MACD of one row, as :func:`~.kernel._momentum` (gap-free: the same weighted sums
    as :func:`~.momentum._linear`; with gaps: its recurrence, step by step)."""
    window = close[s - EMA_LOOKBACK : s + 1]
    if present == EMA_LOOKBACK and close[s - EMA_LOOKBACK] == close[s - EMA_LOOKBACK]:
        parts = np.empty((4, EMA_LOOKBACK))
        np.subtract(window[1:], window[-1], out=parts[0])
        parts[1] = parts[0]
        diffs = window[1:] - window[:-1]
        np.maximum(diffs, 0.0, out=parts[2])
        np.subtract(parts[2], diffs, out=parts[3])
        parts *= _stacked_weights()
        macd, signal, gain, loss = np.add.reduce(parts, axis=-1).tolist()
    else:
        macd, signal, gain, loss = _recurrence(window.tolist())
    c = float(close[s])
    if present < MIN_COVERAGE * EMA_LOOKBACK:
        out[f"rsi_{RSI_PERIOD}"] = out["macd"] = out["macd_signal"] = out["macd_hist"] = _NAN
        return
    total = gain + loss
    out[f"rsi_{RSI_PERIOD}"] = 100.0 * gain / (total if total > 0 else 1.0) if total > 0 else 50.0
    out["macd"], out["macd_signal"] = macd / c, signal / c
    out["macd_hist"] = (macd - signal) / c


def _recurrence(window: list[float]) -> tuple[float, float, float, float]:
    """:func:`~.momentum._recurrence` for one window with gaps, in Python floats: the same
    steps (``state + (x - state) * alpha`` where present) in the same order; the array
    version pays ~10 numpy calls per minute, ~3 ms for one row."""
    a_fast, a_slow, a_sig = _ALPHAS
    last = window[-1]
    centred = [x - last for x in window[1:]]
    fast = next((x for x in centred if x == x), centred[0])
    slow, signal, gain, loss = fast, 0.0, 0.0, 0.0
    for x, before, after in zip(centred, window, window[1:], strict=False):
        if x == x:
            fast = fast + (x - fast) * a_fast
            slow = slow + (x - slow) * a_slow
            signal = signal + ((fast - slow) - signal) * a_sig
        diff = after - before
        if diff == diff:
            up = diff if diff > 0.0 else 0.0
            gain = gain + (up - gain) * _RSI_ALPHA
            loss = loss + ((up - diff) - loss) * _RSI_ALPHA
    return fast - slow, signal, gain, loss


@lru_cache(maxsize=1)
def _stacked_weights() -> np.ndarray:
    """The gap-free window's weights of MACD, signal, RSI gain and RSI loss, as rows."""
    w_macd, w_signal, w_rsi = _weights(EMA_LOOKBACK, _ALPHAS, _RSI_ALPHA)
    return np.stack((w_macd, w_signal, w_rsi, w_rsi))


def _calendar(t: int, out: dict[str, float]) -> None:
    """:func:`~.kernel._calendar` for one time (integer arithmetic, numpy's sin and cos)."""
    middle = t + HORIZON_MINUTES * 30
    hour = (middle % 86400) / 3600
    dow = (t // 86400 + 3) % 7
    local = middle + _hour_offset(middle // 3600)
    minute = (local % 86400) // 60
    angles = np.array(
        (_TWO_PI * hour / 24, _TWO_PI * dow / 7, _TWO_PI * (minute / 60) / 24), dtype=np.float64
    )
    (s_hod, s_dow, s_ny), (c_hod, c_dow, c_ny) = np.sin(angles).tolist(), np.cos(angles).tolist()
    out["hod_sin"], out["hod_cos"], out["dow_sin"], out["dow_cos"] = s_hod, c_hod, s_dow, c_dow
    out["nyh_sin"], out["nyh_cos"] = s_ny, c_ny
    out["ny_weekday"] = float((local // 86400 + 3) % 7 < 5)
    out["ny_open_min"] = float(minute - MARKET_OPEN_MINUTE)
