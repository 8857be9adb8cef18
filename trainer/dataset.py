"""Assemble a point-in-time dataset: features at the origins, target, baseline inputs, splits.

Features come from the shared batch path (:func:`services.common.features.featurize_many`),
computed only at the forecast origins. An origin is kept when its features are warm, its target
is complete and its HAR inputs are defined. Nothing is shuffled: rows stay in time order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from services.common.features import HORIZON_MINUTES
from trainer.settings import TrainerSettings
from trainer.targets import (
    HAR_COLUMNS,
    HOUR,
    assign_splits,
    baseline_inputs,
    clean_candles,
    log_rv_target,
    minute_grid,
    origin_times,
    split_bounds,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    """Rows (one per origin, time-ordered) and what produced them."""

    frame: pd.DataFrame  # time, split, y, har_*, hour, dow, ewma_*, then the features
    feature_names: list[str]
    feature_version: str
    bounds: tuple[int, int] | None = None  # first time of validation, of test
    split_mode: str = "none"

    def part(self, split: str, dense: bool | None = None) -> pd.DataFrame:
        """The rows of one split (``train``, ``valid`` or ``test``). Only ``train`` includes the
        denser, non-hourly origins by default; ``valid`` and ``test`` are scored hourly."""
        rows = self.frame["split"] == split
        if not (split == "train" if dense is None else dense):
            rows &= self.frame["time"] % HOUR == 0
        return self.frame[rows]

    def x(self, frame: pd.DataFrame | None = None) -> np.ndarray:
        """The model's input matrix, columns in ``feature_names`` order."""
        f = self.frame if frame is None else frame
        return f[self.feature_names].to_numpy(dtype=np.float64)


def point_in_time_rows(
    candles: pd.DataFrame,
    origins: np.ndarray,
    lambdas: Sequence[float],
    ts: TrainerSettings,
) -> tuple[pd.DataFrame, list[str], str]:
    """Features, target and baseline inputs at ``origins``; rows that cannot be used dropped."""
    from services.common.features import FEATURE_NAMES, FEATURE_VERSION, featurize_many

    grid = minute_grid(candles)
    base = baseline_inputs(grid, origins, lambdas, HORIZON_MINUTES, ts.rv_floor)
    base["y"] = log_rv_target(grid, origins, HORIZON_MINUTES, ts.rv_floor)
    log.info("computing features", extra={"origins": len(origins)})
    feats = featurize_many(candles, at=origins.tolist())
    rows = base.merge(feats, on="time", how="inner", validate="one_to_one")
    usable = rows["warm"].to_numpy(bool) & np.isfinite(rows[["y", *HAR_COLUMNS]]).all(axis=1)
    return rows[usable].reset_index(drop=True), list(FEATURE_NAMES), FEATURE_VERSION


def build_dataset(
    candles: pd.DataFrame,
    ts: TrainerSettings,
    lambdas: Sequence[float] = (),
    split: bool = True,
) -> Dataset:
    """A dataset over every usable origin of ``candles``.

    With ``split``, origins are labelled train/valid/test (embargoed ones dropped); train and
    valid may hold denser origins (``TRAINER_TRAIN_STEP_MINUTES``, for fitting), the test split only
    full hours; otherwise (evaluation)
    every full hour is an origin and ``split`` is ``"eval"``.
    """
    candles = clean_candles(candles)
    step = ts.train_step_minutes if split else 60
    origins = origin_times(candles["time"].to_numpy(), step)
    rows, names, version = point_in_time_rows(candles, origins, lambdas, ts)
    if not split:
        rows.insert(1, "split", "eval")
        return Dataset(rows, names, version)
    hourly = rows["time"].to_numpy() % HOUR == 0
    bounds, mode = split_bounds(
        rows["time"].to_numpy()[hourly], ts.valid_start, ts.test_start, ts.split_fractions
    )
    labels = assign_splits(rows["time"].to_numpy(), bounds, HORIZON_MINUTES, ts.embargo_minutes)
    rows.insert(1, "split", labels)
    keep = (labels != "") & (hourly | (labels != "test"))
    rows = rows[keep].reset_index(drop=True)
    counts = rows["split"].value_counts().to_dict()
    log.info("dataset built", extra={"rows": len(rows), "split_mode": mode, **counts})
    return Dataset(rows, names, version, bounds, mode)
