"""``volstream evaluate``: score a registered model and its own baselines on a candle file.

Every full hour of the file with warm features and a complete next hour is an origin. The
baselines are used exactly as trained in the model's run (HAR coefficients, EWMA lambda, bias
factors), never refitted on the data being scored.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from services.common import registry
from services.common.errors import FeatureVersionMismatch
from services.common.intervals import DEFAULT_LEVEL
from services.common.settings import Settings
from trainer.dataset import build_dataset
from trainer.settings import TrainerSettings
from trainer.tracking import BASELINES_FILE
from trainer.train import score_frame

REPORT_KEYS = ("n", "model", "persistence", "ewma", "har", "har_seasonal")


def finite(doc: Any) -> Any:
    """The document with non-finite floats as None (strict JSON has no NaN).

    >>> finite({"a": [1.0, float("nan")], "b": float("inf")})
    {'a': [1.0, None], 'b': None}
    """
    if isinstance(doc, dict):
        return {k: finite(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [finite(v) for v in doc]
    if isinstance(doc, float) and not math.isfinite(doc):
        return None
    return doc


def evaluate_candles(
    candles: pd.DataFrame,
    ref: str,
    settings: Settings,
    ts: TrainerSettings | None = None,
    level: float = DEFAULT_LEVEL,
) -> dict[str, Any]:
    """The report of model ``ref`` (alias or version) and its baselines over every hourly origin.

    Keys: ``n``, ``model``, ``persistence``, ``ewma``, ``har``, ``har_seasonal`` (each
    ``{qlike, rmse, mae, r2}``), then ``dm`` (the model against each baseline), ``regimes``,
    ``interval`` (when the model has an interval calibration), ``version`` and
    ``feature_version``.
    """
    ts = ts or TrainerSettings()
    bundle = registry.load_bundle(ref, settings)
    baselines = registry.read_run_json(bundle.run_id, BASELINES_FILE, settings)
    ds = build_dataset(candles, ts, lambdas=[baselines["ewma"]["lambda"]], split=False)
    if ds.feature_version != bundle.feature_version:
        raise FeatureVersionMismatch(
            f"model v{bundle.version} uses {bundle.feature_version}, "
            f"the feature module is {ds.feature_version}"
        )
    if len(ds.frame) < 2:
        raise ValueError(f"only {len(ds.frame)} usable origins: the file needs over 7 days")
    x = ds.frame[bundle.feature_names].to_numpy(dtype=np.float64)
    pred = bundle.predict_log_rv(x)
    report, _ = score_frame(ds.frame, pred, bundle.bias_factor, baselines, bundle.intervals, level)
    ordered = {k: report[k] for k in REPORT_KEYS}
    extra = {"version": bundle.version, "feature_version": bundle.feature_version}
    return ordered | {k: v for k, v in report.items() if k not in ordered} | extra
