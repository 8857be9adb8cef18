"""The adaptive interval calibration (ACI per regime bin and tail): it follows a change of the
error scale that the static calibration cannot, waits for each prediction's target, and its
state survives a snapshot."""

from __future__ import annotations

import numpy as np
import pytest

from services.common import intervals
from services.common.adaptive_intervals import AdaptiveIntervals, replay

H = 3600


def calibration(rng: np.random.Generator) -> dict:
    """Validation: unit-normal errors, three regime bins of a uniform regime variable."""
    return intervals.calibrate(rng.normal(size=3000), rng.uniform(size=3000), feature="z")


@pytest.mark.parametrize("scale", [0.5, 1.8])
def test_coverage_follows_a_change_of_error_scale(scale: float) -> None:
    """After validation, errors get narrower (or wider) in every regime: the static intervals
    over- (under-) cover, the adaptive ones come back to the level in each bin."""
    rng = np.random.default_rng(7)
    cal = calibration(rng)
    n = 6000
    t, z, y = H * np.arange(n), rng.uniform(size=n), scale * rng.normal(size=n)
    static = replay(AdaptiveIntervals(cal, 0.8, gamma=0.0), t, np.zeros(n), z, y)
    adapted = replay(AdaptiveIntervals(cal, 0.8, gamma=0.01), t, np.zeros(n), z, y)
    late = slice(n // 3, None)  # after ~7 weeks of lessons per bin
    bins = intervals.bin_index(cal, z)[late]
    for lo, hi, ok in ((*static, False), (*adapted, True)):
        inside = ((np.log(lo) <= y) & (y <= np.log(hi)))[late]
        assert bool(abs(inside.mean() - 0.8) < 0.02) is ok
        for b in range(3):
            assert bool(abs(inside[bins == b].mean() - 0.8) < 0.04) is ok


def test_a_lesson_waits_until_its_target_is_known() -> None:
    """The prediction at t resolves at t + H; its lesson moves intervals from the next candle
    on, not the one whose close completes the target (live, that race has no winner)."""
    rng = np.random.default_rng(1)
    aci = AdaptiveIntervals(calibration(rng), 0.8, gamma=0.05)

    def upper(t: int) -> float:
        return float(aci.predict_many("BTC", [t], np.zeros(1), np.array([0.5]))[1][0])

    before = upper(0)
    assert aci.learn_one("BTC", 0, 10.0)  # a miss above
    assert not aci.learn_one("BTC", 0, 10.0)  # once
    assert not aci.learn_one("BTC", 60, 10.0)  # not a full hour: never issued to teach
    assert upper(H) == before and aci.updates("BTC") == 0
    assert upper(H + 60) > before and aci.updates("BTC") == 1
    assert aci.updates("ETH") == 0  # one state per symbol


def test_peek_learns_nothing_and_state_round_trips() -> None:
    rng = np.random.default_rng(2)
    cal = calibration(rng)
    aci = AdaptiveIntervals(cal, 0.8, gamma=0.05)
    t = H * np.arange(50)
    replay(aci, t, np.zeros(50), rng.uniform(size=50), 3.0 * rng.normal(size=50), symbol="BTC")
    z = np.array([0.1, 0.5, 0.9, np.nan])
    seen = aci.peek_many("BTC", np.zeros(4), z)
    assert aci.peek_many("BTC", np.zeros(4), z)[1].tolist() == seen[1].tolist()
    fresh = AdaptiveIntervals(cal, 0.8, gamma=0.05)
    assert not np.allclose(fresh.peek_many("BTC", np.zeros(4), z)[1], seen[1])
    fresh.restore(aci.state())
    np.testing.assert_array_equal(fresh.peek_many("BTC", np.zeros(4), z)[1], seen[1])
    with pytest.raises(ValueError):
        AdaptiveIntervals(intervals.calibrate(rng.normal(size=99), np.zeros(99), bins=1)).restore(
            aci.state()
        )
