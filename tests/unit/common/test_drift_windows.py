"""The drift monitor's sliding windows, checked against PSI computed from scratch on the rows of
each window, for any way of splitting the stream into batches (its cumulative counts are kept in
a ring that wraps many times here)."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.drift import Bins, DriftLimits, DriftMonitor, psi

NAMES = ["a", "b", "c"]
WINDOWS = {"a": 60, "b": 200}  # "c" has no window: not judged
OOD_WINDOW = 30


def stream(n: int = 1500, seed: int = 7) -> np.ndarray:
    """Rows whose distribution moves (so PSI varies), with undefined values and values out of
    range."""
    rng = np.random.default_rng(seed)
    drift = np.linspace(0.0, 2.0, n)[:, None]
    rows = rng.normal(size=(n, len(NAMES))) + drift * np.array([1.0, 0.3, 0.0])
    rows[rng.random(rows.shape) < 0.1] = np.nan
    return rows


def build(psi_limit: float = 0.2) -> tuple[DriftMonitor, dict[str, Bins]]:
    deciles = np.quantile(np.random.default_rng(1).normal(size=5000), np.linspace(0, 1, 11))
    ref = {n: deciles for n in NAMES}
    limits = DriftLimits(
        WINDOWS, dict.fromkeys(WINDOWS, psi_limit), ood_window=OOD_WINDOW, ood_share=0.2
    )
    ranges = {n: (-2.5, 2.5) for n in NAMES}
    mon = DriftMonitor(NAMES, ref, ranges, limits)
    return mon, {n: Bins.from_quantiles(ref[n]) for n in WINDOWS}


def from_scratch(rows: np.ndarray, end: int, bins: dict[str, Bins]) -> dict[str, float]:
    """PSI of each feature over its window of rows before ``end``, with no state at all."""
    out = {}
    for j, name in enumerate(NAMES):
        if name not in WINDOWS:
            continue
        v = rows[max(0, end - WINDOWS[name]) : end, j]
        v = v[np.isfinite(v)]
        if len(v) < 0.8 * WINDOWS[name]:
            continue  # not judged yet (MIN_DEFINED)
        b = bins[name]
        out[name] = psi(np.bincount(b.index(v), minlength=len(b.expected)), b.expected)
    return out


@pytest.mark.parametrize("sizes", [[1], [7], [1, 250, 3, 64], [1500]])
def test_every_row_matches_psi_from_scratch(sizes: list[int]) -> None:
    rows = stream()
    mon, bins = build()
    psis, a, k = [], 0, 0
    while a < len(rows):
        size = sizes[k % len(sizes)]
        psis.append(mon.update_many(rows[a : a + size]).psi)
        a, k = a + size, k + 1
    got = np.concatenate(psis)
    assert mon._slots < len(rows) / 3  # the ring wrapped several times
    for end in range(1, len(rows) + 1):
        want = from_scratch(rows, end, bins)
        for j, name in enumerate(mon.names):
            if name in want:
                assert got[end - 1, j] == pytest.approx(want[name], rel=1e-12, abs=1e-15)
            else:
                assert np.isnan(got[end - 1, j])
    assert mon.psi() == pytest.approx(from_scratch(rows, len(rows), bins), rel=1e-12)


def test_out_of_range_share_slides() -> None:
    """A burst of out-of-range values drifts the feature while it is in the last OOD_WINDOW rows
    (here above 20 % of them), and no longer once it has slid out."""
    rows = np.random.default_rng(3).normal(size=(2000, len(NAMES))).clip(-2.4, 2.4)
    rows[1000:1010, 0] = 9.0  # 10 of 30 rows: 33 %
    mon, _ = build(psi_limit=np.inf)  # only the range rule can drift
    ratio = np.concatenate([mon.update_many(rows[a : a + 13]).ratio for a in range(0, 2000, 13)])
    drifted = np.flatnonzero(ratio > 0)
    assert drifted[0] == 1006  # the 7th burst row makes 7/30 > 20 %
    assert drifted[-1] == 1003 + OOD_WINDOW - 1  # while rows 1003..1009 are all in it


def test_stride_judges_the_same_rows_the_same_way() -> None:
    rows = stream()
    full = build()[0].update_many(rows).psi
    strided = build()[0].update_many(rows, stride=5).psi
    np.testing.assert_array_equal(strided[4::5], full[4::5])
    assert np.isnan(strided[np.arange(len(rows)) % 5 != 4]).all()


@pytest.mark.parametrize("sizes", [[1], [7], [1, 250, 3, 64], [1500]])
def test_judging_only_the_last_row_keeps_the_state_of_judging_every_row(sizes: list[int]) -> None:
    """The live predictor judges only a fold's last row: after every fold, the same PSI, ratio
    and out-of-range counts as judging each row (the other rows are NaN)."""
    rows = stream(n=5000)  # longer than a CHUNK: a fold of 1500+ rows takes several steps
    every, last = build()[0], build()[0]
    a, k = 0, 0
    while a < len(rows):
        size = sizes[k % len(sizes)] * (3 if k % 5 == 4 else 1)
        full, only = (
            every.update_many(rows[a : a + size]),
            last.update_many(rows[a : a + size], last=True),
        )
        np.testing.assert_array_equal(only.psi[-1], full.psi[-1])
        np.testing.assert_array_equal(only.ratio[-1:], full.ratio[-1:])
        assert np.isnan(only.psi[:-1]).all() and np.isnan(only.ratio[:-1]).all()
        assert only.ood == full.ood
        assert (last.psi(), last.drift_ratio()) == (every.psi(), every.drift_ratio())
        a, k = a + size, k + 1
    assert last.warm()
