"""Log one training run to MLflow: parameters, metrics, features, data fingerprint, plots,
the reference distribution and the baselines' parameters, then register the model.

One experiment per symbol and horizon (``volstream/BTC/rv60``). The run's artifacts under
``bundle/`` are what :func:`services.common.registry.load_bundle` and ``evaluate`` read back.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from services.common import registry
from services.common.features import HORIZON_MINUTES
from services.common.registry import ModelBundle
from services.common.settings import Settings
from trainer.dataset import Dataset
from trainer.model import importance, xgb_params
from trainer.settings import TrainerSettings

log = logging.getLogger(__name__)
BASELINES_FILE = "baselines.json"


def flat_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The report as MLflow metrics: ``test_qlike`` (model), ``test_har_qlike``, ``dm_har_stat``...

    >>> m = flat_metrics({"n": 3, "model": {"qlike": 0.2}, "har": {"qlike": 0.3},
    ...                   "dm": {"har": {"stat": -2.5, "p_value": 0.01}}})
    >>> m["test_qlike"], m["test_har_qlike"], m["dm_har_stat"]
    (0.2, 0.3, -2.5)
    """
    out: dict[str, float] = {"test_n": float(report["n"])}
    for name, scores in report.items():
        if isinstance(scores, dict) and "qlike" in scores:
            prefix = "test_" if name == "model" else f"test_{name}_"
            out.update({prefix + k: float(v) for k, v in scores.items()})
    for other, dm in report.get("dm", {}).items():
        out[f"dm_{other}_stat"] = float(dm["stat"])
        out[f"dm_{other}_p_value"] = float(dm["p_value"])
    interval = report.get("interval")
    if interval:
        out["test_interval_coverage"] = float(interval["coverage"])
        out["test_interval_mean_log_width"] = float(interval["mean_log_width"])
        for regime, c in interval["by_regime"].items():
            out[f"test_interval_coverage_{regime}"] = float(c)
    return out


def _params(fitted: Any, ds: Dataset, ts: TrainerSettings, settings: Settings) -> dict[str, Any]:
    xgb = {f"xgb_{k}": v for k, v in xgb_params(ts, ts.xgb_threads).items()}
    return {
        **xgb,
        **fitted.params,
        "horizon_minutes": HORIZON_MINUTES,
        "rv_floor": ts.rv_floor,
        "embargo_minutes": ts.embargo_minutes,
        "train_step_minutes": ts.train_step_minutes,
        "feature_version": ds.feature_version,
        "n_features": len(ds.feature_names),
        "bias_factor": fitted.bias_factor,
        "ewma_lambda": fitted.baselines["ewma"]["lambda"],
    }


def log_training_run(
    bundle: ModelBundle,
    fitted: Any,
    ds: Dataset,
    ts: TrainerSettings,
    settings: Settings,
    fingerprint: dict[str, Any],
) -> tuple[str, str]:
    """One MLflow run for this training; returns (registered version, run id)."""
    import mlflow

    from trainer import plots

    registry._use_server(settings)
    mlflow.set_experiment(registry.experiment_name(bundle.symbol, HORIZON_MINUTES))
    with mlflow.start_run() as run:
        mlflow.log_params(_params(fitted, ds, ts, settings))
        mlflow.log_metrics(flat_metrics(fitted.report))
        mlflow.set_tags(
            {"feature_version": ds.feature_version, "symbol": bundle.symbol}
            | {f"data.{k}": str(v) for k, v in fingerprint.items()}
        )
        mlflow.log_dict({"features": ds.feature_names}, "features.json")
        mlflow.log_dict(fitted.report, "test_report.json")
        mlflow.log_dict(importance(fitted.booster), "feature_importance.json")
        with tempfile.TemporaryDirectory() as tmp:
            for path in plots.save_all(fitted, Path(tmp)):
                mlflow.log_artifact(str(path), "plots")
        bundle = replace(bundle, run_id=run.info.run_id)
        version = registry.log_bundle(bundle, settings, files={BASELINES_FILE: fitted.baselines})
        mlflow.set_tag("registered_version", version)
    return version, run.info.run_id
