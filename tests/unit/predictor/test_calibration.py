"""The live adaptive interval calibration: the predictor's path (scoring core, realized-RV
joiner, learner) publishes exactly the intervals ``evaluate``'s replay computes on the same
sequence, whatever the order of the closes and the features; the state survives a restart of the
same model and a new version starts from its own calibration."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from services.common.adaptive_intervals import AdaptiveIntervals, replay
from services.common.intervals import REGIME_FEATURE
from services.predictor.accuracy import LiveAccuracy
from services.predictor.calibration import IntervalLearner, live_intervals
from services.predictor.core import RawRecord, process
from trainer.dataset import log_rv_target, minute_grid

GAMMA = 0.05  # large, so a few days of lessons visibly move the intervals


def with_gamma(bundle):
    from dataclasses import replace

    return replace(bundle, intervals={**bundle.intervals, "gamma": GAMMA})


def live_run(candles, feats, bundle, to_vectors, closes_first: bool, store=None):
    """Score minute by minute as the stream does, feeding the closes before or after each
    minute's features; returns the published champion predictions and the state."""
    aci = AdaptiveIntervals(bundle.intervals, 0.8)  # the step of the bundle's calibration
    holder = SimpleNamespace(
        models=SimpleNamespace(
            champion=SimpleNamespace(bundle=bundle, intervals=aci), challenger=None
        )
    )
    acc = LiveAccuracy(60, 1440, 1)
    acc.learner = IntervalLearner(holder, store, 0.8)
    close = dict(zip(candles["time"].tolist(), candles["close"].tolist(), strict=True))
    published = []
    for i, fv in enumerate(to_vectors(feats)):
        rec = RawRecord("features", 0, i, b"BTC", fv.to_bytes())
        feed = [("BTC", fv.time, close[fv.time])]
        if closes_first:
            acc.observe(acc.joiner.add_closes(feed))
        preds = process([rec], bundle, None, 60, 0.8, adaptive=(aci, None)).predictions
        published += preds
        acc.observe(acc.joiner.add_predictions(preds))
        if not closes_first:
            acc.observe(acc.joiner.add_closes(feed))
    return published, aci


@pytest.mark.parametrize("closes_first", [True, False])
def test_live_and_replay_publish_the_same_intervals(
    calm_candles, calm_features, bundle, to_vectors, closes_first
) -> None:
    warm = calm_features[calm_features["warm"]].reset_index(drop=True)
    bundle = with_gamma(bundle)
    published, aci = live_run(calm_candles, warm, bundle, to_vectors, closes_first)
    assert aci.updates("BTC") > 50  # days of full-hour lessons
    hourly = [p for p in published if p.time % 3600 == 0]
    t = np.array([p.time for p in hourly])
    y = log_rv_target(minute_grid(calm_candles), t)
    ok = np.isfinite(y)
    regime = warm.set_index("time").loc[t, REGIME_FEATURE].to_numpy()
    log_rv = np.array([p.log_rv for p in hourly])
    fresh = AdaptiveIntervals(bundle.intervals, 0.8, gamma=GAMMA)
    lo, hi = replay(fresh, t[ok], log_rv[ok], regime[ok], y[ok])
    np.testing.assert_allclose(
        [p.rv_lo for p, k in zip(hourly, ok, strict=True) if k], lo, rtol=1e-12
    )
    np.testing.assert_allclose(
        [p.rv_hi for p, k in zip(hourly, ok, strict=True) if k], hi, rtol=1e-12
    )
    static = AdaptiveIntervals(bundle.intervals, 0.8, gamma=0.0)
    slo, _ = replay(static, t[ok], log_rv[ok], regime[ok], y[ok])
    assert not np.allclose(slo, lo)  # the adaptation did move them


def test_state_survives_a_restart_of_the_same_model_only(
    calm_candles, calm_features, bundle, to_vectors, tmp_path
) -> None:
    from dataclasses import replace

    warm = calm_features[calm_features["warm"]].reset_index(drop=True).iloc[:2000]
    model = with_gamma(bundle)
    _, aci = live_run(calm_candles, warm, model, to_vectors, True, store=tmp_path)
    assert aci.updates("BTC") > 10
    restarted = live_intervals(model, 0.8, tmp_path)
    assert restarted is not None  # the lessons still waiting for their time are lost
    assert aci.updates("BTC") - 2 <= restarted.updates("BTC") <= aci.updates("BTC")
    was, now = aci.state()["BTC"], restarted.state()["BTC"]
    for tail in ("a_lo", "a_hi"):  # within the lessons still queued at the stop
        assert np.abs(np.subtract(was[tail], now[tail])).max() <= 2 * GAMMA
    assert now != live_intervals(model, 0.8, None).state().get("BTC")
    other = live_intervals(replace(model, version="2"), 0.8, tmp_path)
    assert other is not None and other.updates("BTC") == 0  # a new version: from validation
    assert live_intervals(model, 0.8, None).updates("BTC") == 0  # no store: from validation
