"""PSI and OOD against a model's training reference, on real data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.common.features import FEATURE_MEMORY_MINUTES, FEATURE_NAMES
from services.predictor.drift import Bins, DriftMonitor, psi
from services.predictor.settings import PredictorSettings

CALENDAR = PredictorSettings().psi_exclude


def monitor(bundle, window: int = 1440) -> DriftMonitor:
    """As the service builds it: calendar excluded, slow features held back (4 memories)."""
    return DriftMonitor(
        bundle.feature_names,
        bundle.reference,
        bundle.feature_ranges,
        window,
        CALENDAR,
        memory=FEATURE_MEMORY_MINUTES,
        spans=PredictorSettings().psi_min_spans,
    )


def median_psi(m: DriftMonitor) -> float:
    return float(np.median(list(m.psi().values())))


def matrix(feats: pd.DataFrame) -> np.ndarray:
    return feats[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)


def test_training_data_itself_has_no_drift(bundle, calm_features) -> None:
    m = monitor(bundle, window=100_000)
    trained_on = calm_features[calm_features["warm"]].iloc[:-60]  # rows with a known target
    assert m.update_many(matrix(trained_on)) == {}  # inside their own ranges
    judged = {n for n, minutes in FEATURE_MEMORY_MINUTES.items() if 4 * minutes <= len(trained_on)}
    assert set(m.psi()) == judged - set(CALENDAR)  # 3.4 days judge features up to 20 h long
    # deciles cannot place a point mass narrower than a decile (ret_1m's unchanged closes), so
    # identical data scores a little above 0 there; far below the 0.2 that counts as drift
    assert max(m.psi().values()) < 0.1
    assert m.drift_ratio() == 0.0


def test_crash_week_drifts_against_a_calm_model(bundle, crash_features) -> None:
    m = monitor(bundle)
    day2 = crash_features.iloc[2880:4320]  # 2020-03-11, before and into the crash
    ood = m.update_many(matrix(day2))
    assert m.filled() == len(day2)
    assert m.drift_ratio() > 0.5
    assert ood["rv_60m"] > 0 and ood["lrv_1440m"] > 0
    assert "hod_sin" not in ood  # calendar features stay in range
    # a day judges the features up to 6 h long; the daily and weekly ones wait for more rows
    judged = {n for n, minutes in FEATURE_MEMORY_MINUTES.items() if 4 * minutes <= len(day2)}
    assert set(m.psi()) == judged - set(CALENDAR) and "rv_1440m" not in m.psi()


def test_window_slides(bundle, calm_features, crash_features) -> None:
    m = monitor(bundle, window=1440)
    m.update_many(matrix(crash_features.iloc[5000:6440]))
    drifted = median_psi(m)
    calm = calm_features[calm_features["warm"]]
    for start in range(0, 1500, 100):  # push the crash rows out, 100 calm rows at a time
        m.update_many(matrix(calm.iloc[start : start + 100]))
    assert m.filled() == 1440
    # one calm day still differs from a 3-day reference (volatility clusters), but by far less
    assert median_psi(m) < drifted / 10


def test_point_masses_keep_their_share() -> None:
    bins = Bins.from_quantiles([0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5])  # half the mass at 0
    assert bins.expected.tolist()[0] == 0.5
    values = np.r_[np.zeros(500), np.linspace(0.01, 5, 500)]
    counts = np.bincount(bins.index(values), minlength=len(bins.expected))
    assert psi(counts, bins.expected) < 0.01


async def test_data_drift_ratio_gauge_rises_on_the_crash_week(
    registry, calm_features, crash_features
) -> None:
    """The service's exported gauge: calm held-in data, then the March 2020 crash week."""
    from services.common.settings import Settings
    from services.predictor.app import build_service
    from services.predictor.core import BatchResult
    from services.predictor.stream import observe_drift

    ps = PredictorSettings(psi_window=1440, psi_min_fill=1440)
    service = build_service(Settings(), ps, registry)
    assert await service.holder.reload()
    gauge = service.metrics.drift_ratio

    def feed(feats: pd.DataFrame) -> tuple[float, float]:
        observe_drift(service.metrics, service.holder.models, BatchResult(matrix=matrix(feats)), ps)
        psi = [s.value for s in service.metrics.feature_psi.collect()[0].samples]
        return gauge._value.get(), float(np.median(psi))

    calm_ratio, calm_psi = feed(calm_features[calm_features["warm"]].iloc[-1440:])
    crash_ratio, crash_psi = feed(crash_features.iloc[-1440:])  # the crash replaces the window
    assert crash_ratio > 0.8 and crash_ratio > calm_ratio and crash_psi > 10 * calm_psi
    assert service.metrics.feature_ood.labels("rv_60m")._value.get() > 0
