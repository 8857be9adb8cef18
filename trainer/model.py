"""The XGBoost model on log RV, and the training reference distribution of its features.

Early stopping watches validation RMSE of log RV; the booster keeps only the best rounds, so
scoring needs no ``iteration_range``. NaN inputs (undefined features) take XGBoost's learned
default branch, the same in training and serving.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import xgboost as xgb

from trainer.settings import TrainerSettings

log = logging.getLogger(__name__)
REFERENCE_BINS = 10


def xgb_params(ts: TrainerSettings, threads: int) -> dict[str, Any]:
    """Booster parameters from the settings."""
    return {
        "objective": "reg:squarederror",
        "eval_metric": "rmse",
        "tree_method": "hist",
        "max_depth": ts.xgb_max_depth,
        "eta": ts.xgb_eta,
        "min_child_weight": ts.xgb_min_child_weight,
        "subsample": ts.xgb_subsample,
        "colsample_bytree": ts.xgb_colsample,
        "nthread": threads,
        "seed": ts.seed,
    }


class _Progress(xgb.callback.TrainingCallback):
    """A log line every ``every`` rounds, so a long fit shows it is alive."""

    def __init__(self, every: int = 200) -> None:
        self.every = every

    def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
        if epoch % self.every == 0:
            rmse = evals_log.get("valid", {}).get("rmse", [float("nan")])[-1]
            log.info("boosting", extra={"round": epoch, "valid_rmse": round(float(rmse), 5)})
        return False


def fit_booster(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    names: list[str],
    ts: TrainerSettings,
    threads: int,
) -> xgb.Booster:
    """Train with early stopping on validation; returns the booster cut at its best round."""
    dtrain = xgb.DMatrix(x_train, label=y_train, feature_names=names, nthread=threads)
    dvalid = xgb.DMatrix(x_valid, label=y_valid, feature_names=names, nthread=threads)
    booster = xgb.train(
        xgb_params(ts, threads),
        dtrain,
        num_boost_round=ts.xgb_rounds,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=ts.xgb_early_stopping,
        verbose_eval=False,
        callbacks=[_Progress()],
    )
    best = booster.best_iteration
    log.info("booster fitted", extra={"best_round": best, "best_rmse": booster.best_score})
    return booster[: best + 1]


def refit_booster(
    x: np.ndarray, y: np.ndarray, rounds: int, names: list[str], ts: TrainerSettings, threads: int
) -> xgb.Booster:
    """Train a fixed number of rounds (found by early stopping) on more data, e.g. train + valid."""
    data = xgb.DMatrix(x, label=y, feature_names=names, nthread=threads)
    booster = xgb.train(xgb_params(ts, threads), data, num_boost_round=rounds, verbose_eval=False)
    log.info("booster refitted", extra={"rounds": rounds, "rows": len(y)})
    return booster


def predict(booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
    """Log-RV predictions for a matrix of rows (NaN for undefined features)."""
    return np.asarray(booster.inplace_predict(np.asarray(x, dtype=np.float64)))


def reference_distribution(
    x: np.ndarray, names: list[str], bins: int = REFERENCE_BINS
) -> tuple[dict[str, list[float]], dict[str, tuple[float, float]]]:
    """Per-feature quantile bin edges and min/max of the training rows (NaN ignored).

    The predictor compares live features with these edges (PSI) and ranges (out of range).

    >>> edges, ranges = reference_distribution(np.arange(11.0).reshape(-1, 1), ["a"], bins=2)
    >>> edges, ranges
    ({'a': [0.0, 5.0, 10.0]}, {'a': (0.0, 10.0)})
    """
    qs = np.linspace(0.0, 1.0, bins + 1)
    edges: dict[str, list[float]] = {}
    ranges: dict[str, tuple[float, float]] = {}
    for j, name in enumerate(names):
        col = x[:, j][np.isfinite(x[:, j])]
        if not len(col):
            continue
        edges[name] = [float(v) for v in np.quantile(col, qs)]
        ranges[name] = (float(col.min()), float(col.max()))
    return edges, ranges


def importance(booster: xgb.Booster) -> dict[str, float]:
    """Total gain per feature (features never split on are absent)."""
    scores = booster.get_score(importance_type="total_gain")
    return {k: float(np.sum(v)) for k, v in scores.items()}
