"""Forecast metrics on log RV and on variance (pure numpy).

Every model forecasts ``log RV``. Exponentiating a log forecast under-predicts variance (Jensen),
so each model's variance forecast is ``h = b * exp(2 * yhat)`` with its own bias factor ``b``
fitted on validation as ``mean(exp(2 y) / exp(2 yhat))``: the factor that minimises QLIKE there.
QLIKE of realized variance ``s = exp(2 y)`` is ``s/h - log(s/h) - 1`` (0 when perfect; robust to
noise in the realized proxy, Patton 2011). RMSE, MAE and R² are on log RV.
"""

from __future__ import annotations

import math

import numpy as np

REGIMES = ("calm", "normal", "turbulent")


def bias_factor(y: np.ndarray, yhat: np.ndarray) -> float:
    """The QLIKE-optimal variance scale of log forecasts: ``mean(exp(2y - 2yhat))``.

    >>> round(bias_factor(np.log([1.0, 2.0]), np.log([1.0, 1.0])), 6)
    2.5
    """
    return float(np.mean(np.exp(2.0 * (np.asarray(y) - np.asarray(yhat)))))


def qlike_losses(y: np.ndarray, yhat: np.ndarray, bias: float = 1.0) -> np.ndarray:
    """Per-origin QLIKE of variance forecasts ``bias * exp(2 yhat)`` against ``exp(2 y)``.

    >>> qlike_losses(np.log([1.0, 1.0]), np.log([1.0, 2.0])).round(4).tolist()
    [0.0, 0.6363]
    """
    ratio = np.exp(2.0 * (np.asarray(y) - np.asarray(yhat))) / bias
    return np.asarray(ratio - np.log(ratio) - 1.0)


def r2_score(y: np.ndarray, yhat: np.ndarray) -> float:
    """Coefficient of determination.

    >>> r2_score(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    0.5
    """
    y, yhat = np.asarray(y), np.asarray(yhat)
    return float(1.0 - np.sum((y - yhat) ** 2) / np.sum((y - y.mean()) ** 2))


def score(y: np.ndarray, yhat: np.ndarray, bias: float) -> dict[str, float]:
    """QLIKE (bias-corrected variance), RMSE, MAE and R² (log RV) of one model.

    >>> score(np.zeros(2), np.zeros(2), 1.0)
    {'qlike': 0.0, 'rmse': 0.0, 'mae': 0.0, 'r2': nan}
    """
    err = np.asarray(y) - np.asarray(yhat)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = r2_score(y, yhat)
    return {
        "qlike": float(np.mean(qlike_losses(y, yhat, bias))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": r2,
    }


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray, lags: int | None = None) -> dict:
    """Diebold-Mariano test of equal loss; ``stat < 0`` means ``a`` has lower loss.

    The long-run variance of the loss differential is Newey-West (Bartlett kernel) with
    ``lags = floor(4 (n/100)^(2/9))`` by default; the p-value is two-sided, normal.

    >>> r = diebold_mariano(np.array([1.0, 2.0, 1.0, 2.0]), np.array([2.0, 3.0, 2.0, 3.1]), 0)
    >>> round(r["stat"], 2), r["p_value"] < 0.001
    (-47.34, True)
    """
    d = np.asarray(loss_a) - np.asarray(loss_b)
    n = len(d)
    lags = int(4 * (n / 100) ** (2 / 9)) if lags is None else lags
    dc = d - d.mean()
    lrv = float(dc @ dc) / n
    for k in range(1, min(lags, n - 1) + 1):
        lrv += 2.0 * (1.0 - k / (lags + 1)) * float(dc[k:] @ dc[:-k]) / n
    stat = float(d.mean() / math.sqrt(lrv / n)) if lrv > 0 else float("nan")
    p = math.erfc(abs(stat) / math.sqrt(2.0)) if math.isfinite(stat) else float("nan")
    return {"stat": stat, "p_value": p, "mean_diff": float(d.mean()), "lags": lags, "n": n}


def regimes(level: np.ndarray, cuts: tuple[float, float] | None = None) -> np.ndarray:
    """Label each origin calm/normal/turbulent by terciles of an ex-ante volatility level.

    >>> regimes(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])).tolist()
    ['calm', 'calm', 'normal', 'normal', 'turbulent', 'turbulent']
    """
    level = np.asarray(level)
    lo, hi = cuts if cuts is not None else tuple(np.quantile(level, [1 / 3, 2 / 3]))
    idx = (level > lo).astype(int) + (level > hi).astype(int)
    return np.asarray(REGIMES, dtype=object)[idx]
