"""The benchmarks a model must beat, fitted on the training split, saved as JSON parameters.

- ``persistence``: the log RV of the last hour (``b_har_1h``);
- ``ewma``: ``0.5 log(H sigma2)`` of an EWMA of squared 1-minute returns, lambda tuned on
  validation QLIKE over :data:`LAMBDA_GRID`;
- ``har``: log-HAR-RV (Corsi 2009) by OLS on the 1 h, 4 h, 24 h and 168 h log RV components;
- ``har_seasonal``: the same plus hour-of-day and day-of-week dummies.

Parameters are plain JSON (:func:`fit_baselines` -> :func:`predict_baselines`), so ``evaluate``
reuses them as trained instead of refitting on the data it scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from trainer.metrics import bias_factor, qlike_losses
from trainer.targets import DOW_COL, HAR_COLUMNS, HOUR_COL, ewma_column

BASELINES = ("persistence", "ewma", "har", "har_seasonal")
LAMBDA_GRID = (0.9, 0.95, 0.97, 0.98, 0.985, 0.99, 0.993, 0.995, 0.998)


def har_design(inputs: pd.DataFrame, seasonal: bool) -> np.ndarray:
    """The regressors: a constant, the HAR components, and optionally calendar dummies.

    Hour 0 and Monday are the reference categories (no collinearity with the constant).

    >>> df = pd.DataFrame({c: [1.0] for c in HAR_COLUMNS} | {HOUR_COL: [2], DOW_COL: [0]})
    >>> har_design(df, True).shape
    (1, 34)
    """
    cols = [np.ones(len(inputs))] + [inputs[c].to_numpy(dtype=np.float64) for c in HAR_COLUMNS]
    if seasonal:
        hour, dow = inputs[HOUR_COL].to_numpy(), inputs[DOW_COL].to_numpy()
        cols += [(hour == h).astype(np.float64) for h in range(1, 24)]
        cols += [(dow == d).astype(np.float64) for d in range(1, 7)]
    return np.column_stack(cols)


def fit_ols(x: np.ndarray, y: np.ndarray) -> list[float]:
    """Least-squares coefficients.

    >>> fit_ols(np.column_stack([np.ones(3), [0.0, 1.0, 2.0]]), np.array([1.0, 3.0, 5.0]))
    [1.0, 2.0]
    """
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return [round(float(c), 12) for c in coef]


def tune_ewma(valid: pd.DataFrame, lambdas: tuple[float, ...] | None = None) -> float:
    """The lambda (of those with a column) whose bias-corrected EWMA forecast has the lowest
    validation QLIKE."""
    y = valid["y"].to_numpy()
    if lambdas is None:
        lambdas = tuple(lam for lam in LAMBDA_GRID if ewma_column(lam) in valid.columns)

    def loss(lam: float) -> float:
        yhat = valid[ewma_column(lam)].to_numpy()
        return float(np.mean(qlike_losses(y, yhat, bias_factor(y, yhat))))

    return min(lambdas, key=loss)


def fit_baselines(train: pd.DataFrame, valid: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Fit every baseline on ``train`` (HAR by OLS), tune EWMA's lambda and the bias factors
    on ``valid``. Both frames hold :func:`trainer.dataset.baseline_inputs` columns and ``y``."""
    params: dict[str, dict[str, Any]] = {
        "persistence": {},
        "ewma": {"lambda": tune_ewma(valid)},
        "har": {"coef": fit_ols(har_design(train, False), train["y"].to_numpy())},
        "har_seasonal": {"coef": fit_ols(har_design(train, True), train["y"].to_numpy())},
    }
    y = valid["y"].to_numpy()
    for name, yhat in predict_baselines(params, valid).items():
        params[name]["bias_factor"] = bias_factor(y, yhat)
    return params


def refit_har(params: dict[str, dict[str, Any]], frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The same baselines with HAR coefficients refitted on ``frame`` (e.g. train + valid);
    lambda and the bias factors stay as tuned on validation."""
    out = {name: dict(p) for name, p in params.items()}
    for name in ("har", "har_seasonal"):
        out[name]["coef"] = fit_ols(
            har_design(frame, name == "har_seasonal"), frame["y"].to_numpy()
        )
    return out


def predict_baselines(params: dict[str, dict[str, Any]], inputs: pd.DataFrame) -> dict:
    """Log-RV forecasts of every baseline from its saved parameters.

    >>> df = pd.DataFrame({c: [0.5] for c in HAR_COLUMNS} | {HOUR_COL: [0], DOW_COL: [0],
    ...                    "b_ewma_0.9": [0.25]})
    >>> p = {"persistence": {}, "ewma": {"lambda": 0.9}, "har": {"coef": [1, 1, 0, 0, 0]}}
    >>> {k: v.tolist() for k, v in predict_baselines(p, df).items()}
    {'persistence': [0.5], 'ewma': [0.25], 'har': [1.5]}
    """
    out: dict[str, np.ndarray] = {}
    for name, p in params.items():
        if name == "persistence":
            out[name] = inputs[HAR_COLUMNS[0]].to_numpy(dtype=np.float64)
        elif name == "ewma":
            out[name] = inputs[ewma_column(p["lambda"])].to_numpy(dtype=np.float64)
        else:
            out[name] = har_design(inputs, name == "har_seasonal") @ np.asarray(p["coef"])
    return out
