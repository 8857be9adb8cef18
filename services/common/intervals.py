"""Prediction intervals for the next hour's realized volatility: regime-conditional split
conformal calibration of the log-RV residuals (pure numpy, shared by trainer and predictor).

The trainer collects out-of-sample residuals ``e = y - log_rv`` on the validation window (the
early-stopped model, before the refit; ``log_rv`` is the bias-adjusted forecast the predictor
publishes) and bins them by the volatility regime known at the origin: quantile bins of a
feature (``lrv_1440m``, the trailing 24 h RV), cut at the validation terciles. Each bin keeps
its residual quantiles on a fixed probability grid, so any level can be served later. The
interval at level ``L`` is ``[exp(log_rv + q_lo), exp(log_rv + q_hi)]`` with the bin's quantiles
at ``p_hi = min(1, (1 + L)/2 * (1 + 1/n))`` and ``p_lo = 1 - p_hi`` (split conformal's
finite-sample correction, Mondrian per bin). A row whose regime feature is undefined uses the
pooled residuals.

>>> rng = np.random.default_rng(0)
>>> level = rng.normal(size=3000)
>>> resid = rng.normal(size=3000) * np.where(level > 0.43, 2.0, 1.0)
>>> cal = calibrate(resid, level, feature="x")
>>> lo, hi = bounds(cal, np.zeros(3), np.array([-1.0, 1.0, np.nan]), 0.8)
>>> [round(float(v), 1) for v in np.log(hi)]  # ~1.28 sigma: calm, turbulent, pooled
[1.3, 2.6, 1.7]
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_LEVEL = 0.8
"""The central coverage published with each prediction unless configured otherwise."""
REGIME_FEATURE = "lrv_1440m"
"""The trailing 24 h RV: the evaluation's regime variable, known at the origin."""
REGIME_BINS = 3
ADAPT_GAMMA = 0.01
"""Step of the adaptive calibration recorded with each new calibration
(:mod:`services.common.adaptive_intervals`; docs/model.md says how it was chosen)."""
PROBS = tuple(round(p, 4) for p in np.linspace(0.0, 1.0, 401))
"""Probability grid of the stored residual quantiles (step 0.0025)."""


def calibrate(
    residuals: np.ndarray,
    level: np.ndarray,
    bins: int = REGIME_BINS,
    feature: str = REGIME_FEATURE,
    gamma: float = ADAPT_GAMMA,
) -> dict[str, Any]:
    """The calibration document (plain JSON) from out-of-sample residuals and regime values.

    Keys: ``feature``, ``cuts`` (``bins - 1`` inner edges), ``probs``, ``quantiles`` (one list
    per bin, then the pooled one last), ``n`` (residuals behind each list) and ``gamma`` (the
    live adaptation's step).
    """
    e, z = np.asarray(residuals, dtype=np.float64), np.asarray(level, dtype=np.float64)
    ok = np.isfinite(e)
    e, z = e[ok], z[ok]
    known = np.isfinite(z)
    inner = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    cuts = [float(c) for c in np.quantile(z[known], inner)] if known.any() else []
    idx = np.searchsorted(cuts, z[known], side="right")
    groups = [e[known][idx == b] for b in range(len(cuts) + 1)] + [e]
    probs = np.asarray(PROBS)
    return {
        "feature": feature,
        "cuts": cuts,
        "probs": list(PROBS),
        "quantiles": [[float(v) for v in np.quantile(g if len(g) else e, probs)] for g in groups],
        "n": [len(g) for g in groups],
        "gamma": gamma,
    }


_CACHE: dict[tuple[int, float], tuple[dict[str, Any], np.ndarray, np.ndarray]] = {}
_CACHE_SIZE = 8


def offsets(cal: dict[str, Any], level: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper log offsets per bin (pooled last) for a central ``level``.

    Cached per calibration object and level (scoring calls this for every micro-batch)."""
    hit = _CACHE.get((id(cal), level))
    if hit is not None and hit[0] is cal:
        return hit[1], hit[2]
    lo, hi = _offsets(cal, level)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[(id(cal), level)] = (cal, lo, hi)
    return lo, hi


def _offsets(cal: dict[str, Any], level: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval level must be in (0, 1), got {level}")
    probs = np.asarray(cal["probs"])
    lo, hi = [], []
    for q, n in zip(cal["quantiles"], cal["n"], strict=True):
        p_hi = min(1.0, (1.0 + level) / 2.0 * (1.0 + 1.0 / max(n, 1)))
        lo.append(float(np.interp(1.0 - p_hi, probs, q)))
        hi.append(float(np.interp(p_hi, probs, q)))
    return np.asarray(lo), np.asarray(hi)


def bin_index(cal: dict[str, Any], level: np.ndarray) -> np.ndarray:
    """Each row's regime bin; undefined (NaN) goes to the pooled bin (the last)."""
    z = np.asarray(level, dtype=np.float64)
    idx = np.searchsorted(np.asarray(cal["cuts"], dtype=np.float64), z, side="right")
    return np.where(np.isfinite(z), idx, len(cal["cuts"]) + 1)


def bounds(
    cal: dict[str, Any], log_rv: np.ndarray, level_values: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(rv_lo, rv_hi)`` around bias-adjusted log-RV forecasts, rows binned by regime."""
    lo, hi = offsets(cal, level)
    idx = bin_index(cal, level_values)
    lr = np.asarray(log_rv, dtype=np.float64)
    return np.exp(lr + lo[idx]), np.exp(lr + hi[idx])


def coverage(y: np.ndarray, rv_lo: np.ndarray, rv_hi: np.ndarray) -> tuple[float, float]:
    """Share of realized log RV inside the intervals, and their mean log width.

    >>> c, w = coverage(np.log([1.0, 3.0]), np.array([0.5, 0.5]), np.array([2.0, 2.0]))
    >>> c, round(w, 6)
    (0.5, 1.386294)
    """
    y = np.asarray(y)
    inside = (y >= np.log(rv_lo)) & (y <= np.log(rv_hi))
    return float(np.mean(inside)), float(np.mean(np.log(rv_hi) - np.log(rv_lo)))
