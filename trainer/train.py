"""Training: fit the model and the baselines on a dataset, score them on its test split, then
(I/O) log the run to MLflow, register the model as ``challenger`` and run the promotion gate.

:func:`fit` is pure (a dataset in, a :class:`Fitted` out); :func:`train_and_register` is the
whole ``volstream train``.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from services.common import intervals, registry
from services.common.adaptive_intervals import AdaptiveIntervals, replay
from services.common.features import HORIZON_MINUTES
from services.common.registry import ModelBundle
from services.common.settings import Settings
from trainer import holdout
from trainer.baselines import LAMBDA_GRID, fit_baselines, predict_baselines, refit_har
from trainer.dataset import Dataset, build_dataset
from trainer.drift_reference import drift_limits, har_seasonal_params
from trainer.metrics import REGIMES, bias_factor, regimes
from trainer.model import fit_booster, predict, reference_distribution, refit_booster
from trainer.report import MODEL, build_report
from trainer.settings import TrainerSettings
from trainer.targets import HAR_COLUMNS

log = logging.getLogger(__name__)


@dataclass
class Fitted:
    """A trained model, its baselines and their test report."""

    booster: Any
    bias_factor: float
    baselines: dict[str, dict[str, Any]]
    report: dict[str, Any]
    test: pd.DataFrame  # time, y, and each model's log-RV forecast on the test split
    reference: dict[str, list[float]]
    ranges: dict[str, tuple[float, float]]
    params: dict[str, Any] = field(default_factory=dict)
    intervals: dict[str, Any] = field(default_factory=dict)


def score_frame(
    frame: pd.DataFrame,
    model_pred: np.ndarray,
    model_bias: float,
    baselines: dict[str, dict[str, Any]],
    calibration: dict[str, Any] | None = None,
    level: float = intervals.DEFAULT_LEVEL,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Report the model and every baseline (as trained) on ``frame``; also the forecasts.

    With an interval ``calibration``, the report also has ``interval`` (coverage of the central
    ``level`` interval, overall and per regime, and its mean log width)."""
    preds = {MODEL: model_pred, **predict_baselines(baselines, frame)}
    biases = {MODEL: model_bias} | {k: p["bias_factor"] for k, p in baselines.items()}
    y = frame["y"].to_numpy()
    level_24h = frame[HAR_COLUMNS[2]].to_numpy()
    report = build_report(y, preds, biases, level_24h)
    forecasts = pd.DataFrame({"time": frame["time"].to_numpy(), "y": y, **preds})
    if calibration:
        lo, hi = replay_intervals(frame, adjusted(model_pred, model_bias), calibration, level)
        report["interval"] = interval_report(y, lo, hi, level, regimes(level_24h))
        forecasts["rv_lo"], forecasts["rv_hi"] = lo, hi
    return report, forecasts


def replay_intervals(
    frame: pd.DataFrame, log_rv: np.ndarray, calibration: dict[str, Any], level: float
) -> tuple[np.ndarray, np.ndarray]:
    """The intervals the live predictor would have published on ``frame`` (time-ordered rows):
    the adaptive calibration replayed from the validation state, each full-hour row teaching
    once its target is known (:mod:`services.common.adaptive_intervals`)."""
    aci = AdaptiveIntervals(calibration, level, horizon_s=60 * HORIZON_MINUTES)
    return replay(
        aci,
        frame["time"].to_numpy(),
        log_rv,
        frame[calibration["feature"]].to_numpy(dtype=np.float64),
        frame["y"].to_numpy(),
    )


def adjusted(raw: np.ndarray, bias: float) -> np.ndarray:
    """The published log RV: the raw forecast with the variance bias factor (``+ ln(b)/2``)."""
    return np.asarray(raw) + 0.5 * np.log(bias)


def interval_report(
    y: np.ndarray, lo: np.ndarray, hi: np.ndarray, level: float, labels: np.ndarray
) -> dict[str, Any]:
    """``{level, coverage, mean_log_width, by_regime: {calm, normal, turbulent}}``."""
    cover, width = intervals.coverage(y, lo, hi)
    by = {
        r: intervals.coverage(y[labels == r], lo[labels == r], hi[labels == r])[0]
        for r in REGIMES
        if np.any(labels == r)
    }
    return {"level": level, "coverage": cover, "mean_log_width": width, "by_regime": by}


def calibrate_intervals(valid: pd.DataFrame, raw: np.ndarray, bias: float) -> dict[str, Any]:
    """Interval calibration from out-of-sample validation residuals of the published log RV."""
    resid = valid["y"].to_numpy() - adjusted(raw, bias)
    return intervals.calibrate(resid, valid[intervals.REGIME_FEATURE].to_numpy())


