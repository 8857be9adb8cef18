"""What the predictor's monitors need from training, stored with the model: the calibrated
drift limits (``ModelBundle.drift_limits``) and the HAR-seasonal baseline in the predictor's
terms (``ModelBundle.har_seasonal``). See ``docs/monitoring.md``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from services.common.drift import calibrate
from services.common.features import FEATURE_MEMORY_MINUTES, featurize_many
from trainer.targets import HAR_HOURS, clean_candles

log = logging.getLogger(__name__)

#: The feature holding each HAR regressor: ``lhar_{h}h`` is the log per-hour *variance*, the
#: baseline's regressor the log per-hour RV, so half of it.
HAR_FEATURES = tuple(f"lhar_{h}h" for h in HAR_HOURS)


def reference_rows(candles: pd.DataFrame, names: list[str], end: int | None) -> np.ndarray:
    """Every warm minute's features of the training period (candles before ``end``), in
    ``names`` order: the live monitor sees every minute, so its null distribution must too."""
    df = clean_candles(candles)
    if end is not None:
        df = df[df["time"] < end]
    feats = featurize_many(df)
    return feats.loc[feats["warm"].to_numpy(bool), names].to_numpy(dtype=np.float64)


def drift_limits(
    candles: pd.DataFrame,
    names: list[str],
    reference: dict[str, list[float]],
    end: int | None,
) -> dict[str, Any]:
    """The per-feature PSI windows and limits calibrated on the training period, as JSON."""
    t0 = time.perf_counter()
    rows = reference_rows(candles, names, end)
    limits = calibrate(rows, names, reference, FEATURE_MEMORY_MINUTES)
    log.info(
        "drift limits calibrated",
        extra={"rows": len(rows), "features": len(limits.windows),
               "seconds": round(time.perf_counter() - t0, 1)},
    )  # fmt: skip
    return limits.to_json()


def har_seasonal_params(baselines: dict[str, dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """The HAR-seasonal baseline's coefficients and bias factor, with the features that hold its
    regressors; empty when the feature set lacks them."""
    params = baselines.get("har_seasonal")
    if not params or any(n not in names for n in HAR_FEATURES):
        return {}
    return {
        "coef": list(params["coef"]),
        "bias_factor": float(params["bias_factor"]),
        "inputs": list(HAR_FEATURES),
        "input_scale": 0.5,
        "floor": 1e-5,
    }
