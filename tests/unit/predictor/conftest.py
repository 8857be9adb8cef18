"""Real models for the predictor's unit tests: a small XGBoost trained on real BTC candles with
the shared feature definition and the trainer's target, wrapped in a real ``ModelBundle``."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from services.common import intervals
from services.common.features import FEATURE_NAMES, FEATURE_VERSION, featurize_many
from services.common.registry import ModelBundle
from services.common.settings import REPO_ROOT
from services.predictor.app import create_app
from services.predictor.models import StaticRegistry
from trainer.baselines import fit_ols, har_design
from trainer.dataset import log_rv_target, minute_grid
from trainer.drift_reference import drift_limits, har_seasonal_params
from trainer.metrics import bias_factor
from trainer.targets import baseline_inputs

PARQUET = REPO_ROOT.parent / "shared" / "data" / "btcusdt_1m_2023-2024.parquet"
CRASH = (
    REPO_ROOT.parent
    / "shared"
    / "data"
    / "cryptocompare"
    / "cc_histominute_BTCUSDT_2020-03-09_7d.json"
)
LEVELS = np.linspace(0.0, 1.0, 11)


def candles(start: str, days: float) -> pd.DataFrame:
    """Real BTCUSDT 1-minute candles from ``start`` (UTC) for ``days`` days."""
    t0 = int(pd.Timestamp(start, tz="UTC").timestamp())
    df = pd.read_parquet(
        PARQUET, filters=[("time", ">=", t0), ("time", "<", t0 + int(days * 86400))]
    )
    return df.reset_index(drop=True)


def crash_candles() -> pd.DataFrame:
    """The March 2020 crash week (CryptoCompare v2 envelope)."""
    import orjson

    rows = orjson.loads(Path(CRASH).read_bytes())["Data"]["Data"]
    return pd.DataFrame(rows)[["time", "open", "high", "low", "close", "volumefrom", "volumeto"]]


def train_bundle(df: pd.DataFrame, version: str = "1", trees: int = 40) -> ModelBundle:
    """Train on the warm minutes of ``df``; reference = deciles, ranges = min/max."""
    feats = featurize_many(df)
    feats = feats[feats["warm"]].reset_index(drop=True)
    y = log_rv_target(minute_grid(df), feats["time"].to_numpy())
    ok = np.isfinite(y)
    X = feats.loc[ok, list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    booster = xgb.train(
        {"max_depth": 4, "eta": 0.1, "nthread": 1, "objective": "reg:squarederror"},
        xgb.DMatrix(X, label=y[ok]),
        num_boost_round=trees,
    )
    fitted = booster.inplace_predict(X)
    bias = bias_factor(y[ok], fitted)
    level = X[:, FEATURE_NAMES.index(intervals.REGIME_FEATURE)]
    calibration = intervals.calibrate(y[ok] - fitted - 0.5 * np.log(bias), level)
    cols = {n: X[:, i] for i, n in enumerate(FEATURE_NAMES)}
    reference = {n: np.nanquantile(c, LEVELS).tolist() for n, c in cols.items()}
    return ModelBundle(
        booster=booster,
        name="volstream-rv60",
        version=version,
        run_id=f"run-{version}",
        feature_names=list(FEATURE_NAMES),
        feature_version=FEATURE_VERSION,
        bias_factor=bias,
        reference=reference,
        feature_ranges={n: (float(np.nanmin(c)), float(np.nanmax(c))) for n, c in cols.items()},
        metrics={"test_qlike": 0.2, "test_rmse": 0.4},
        trained_at=time.time(),
        intervals=calibration,
        drift_limits=drift_limits(df, list(FEATURE_NAMES), reference, None),
        har_seasonal=har_seasonal(df, feats["time"].to_numpy()[ok], y[ok]),
    )


def har_seasonal(df: pd.DataFrame, times: np.ndarray, y: np.ndarray) -> dict:
    """The trainer's HAR-seasonal baseline fitted on the same rows, as the bundle stores it."""
    grid = minute_grid(df)
    inputs = baseline_inputs(grid, times)
    design = har_design(inputs, seasonal=True)
    ok = np.isfinite(design).all(axis=1)
    coef = fit_ols(design[ok], y[ok])
    fitted = design[ok] @ np.asarray(coef)
    params = {"har_seasonal": {"coef": coef, "bias_factor": bias_factor(y[ok], fitted)}}
    return har_seasonal_params(params, list(FEATURE_NAMES))


@pytest.fixture(scope="session")
def calm_candles() -> pd.DataFrame:
    """Nine calm days of summer 2023 (the first 5.6 are the features' warm-up)."""
    return candles("2023-08-01", 9)


@pytest.fixture(scope="session")
def calm_features(calm_candles: pd.DataFrame) -> pd.DataFrame:
    return featurize_many(calm_candles)


@pytest.fixture(scope="session")
def bundle(calm_candles: pd.DataFrame) -> ModelBundle:
    """A real booster trained on calm real data."""
    return train_bundle(calm_candles)


def vectors(feats: pd.DataFrame, symbol: str = "BTC", version: str = FEATURE_VERSION) -> list:
    """FeatureVector messages from a ``featurize_many`` frame (NaN -> None)."""
    from services.common.schemas import FeatureVector

    out = []
    names = list(FEATURE_NAMES)
    values = feats[names].to_numpy(dtype=np.float64)
    for t, warm, row in zip(feats["time"].tolist(), feats["warm"].tolist(), values, strict=True):
        features = {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, row, strict=True)}
        out.append(
            FeatureVector(
                symbol=symbol,
                time=int(t),
                feature_version=version,
                warm=bool(warm),
                features=features,
                ingested_at=time.time(),
            )
        )
    return out


@pytest.fixture(scope="session")
def make_bundle():
    """``train_bundle`` (pytest's importlib mode cannot import conftest directly)."""
    return train_bundle


@pytest.fixture(scope="session")
def to_vectors():
    """``vectors``: FeatureVector messages from a feature frame."""
    return vectors


@pytest.fixture()
def registry(bundle: ModelBundle) -> StaticRegistry:
    """A registry holding the calm bundle as version 1, aliased champion."""
    return StaticRegistry(bundle, champion=bundle.version)


@pytest.fixture(scope="session")
def crash_features() -> pd.DataFrame:
    """Features of the March 2020 crash week (week-long features undefined: too little history)."""
    return featurize_many(crash_candles())


@pytest.fixture()
async def client(service):
    """An HTTP client on the predictor app of the test module's own ``service`` fixture."""
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://predictor") as c:
        yield c