def refit(
    ds: Dataset,
    rounds: int,
    baselines: dict[str, dict[str, Any]],
    ts: TrainerSettings,
    threads: int,
) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The model (same rounds) and the HAR coefficients refitted on train + valid (dense)."""
    both = pd.concat([ds.part("train"), ds.part("valid", dense=True)])
    y = both["y"].to_numpy()
    booster = refit_booster(ds.x(both), y, rounds, ds.feature_names, ts, threads)
    return booster, refit_har(baselines, both)


def fit(ds: Dataset, ts: TrainerSettings, threads: int) -> Fitted:
    """Fit XGBoost (early stopping on validation) and the baselines on ``train``; fit every
    bias factor on ``valid``; score everything on ``test``."""
    train, valid, test = ds.part("train"), ds.part("valid"), ds.part("test")
    if min(len(train), len(valid), len(test)) < 24:
        raise ValueError(
            f"too few origins: train {len(train)}, valid {len(valid)}, test {len(test)}"
        )
    booster = fit_booster(
        ds.x(train), train["y"].to_numpy(), ds.x(valid), valid["y"].to_numpy(),
        ds.feature_names, ts, threads,
    )  # fmt: skip
    raw_valid = predict(booster, ds.x(valid))
    bias = bias_factor(valid["y"].to_numpy(), raw_valid)
    calibration = calibrate_intervals(valid, raw_valid, bias)
    baselines = fit_baselines(train, valid)
    rounds = int(booster.num_boosted_rounds())
    if ts.refit_on_valid:
        booster, baselines = refit(ds, rounds, baselines, ts, threads)
    test_pred = predict(booster, ds.x(test))
    report, forecasts = score_frame(test, test_pred, bias, baselines, calibration)
    reference, ranges = reference_distribution(ds.x(train), ds.feature_names)
    params = {
        "best_round": rounds,
        "refit_on_valid": ts.refit_on_valid,
        "n_train": len(train),
        "n_valid": len(valid),
        "n_test": len(test),
        "split_mode": ds.split_mode,
        "valid_start": int(ds.bounds[0]) if ds.bounds else None,
        "test_start": int(ds.bounds[1]) if ds.bounds else None,
    }
    return Fitted(
        booster, bias, baselines, report, forecasts, reference, ranges, params, calibration
    )


def make_bundle(
    fitted: Fitted,
    ds: Dataset,
    symbol: str,
    settings: Settings,
    drift_limits: dict[str, Any] | None = None,
    horizon_minutes: int = 60,
) -> ModelBundle:
    """The bundle to register (name and version are filled in by the registry)."""
    metrics = {f"test_{k}": float(v) for k, v in fitted.report[MODEL].items()}
    return ModelBundle(
        booster=fitted.booster,
        name=settings.model_name,
        version="",
        run_id="",
        feature_names=ds.feature_names,
        feature_version=ds.feature_version,
        bias_factor=fitted.bias_factor,
        reference=fitted.reference,
        feature_ranges=fitted.ranges,
        metrics=metrics,
        trained_at=time.time(),
        symbol=symbol,
        horizon_minutes=horizon_minutes,
        extra={
            "test_start": fitted.params["test_start"],
            "valid_start": fitted.params["valid_start"],
        },
        intervals=fitted.intervals,
        drift_limits=drift_limits or {},
        har_seasonal=har_seasonal_params(fitted.baselines, ds.feature_names),
        trained_until=holdout.trained_until(
            ds.frame["time"].to_numpy(), ds.frame["split"].to_numpy(), horizon_minutes
        ),
    )


def served_bundle(
    candles: pd.DataFrame, ds: Dataset, fitted: Fitted, symbol: str, settings: Settings
) -> ModelBundle:
    """The bundle ``volstream train`` registers: the fit plus drift limits calibrated on the
    train split of ``candles`` (benchmarks build the served model through this too)."""
    end = int(ds.bounds[0]) if ds.bounds else None  # the reference is the train split
    limits = drift_limits(candles, ds.feature_names, fitted.reference, end)
    return make_bundle(fitted, ds, symbol, settings, limits, HORIZON_MINUTES)


def train_and_register(
    candles: pd.DataFrame,
    settings: Settings,
    ts: TrainerSettings | None = None,
    symbol: str = "BTC",
    promote: bool = True,
    source: Path | None = None,
) -> dict[str, Any]:
    """``volstream train``: dataset, fit, MLflow run, register as challenger, gate.

    The last ``HOLDOUT_DAYS`` of ``candles`` are not fitted on; the gate (the same code as
    ``volstream gate``) then scores on every candle. Returns ``{"version", "run_id", "report",
    "decision"}`` (the decision is None with ``promote=False``). Works without a broker (the
    ModelEvents are then only logged).
    """
    from trainer import gate, tracking, versioning

    ts = ts or TrainerSettings()
    t0 = time.perf_counter()
    ds = build_dataset(holdout.training_part(candles, ts.holdout_days), ts, lambdas=LAMBDA_GRID)
    with ThreadPoolExecutor(1) as pool:  # DVC (subprocesses, I/O) overlaps the fit
        versioned = pool.submit(versioning.version_dataset, ds, symbol, ts, source)
        fitted = fit(ds, ts, ts.xgb_threads)
        fingerprint = versioned.result()
    bundle = served_bundle(candles, ds, fitted, symbol, settings)
    version, run_id = tracking.log_training_run(bundle, fitted, ds, ts, settings, fingerprint)
    registry.client(settings).set_tag(run_id, gate.CANDLES_TAG, str(source or "lake"))
    gate.announce_challenger(settings, version, run_id, fitted.report)
    decision = gate.run(settings, ts, lambda: candles) if promote else None
    log.info("training done", extra={"version": version, "seconds": time.perf_counter() - t0})
    return {"version": version, "run_id": run_id, "report": fitted.report, "decision": decision}
