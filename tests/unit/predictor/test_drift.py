"""Calibrated drift against a model's own training reference, on real data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.common.drift import DriftLimits, fixed_limits
from services.common.features import FEATURE_MEMORY_MINUTES, FEATURE_NAMES
from services.predictor.drift import Bins, DriftMonitor, monitor_for, psi
from services.predictor.settings import PredictorSettings

CALENDAR = PredictorSettings().psi_exclude


def monitor(bundle) -> DriftMonitor:
    """As the service builds it: the bundle's calibrated limits, calendar excluded."""
    return monitor_for(bundle, CALENDAR)


def matrix(feats: pd.DataFrame) -> np.ndarray:
    return feats[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)


def test_limits_are_calibrated_per_feature_on_the_reference(bundle) -> None:
    lim = DriftLimits.from_json(bundle.drift_limits)
    assert lim.windows["rv_5m"] == 60 and lim.windows["rv_60m"] == 240
    assert lim.windows["rv_1440m"] == 1440 and lim.windows["har_168h"] == 1440
    # the limits differ per feature: each is its own null distribution's 99.9 % quantile
    assert len({round(v, 6) for v in lim.thresholds.values()}) > 5
    assert all(v > 0 for v in lim.thresholds.values())


def test_training_data_itself_has_no_drift(bundle, calm_features) -> None:
    m = monitor(bundle)
    trained_on = calm_features[calm_features["warm"]].iloc[:-60]  # rows with a known target
    trace = m.update_many(matrix(trained_on))
    assert trace.ood == {}  # inside their own ranges
    ratios = trace.ratio[np.isfinite(trace.ratio)]
    assert len(ratios) == len(trained_on) - m.window + 1  # defined once the longest window is full
    # by construction each feature exceeds its limit in at most 0.1 % of the reference's windows
    assert np.quantile(ratios, 0.99) < 0.15
    assert set(m.psi()) == set(bundle.drift_limits["features"]) - set(CALENDAR)


def test_crash_day_drifts_against_a_calm_model(bundle, calm_features, crash_features) -> None:
    m = monitor(bundle)
    m.update_many(matrix(calm_features[calm_features["warm"]].iloc[-1440:]))
    assert m.drift_ratio() is not None and m.drift_ratio() < 0.15
    day = crash_features.iloc[-1440:]  # 14-15 March 2020, in the crash's wake
    trace = m.update_many(matrix(day))
    assert m.drift_ratio() > 0.5
    assert trace.ood["rv_60m"] > 0 and "hod_sin" not in trace.ood
    # the out-of-range part is the fast signal: the ratio passes 0.15 within the first hour
    assert np.argmax(trace.ratio > 0.15) < 60


def test_window_slides_back_to_calm(bundle, calm_features, crash_features) -> None:
    m = monitor(bundle)
    m.update_many(matrix(crash_features.iloc[-1440:]))
    calm = calm_features[calm_features["warm"]]
    for start in range(0, 1500, 100):  # push the crash rows out, 100 calm rows at a time
        m.update_many(matrix(calm.iloc[start : start + 100]))
    assert m.drift_ratio() is not None and m.drift_ratio() < 0.15


def test_small_batches_give_the_same_ratios_as_one_big_batch(bundle, calm_features) -> None:
    """The live predictor feeds a few rows at a time, the replay a month at once."""
    rows = matrix(calm_features[calm_features["warm"]].iloc[-3000:])
    whole = monitor(bundle).update_many(rows).ratio
    m = monitor(bundle)
    parts = [m.update_many(rows[a : a + 7]).ratio for a in range(0, len(rows), 7)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_fixed_limits_keep_the_old_rule(bundle) -> None:
    lim = fixed_limits(bundle.feature_names, FEATURE_MEMORY_MINUTES, 1440, 0.2, 4)
    assert set(lim.windows.values()) == {1440} and set(lim.thresholds.values()) == {0.2}
    assert "rv_240m" in lim.windows and "rv_1440m" not in lim.windows  # 4 x 1440 > a day


def test_point_masses_keep_their_share() -> None:
    bins = Bins.from_quantiles([0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5])  # half the mass at 0
    assert bins.expected.tolist()[0] == 0.5
    values = np.r_[np.zeros(500), np.linspace(0.01, 5, 500)]
    counts = np.bincount(bins.index(values), minlength=len(bins.expected))
    assert psi(counts, bins.expected) < 0.01


async def test_drift_gauges_follow_the_monitor(registry, calm_features, crash_features) -> None:
    """The service's exported gauges: nothing before the window is full, then the ratio, PSI and
    each feature's own limit; the crash raises the ratio."""
    from services.common.settings import Settings
    from services.predictor.app import build_service
    from services.predictor.core import BatchResult
    from services.predictor.stream import observe_drift

    ps = PredictorSettings()
    service = build_service(Settings(), ps, registry)
    assert await service.holder.reload()
    m = service.metrics

    def feed(feats: pd.DataFrame) -> float | None:
        observe_drift(m, service.holder.models, BatchResult(matrix=matrix(feats)), ps)
        return service.metrics.registry.get_sample_value("data_drift_ratio", {"version": "1"})

    calm = calm_features[calm_features["warm"]]
    assert feed(calm.iloc[-1440:-1000]) is None  # the longest window is not full yet
    assert m.registry.get_sample_value("feature_psi", {"feature": "rv_5m"}) is None
    calm_ratio = feed(calm.iloc[-1000:])
    assert calm_ratio is not None and calm_ratio < 0.15
    limit = m.registry.get_sample_value("feature_drift_threshold", {"feature": "rv_5m"})
    assert limit == bundle_limit(registry, "rv_5m")
    crash_ratio = feed(crash_features.iloc[-1440:])
    assert crash_ratio is not None and crash_ratio > 0.5
    assert m.feature_ood.labels("rv_60m")._value.get() > 0


def bundle_limit(registry, feature: str) -> float:
    return registry.load("champion").drift_limits["features"][feature]["threshold"]
