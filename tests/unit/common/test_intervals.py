"""Regime-conditional conformal intervals: coverage per regime on fresh draws, not only pooled."""

from __future__ import annotations

import numpy as np
import pytest

from services.common import intervals
from services.common.schemas import Prediction


def draws(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Residuals whose spread and skew depend on the regime variable (as log-RV errors do)."""
    level = rng.normal(size=n)
    scale = np.where(level < -0.43, 1.6, np.where(level > 0.43, 0.7, 1.0))
    return rng.gumbel(size=n) * scale, level


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_each_regime_is_covered_on_new_data(level: float) -> None:
    rng = np.random.default_rng(11)
    sample = draws(rng, 6000)
    cal = intervals.calibrate(*sample, feature="z")
    resid, z = draws(rng, 30_000)
    lo, hi = intervals.bounds(cal, np.zeros(len(z)), z, level)
    inside = (np.log(lo) <= resid) & (resid <= np.log(hi))
    bins = intervals.bin_index(cal, z)
    for b in range(3):
        assert abs(inside[bins == b].mean() - level) < 0.02
    pooled = intervals.calibrate(*sample, bins=1, feature="z")  # right on average only
    plo, phi = intervals.bounds(pooled, np.zeros(len(z)), z, level)
    pin = (np.log(plo) <= resid) & (resid <= np.log(phi))
    assert abs(pin.mean() - level) < 0.02
    assert abs(pin[bins == 0].mean() - level) > 0.04


def test_undefined_regime_uses_pooled_residuals() -> None:
    rng = np.random.default_rng(3)
    cal = intervals.calibrate(*draws(rng, 3000), feature="z")
    lo, hi = intervals.bounds(cal, np.zeros(1), np.array([np.nan]), 0.8)
    plo, phi = intervals.offsets(cal, 0.8)
    assert (np.log(lo[0]), np.log(hi[0])) == pytest.approx((plo[-1], phi[-1]))
    with pytest.raises(ValueError):
        intervals.offsets(cal, 1.0)


def test_prediction_schema_checks_the_interval() -> None:
    base = dict(symbol="BTC", time=60, rv=0.004, log_rv=float(np.log(0.004)), model_name="m",
                model_version="1", role="champion", feature_version="v")  # fmt: skip
    ok = Prediction(**base, rv_lo=0.003, rv_hi=0.006, interval_level=0.8)
    assert Prediction.from_bytes(ok.to_bytes()) == ok
    assert Prediction(**base).rv_lo is None
    for bad in (
        {"rv_lo": 0.003, "rv_hi": 0.006},  # no level
        {"rv_lo": 0.006, "rv_hi": 0.003, "interval_level": 0.8},  # reversed
        {"rv_lo": 0.003, "rv_hi": 0.006, "interval_level": 1.0},  # not a central probability
        {"rv_lo": -0.1, "rv_hi": 0.006, "interval_level": 0.8},
    ):
        with pytest.raises(ValueError):
            Prediction(**base, **bad)
