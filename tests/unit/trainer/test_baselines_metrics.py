"""Baselines and metrics against hand-computed values on small cases."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from trainer.baselines import fit_baselines, har_design, predict_baselines, tune_ewma
from trainer.metrics import bias_factor, diebold_mariano, qlike_losses, regimes, score
from trainer.report import build_report, improvement, table
from trainer.targets import HAR_COLUMNS, ewma_column


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Baseline inputs with a known HAR law: y = 0.1 + 0.5 h1 + 0.2 h4 + 0.1 h24 + 0.1 h168."""
    rng = np.random.default_rng(seed)
    cols = {c: rng.normal(-5.0, 0.4, n) for c in HAR_COLUMNS}
    df = pd.DataFrame(cols)
    df["b_hour"], df["b_dow"] = np.arange(n) % 24, (np.arange(n) // 24) % 7
    coef = np.array([0.1, 0.5, 0.2, 0.1, 0.1])
    df["y"] = har_design(df, False) @ coef
    df[ewma_column(0.9)] = df["y"] + rng.normal(0, 0.5, n)  # a poor EWMA
    df[ewma_column(0.99)] = df["y"] + rng.normal(0, 0.05, n)  # a good one
    return df


def test_har_ols_recovers_exact_coefficients():
    df = frame(300)
    params = fit_baselines(df, df.assign(**{ewma_column(lam): df["y"] for lam in ()}))
    assert params["har"]["coef"] == pytest.approx([0.1, 0.5, 0.2, 0.1, 0.1], abs=1e-9)
    seasonal = params["har_seasonal"]["coef"]
    assert len(seasonal) == 5 + 23 + 6
    assert seasonal[:5] == pytest.approx([0.1, 0.5, 0.2, 0.1, 0.1], abs=1e-9)
    assert seasonal[5:] == pytest.approx([0.0] * 29, abs=1e-9)  # no seasonality in this law


def test_har_seasonal_learns_an_hour_of_day_effect():
    df = frame(24 * 14)
    df["y"] = df["y"] + np.where(df["b_hour"] == 13, 0.3, 0.0)
    coef = fit_baselines(df, df)["har_seasonal"]["coef"]
    assert coef[5 + 12] == pytest.approx(0.3, abs=1e-9)  # dummy for hour 13 (hour 0 is the base)


def test_ewma_lambda_is_tuned_on_validation_and_persistence_is_the_last_hour():
    train, valid = frame(200, 1), frame(200, 2)
    assert tune_ewma(valid, (0.9, 0.99)) == 0.99
    params = fit_baselines(train, valid)
    preds = predict_baselines(params, valid)
    assert preds["persistence"].tolist() == valid["b_har_1h"].tolist()
    assert preds["ewma"].tolist() == valid[ewma_column(0.99)].tolist()
    for name, yhat in preds.items():  # bias factors fitted on validation, per model
        assert params[name]["bias_factor"] == pytest.approx(bias_factor(valid["y"], yhat))
    assert json.loads(json.dumps(params)) == params  # saved with the run as JSON


def test_qlike_and_bias_factor_by_hand():
    y, yhat = np.log([0.02, 0.01]), np.log([0.01, 0.01])
    # realized variances 4e-4, 1e-4; forecast 1e-4 each: ratios 4 and 1
    assert qlike_losses(y, yhat).tolist() == pytest.approx([4 - np.log(4) - 1, 0.0])
    b = bias_factor(y, yhat)
    assert b == pytest.approx(2.5)
    losses = [np.mean(qlike_losses(y, yhat, k)) for k in (b * 0.9, b, b * 1.1)]
    assert losses[1] < losses[0] and losses[1] < losses[2]  # b minimises QLIKE


def test_score_rmse_mae_r2_by_hand():
    s = score(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]), 1.0)
    assert s["rmse"] == pytest.approx(np.sqrt(1 / 3))
    assert s["mae"] == pytest.approx(1 / 3)
    assert s["r2"] == pytest.approx(0.5)


def test_diebold_mariano_sign_and_significance():
    rng = np.random.default_rng(0)
    base = rng.gamma(2.0, 0.1, 2000)
    better = diebold_mariano(base * 0.8, base)
    assert better["stat"] < -5 and better["p_value"] < 1e-6
    same = diebold_mariano(base, base + rng.normal(0, 0.01, 2000))
    assert abs(same["stat"]) < 4
    assert better["lags"] == int(4 * (2000 / 100) ** (2 / 9))


def test_regimes_are_terciles():
    labels = regimes(np.arange(9.0))
    assert labels.tolist() == ["calm"] * 3 + ["normal"] * 3 + ["turbulent"] * 3


def test_report_scores_every_model_alike():
    rng = np.random.default_rng(1)
    y = rng.normal(-5, 0.5, 300)
    preds = {"model": y + rng.normal(0, 0.1, 300), "har": y + rng.normal(0, 0.4, 300)}
    biases = {"model": 1.0, "har": 1.0}
    rep = build_report(y, preds, biases, level=y)
    assert rep["n"] == 300 and rep["model"]["qlike"] < rep["har"]["qlike"]
    assert rep["dm"]["har"]["stat"] < 0
    assert sum(r["n"] for r in rep["regimes"].values()) == 300
    assert improvement(rep, "har") == pytest.approx(1 - rep["model"]["qlike"] / rep["har"]["qlike"])
    assert "DM model vs har" in table(rep)
