"""Data drift against the model's training reference: PSI over a sliding window, and
out-of-distribution counts against the training ranges. Pure numpy, no I/O.

The reference of a feature is its training quantile edges ``e_0 <= ... <= e_B`` at the levels
``0, 1/B, ..., 1`` (min and max included). Equal edges (a point mass, e.g. a calendar dummy)
are merged, each bin keeping the probability mass it spans, so PSI stays honest for them too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Floor for bin shares in PSI (an empty bin would give an infinite term).
EPS = 1e-4


@dataclass(frozen=True)
class Bins:
    """Right-closed bins ``(u_{j-1}, u_j]`` over unique edges with their expected shares."""

    edges: np.ndarray  # unique interior-and-outer edges used for searchsorted
    expected: np.ndarray  # expected share of each bin (sums to 1)

    @classmethod
    def from_quantiles(cls, edges: Sequence[float]) -> Bins:
        """Bins from quantile edges at evenly spaced levels 0..1.

        >>> b = Bins.from_quantiles([0.0, 0.0, 0.0, 1.0, 2.0])  # 50% of the mass at 0
        >>> b.edges.tolist(), b.expected.tolist()
        ([0.0, 1.0], [0.5, 0.25, 0.25])
        >>> Bins.from_quantiles([0.0, 1.0, 2.0]).expected.tolist()
        [0.5, 0.5]
        """
        e = np.asarray(edges, dtype=np.float64)
        e = e[np.isfinite(e)]
        if len(e) < 2:
            return cls(np.asarray(e[:1]), np.ones(max(len(e[:1]), 1)))
        levels = np.linspace(0.0, 1.0, len(e))
        uniq = np.unique(e)
        # CDF at each unique edge: the highest level whose edge equals it
        cdf = np.array([levels[np.nonzero(e == u)[0][-1]] for u in uniq])
        shares = np.diff(np.concatenate([[0.0], cdf]))
        if shares[0] <= 0:  # continuous minimum: (-inf, e_0] has no mass; fold it into bin 1
            return cls(uniq[1:], shares[1:])
        return cls(uniq[:-1], shares)

    def index(self, values: np.ndarray) -> np.ndarray:
        """Bin index of each value (right-closed); values beyond the edges go to the outer bins.

        >>> bins = Bins.from_quantiles([0.0, 1.0, 2.0])
        >>> bins.index(np.array([-5.0, 0.5, 1.0, 1.5, 9.0])).tolist()
        [0, 0, 0, 1, 1]
        """
        return np.searchsorted(self.edges, values, side="left").clip(0, len(self.expected) - 1)


def psi(actual_counts: np.ndarray, expected: np.ndarray) -> float:
    """Population stability index of observed bin counts against expected shares.

    >>> psi(np.array([50, 50]), np.array([0.5, 0.5]))
    0.0
    >>> round(psi(np.array([90, 10]), np.array([0.5, 0.5])), 3)
    0.879
    """
    total = actual_counts.sum()
    if total == 0:
        return 0.0
    a = np.maximum(actual_counts / total, EPS)
    e = np.maximum(expected, EPS)
    return float(np.sum((a - e) * np.log(a / e)))


class DriftMonitor:
    """Sliding-window PSI per feature and OOD counting, for one model's reference.

    ``update_many(matrix)`` takes rows in ``names`` order (NaN = missing, not counted) and returns
    the OOD count per feature of those rows; ``psi()`` is the current window's PSI per feature.
    ``exclude`` names features left out of PSI: deterministic calendar features (hour and day
    encodings) are never "drift", and any window shorter than a week misrepresents them.

    ``memory`` (minutes per feature, :data:`FEATURE_MEMORY_MINUTES`) keeps slow features out of
    PSI until the window holds ``spans`` of their memories. A window of one day holds a single
    value of a weekly HAR, give or take, and that point mass is "drift" against any training
    distribution; a feature's PSI means something only once the window has seen several
    independent stretches of it. With ``spans=4`` a day-long window assesses features up to
    6 hours long:

    >>> ref = {"fast": [0.0, 1.0, 2.0, 3.0], "slow": [0.0, 1.0, 2.0, 3.0]}
    >>> m = DriftMonitor(["fast", "slow"], ref, {}, window=100, memory={"fast": 5, "slow": 60})
    >>> _ = m.update_many(np.tile([[9.0, 9.0]], (100, 1)))
    >>> sorted(m.psi()), m.drift_ratio()
    (['fast'], 1.0)
    """

    def __init__(
        self,
        names: Sequence[str],
        reference: Mapping[str, Sequence[float]],
        ranges: Mapping[str, tuple[float, float]],
        window: int = 1440,
        exclude: Iterable[str] = (),
        memory: Mapping[str, int] | None = None,
        spans: int = 4,
    ) -> None:
        skip = set(exclude)
        self.all_names = list(names)
        self.names = [n for n in names if n in reference and n not in skip]
        self.cols = [list(names).index(n) for n in self.names]
        self.bins = [Bins.from_quantiles(reference[n]) for n in self.names]
        self.ranges = [ranges.get(n, (-math.inf, math.inf)) for n in names]
        self.window = window
        self._ring = np.full((window, len(self.names)), -1, dtype=np.int32)
        self._pos = 0
        self._counts = [np.zeros(len(b.expected), dtype=np.int64) for b in self.bins]
        self._needs = [spans * (memory or {}).get(n, 0) for n in self.names]

    def update_many(self, matrix: np.ndarray) -> dict[str, int]:
        """Add rows to the window; returns {feature: rows outside the training range}."""
        if len(matrix) == 0:
            return {}
        self._add(matrix[-self.window :])
        return self._ood(matrix)

    def _add(self, matrix: np.ndarray) -> None:
        idx = np.full((len(matrix), len(self.names)), -1, dtype=np.int32)
        for j, (col, bins) in enumerate(zip(self.cols, self.bins, strict=True)):
            v = matrix[:, col]
            ok = np.isfinite(v)
            idx[ok, j] = bins.index(v[ok])
        slots = (self._pos + np.arange(len(idx))) % self.window
        old = self._ring[slots]
        for j, counts in enumerate(self._counts):
            np.subtract.at(counts, old[old[:, j] >= 0, j], 1)
            np.add.at(counts, idx[idx[:, j] >= 0, j], 1)
        self._ring[slots] = idx
        self._pos = int((self._pos + len(idx)) % self.window)

    def _ood(self, matrix: np.ndarray) -> dict[str, int]:
        lo = np.array([r[0] for r in self.ranges])
        hi = np.array([r[1] for r in self.ranges])
        with np.errstate(invalid="ignore"):
            out = ((matrix < lo) | (matrix > hi)).sum(axis=0)
        return {self.all_names[i]: int(c) for i, c in enumerate(out) if c}

    def psi(self) -> dict[str, float]:
        """PSI of each feature the current window can assess (see ``memory``)."""
        return {
            n: psi(c, b.expected)
            for n, c, b, need in zip(self.names, self._counts, self.bins, self._needs, strict=True)
            if c.sum() >= max(need, 1)
        }

    def drift_ratio(self, threshold: float = 0.2) -> float:
        """Share of features whose PSI is above ``threshold``."""
        values = list(self.psi().values())
        return sum(v > threshold for v in values) / len(values) if values else 0.0

    def filled(self) -> int:
        """Rows currently counted in the window (of the first feature)."""
        return int(self._counts[0].sum()) if self._counts else 0
