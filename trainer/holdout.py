"""The gate's out-of-sample window: what the trainer holds out, and where a window may start.

Every registered version records ``trained_until``: the last candle that any row used for fitting
or early stopping read (its origin plus the horizon). The trainer never fits on the most recent
``HOLDOUT_DAYS`` of its candles, so a fresh challenger always leaves a window behind it. The gate
scores challenger and champion only on origins at or after both versions' ``trained_until``: the
targets there were seen by neither model, and every retraining brings a new window, so selection
never reuses one test set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.common.errors import ConfigError

DAY = 86400
FIT_SPLITS = ("train", "valid")


def training_part(candles: pd.DataFrame, holdout_days: float) -> pd.DataFrame:
    """The candles the trainer may use: all but the last ``holdout_days`` (by candle time).

    >>> df = pd.DataFrame({"time": np.arange(0, 3 * DAY, 3600)})
    >>> len(training_part(df, 1)), len(training_part(df, 0))
    (48, 72)
    >>> training_part(df, 3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    services.common.errors.ConfigError: 3.0 days of candles leave nothing to train on ...
    """
    if holdout_days <= 0 or candles.empty:
        return candles
    cut = int(candles["time"].max()) + 60 - int(holdout_days * DAY)
    kept = candles[candles["time"] < cut].reset_index(drop=True)
    if kept.empty:
        span = (int(candles["time"].max()) + 60 - int(candles["time"].min())) / DAY
        raise ConfigError(
            f"{span:.1f} days of candles leave nothing to train on after the {holdout_days:g}"
            " held-out days: give more history, or lower TRAINER_HOLDOUT_DAYS (0: no gate window)"
        )
    return kept


def trained_until(times: np.ndarray, splits: np.ndarray, horizon_minutes: int) -> int:
    """The last candle time the fitting rows (``train`` and ``valid``) read: their latest origin
    plus the horizon.

    >>> trained_until(np.array([0, 3600, 7200]), np.array(["train", "valid", "test"]), 60)
    7200
    """
    used = np.isin(np.asarray(splits), FIT_SPLITS)
    if not used.any():
        return 0
    return int(np.max(np.asarray(times)[used])) + horizon_minutes * 60


def window_start(*until: int) -> int:
    """The first origin both models may be scored on: after every model's training data.

    An origin at ``t`` reads features up to ``t`` (inputs, fine to have seen) and its target from
    ``t + 60`` on, so ``t >= trained_until`` keeps every scored target unseen.

    >>> window_start(100, 250)
    250
    """
    return max(until)
