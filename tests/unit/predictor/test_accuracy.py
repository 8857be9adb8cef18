"""Realized volatility from the stream's closes, joined with predictions; rolling accuracy."""

from __future__ import annotations

import math

import numpy as np

from services.common.schemas import Prediction
from services.predictor.accuracy import LiveAccuracy, RealizedJoiner, RollingAccuracy, qlike
from trainer.dataset import log_rv_target, minute_grid


def pred(t: int, log_rv: float = -5.0, role: str = "champion") -> Prediction:
    return Prediction(
        symbol="BTC",
        time=t,
        rv=math.exp(log_rv),
        log_rv=log_rv,
        model_name="m",
        model_version="1",
        role=role,
        feature_version="v",
    )


def closes(df) -> list[tuple[str, int, float]]:
    return [("BTC", int(t), float(c)) for t, c in zip(df["time"], df["close"], strict=True)]


def test_realized_matches_the_training_target(calm_candles) -> None:
    df = calm_candles.iloc[:400]
    origins = df["time"].to_numpy()[[0, 100, 250]]
    j = RealizedJoiner(60)
    assert j.add_predictions([pred(int(t)) for t in origins]) == []
    resolved = j.add_closes(closes(df))
    assert [r.prediction.time for r in resolved] == origins.tolist()
    target = log_rv_target(minute_grid(df), origins)
    np.testing.assert_allclose([math.log(r.rv_real) for r in resolved], target, rtol=1e-9)
    assert j.pending() == 0


def test_predictions_wait_for_the_horizon_and_gaps_are_dropped(calm_candles) -> None:
    df = calm_candles.iloc[:200]
    j = RealizedJoiner(60)
    t0 = int(df["time"].iloc[0])
    j.add_closes(closes(df.iloc[:60]))  # 59 minutes after t0: not yet known
    assert j.add_predictions([pred(t0)]) == [] and j.pending() == 1
    holed = df.drop(index=100)  # the candle at t0+100 min is missing
    assert len(j.add_closes(closes(holed.iloc[60:61]))) == 1  # t0+60 min closes the horizon
    j.add_predictions([pred(t0 + 60 * 50)])
    assert j.add_closes(closes(holed.iloc[60:])) == []
    assert j.dropped == 1 and j.pending() == 0


def test_rolling_accuracy_per_role_and_adwin(calm_candles) -> None:
    acc = LiveAccuracy(60, window=500)
    rng = np.random.default_rng(7)
    from services.predictor.accuracy import Resolved

    drifts = acc.observe(
        Resolved(pred(60 * i, -5.0 + rng.normal(0, 0.05)), math.exp(-5.0)) for i in range(1000)
    )
    assert drifts == 0
    drifts = acc.observe(
        Resolved(pred(60 * i, -3.0 + rng.normal(0, 0.05)), math.exp(-5.0))
        for i in range(1000, 1300)
    )
    assert drifts >= 1
    acc.observe([Resolved(pred(0, -5.0, role="shadow"), math.exp(-5.0))])
    assert acc.roles["shadow"].qlike() == 0.0 and len(acc.roles["champion"]) == 500
    assert acc.roles["champion"].rmse() > 1.0


def test_qlike_is_asymmetric() -> None:
    assert qlike(0.02, 0.01) > qlike(0.01, 0.02) > 0
    roll = RollingAccuracy()
    assert math.isnan(roll.qlike()) and math.isnan(roll.rmse())
