"""Data drift against a model's training reference, calibrated on that reference. Pure numpy.

Shared by the trainer (which calibrates the limits and stores them with the model) and the
predictor and ``volstream monitor replay`` (which run :class:`DriftMonitor` live or offline).

**Statistic.** PSI of a feature's sliding window of vectors against its training deciles
(:class:`Bins`); PSI is what operators already read (``feature_psi``).

**Calibrated limit.** PSI over a window of autocorrelated volatility is large whenever that
stretch is calmer or busier than the training period on average, so a fixed limit cannot tell a
normal week from an unseen market. Each feature therefore gets its own limit: the
:data:`NULL_QUANTILE` quantile of the PSI of *every* window of the same length inside the training
reference itself (NannyML's idea: the metric's variation between chunks of the reference). That
null distribution already holds the reference's calm and busy stretches, so a live window is
"drift" only when it is further from the reference than 999 in 1000 of its own windows were.

**Window per feature** (:func:`window_for`): ``4 x`` the feature's memory
(``FEATURE_MEMORY_MINUTES``), between :data:`MIN_WINDOW` and :data:`MAX_WINDOW` minutes. A fast
feature is judged over an hour, a daily one over a day; longer windows would only delay
detection, since the limit already accounts for how much a window of that length varies.

**Out of distribution, fast.** PSI saturates: a window whose values all sit in the top decile has
the same PSI whether they are a busy day of the reference or a crash far beyond it, and a long
window needs hours to fill with a shock. So a feature also counts as drifted when more than
:data:`OOD_SHARE` of its last :data:`OOD_WINDOW` vectors lie outside the training range (min..max),
which by construction never happens inside the reference. Both feed the one decision
(``data_drift_ratio``: the share of judged features beyond their own limit or out of range).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Floor for bin shares in PSI (an empty bin would give an infinite term).
EPS = 1e-4
#: The null quantile that sets each feature's limit.
NULL_QUANTILE = 0.999
#: Shortest and longest PSI window (vectors, i.e. minutes for one symbol).
MIN_WINDOW, MAX_WINDOW = 60, 1440
#: A feature's window spans this many of its memories.
WINDOW_SPANS = 4
#: Out-of-range share over the last OOD_WINDOW vectors above which a feature counts as drifted.
OOD_WINDOW, OOD_SHARE = 60, 0.25
#: A feature is judged once this share of its window holds defined values.
MIN_DEFINED = 0.8
#: Windows of the reference scored for the null distribution: one ending every this many rows.
NULL_STRIDE = 5
#: Rows per internal step (bounds memory of the cumulative counts).
CHUNK = 4096
#: Steps of at most this many rows bin all features in one comparison, longer ones feature by
#: feature (the first is ~5x cheaper for a live fold of a few rows, the second for thousands).
BIN_AT_ONCE = 128


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
    return float(psi_many(np.asarray(actual_counts)[None, :], np.asarray(expected))[0])


def psi_many(counts: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """PSI of each row of bin counts (``(..., B)``) against expected shares ``(..., B)``; 0 for
    an empty row."""
    total = counts.sum(axis=-1, keepdims=True)
    a = np.maximum(counts / np.maximum(total, 1), EPS)
    e = np.maximum(expected, EPS)
    out = np.sum((a - e) * np.log(a / e), axis=-1)
    return np.where(total[..., 0] > 0, out, 0.0)


def window_for(memory_minutes: int) -> int:
    """A feature's PSI window: ``WINDOW_SPANS`` memories, clipped to ``[MIN_WINDOW, MAX_WINDOW]``.

    >>> window_for(5), window_for(60), window_for(240), window_for(10080)
    (60, 240, 960, 1440)
    """
    return int(min(max(WINDOW_SPANS * memory_minutes, MIN_WINDOW), MAX_WINDOW))


@dataclass(frozen=True)
class DriftLimits:
    """Per feature: its PSI window and its limit; plus the out-of-range rule. Stored with the
    model (``ModelBundle.drift_limits``, as :meth:`to_json`)."""

    windows: dict[str, int]
    thresholds: dict[str, float]
    ood_window: int = OOD_WINDOW
    ood_share: float = OOD_SHARE
    method: str = "psi-null-quantile"
    quantile: float = NULL_QUANTILE
    meta: dict[str, Any] = field(default_factory=dict)
    min_defined: dict[str, int] = field(default_factory=dict)
    """Defined values a feature's window needs to be judged (default ``MIN_DEFINED`` of it)."""
    min_rows: int | None = None
    """Rows before the ratio is defined (default: the longest window)."""

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for ``bundle.json``.

        >>> lim = DriftLimits({"a": 60}, {"a": 0.5})
        >>> DriftLimits.from_json(lim.to_json()) == lim
        True
        """
        return {
            "method": self.method,
            "quantile": self.quantile,
            "ood_window": self.ood_window,
            "ood_share": self.ood_share,
            "features": {
                n: {"window": w, "threshold": self.thresholds[n]} for n, w in self.windows.items()
            },
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> DriftLimits:
        feats = doc["features"]
        return cls(
            windows={n: int(v["window"]) for n, v in feats.items()},
            thresholds={n: float(v["threshold"]) for n, v in feats.items()},
            ood_window=int(doc.get("ood_window", OOD_WINDOW)),
            ood_share=float(doc.get("ood_share", OOD_SHARE)),
            method=str(doc.get("method", "psi-null-quantile")),
            quantile=float(doc.get("quantile", NULL_QUANTILE)),
            meta=dict(doc.get("meta", {})),
        )


def fixed_limits(
    names: Iterable[str],
    memory: Mapping[str, int],
    window: int = 10_080,
    threshold: float = 0.2,
    spans: int = 4,
    min_fill: int = 1440,
) -> DriftLimits:
    """The old rule, for models trained before calibration (and for comparison): one window,
    one PSI limit, a feature judged once the window holds ``spans`` of its memories, the ratio
    exported once ``min_fill`` rows were seen. No out-of-range part (``ood_share`` is infinite).
    """
    kept = [n for n in names if spans * memory.get(n, 0) <= window]
    return DriftLimits(
        {n: window for n in kept},
        {n: threshold for n in kept},
        ood_window=OOD_WINDOW,
        ood_share=math.inf,
        method="fixed-psi",
        quantile=math.nan,
        min_defined={n: max(spans * memory.get(n, 0), 1) for n in kept},
        min_rows=min(min_fill, window),
    )


@dataclass
class DriftTrace:
    """Per-row results of one :meth:`DriftMonitor.update_many` call."""

    ood: dict[str, int]  # rows outside the training range, per feature (all features)
    ratio: np.ndarray  # share of judged features drifted after each row (NaN while not warm)
    psi: np.ndarray  # (rows, features) PSI after each row (NaN where not judged)


class DriftMonitor:
    """Sliding-window PSI per feature against calibrated limits, plus out-of-range shares.

    ``update_many(matrix)`` takes rows in ``names`` order (NaN = undefined, not counted) and
    returns a :class:`DriftTrace`: the out-of-range count per feature of those rows and the drift
    ratio after *each* row, so the live predictor (a few rows at a time) and the offline replay
    (a month at once) run the same arithmetic. Cumulative bin counts make every row's window
    counts one subtraction, whatever the batch size.

    The ratio is defined (``warm``) once ``max(windows)`` rows have been seen since the monitor
    was built: before, a long window would be judged on a fraction of its rows.

    >>> ref = {"fast": [0.0, 1.0, 2.0, 3.0], "slow": [0.0, 1.0, 2.0, 3.0]}
    >>> lim = DriftLimits({"fast": 60, "slow": 120}, {"fast": 0.5, "slow": 9.0})
    >>> m = DriftMonitor(["fast", "slow"], ref, {"fast": (0, 3), "slow": (0, 3)}, lim)
    >>> t = m.update_many(np.tile([[9.0, 1.5]], (120, 1)))
    >>> t.ood, m.warm(), m.drift_ratio(), sorted(m.psi())
    ({'fast': 120}, True, 0.5, ['fast', 'slow'])
    """

    def __init__(
        self,
        names: Sequence[str],
        reference: Mapping[str, Sequence[float]],
        ranges: Mapping[str, tuple[float, float]],
        limits: DriftLimits,
        exclude: Iterable[str] = (),
    ) -> None:
        skip = set(exclude)
        self.all_names = list(names)
        self.limits = limits
        self.names = [n for n in names if n in reference and n in limits.windows and n not in skip]
        self.cols = np.array([self.all_names.index(n) for n in self.names], dtype=np.int64)
        self.bins = [Bins.from_quantiles(reference[n]) for n in self.names]
        nb = max((len(b.expected) for b in self.bins), default=1)
        self.expected = np.zeros((len(self.names), nb))
        for j, b in enumerate(self.bins):
            self.expected[j, : len(b.expected)] = b.expected
        # every feature's edges in one array (padded with +inf, which no value is beyond), so a
        # row's bins are one comparison of all features at once: Bins.index of each feature
        # (the count of its edges below the value, capped at its last bin)
        ne = max((len(b.edges) for b in self.bins), default=0)
        self._edges = np.full((len(self.names), ne), np.inf)
        for j, b in enumerate(self.bins):
            self._edges[j, : len(b.edges)] = b.edges
        self._top = np.array([len(b.expected) - 1 for b in self.bins], dtype=np.int64)
        self.windows = np.array([limits.windows[n] for n in self.names], dtype=np.int64)
        self.thresholds = np.array([limits.thresholds[n] for n in self.names], dtype=np.float64)
        self.window = int(self.windows.max()) if len(self.names) else 1
        self.need = np.array(
            [limits.min_defined.get(n, MIN_DEFINED * limits.windows[n]) for n in self.names]
        )
        self.min_rows = self.window if limits.min_rows is None else int(limits.min_rows)
        rng = [ranges.get(n, (-math.inf, math.inf)) for n in self.all_names]
        self.lo = np.array([r[0] for r in rng], dtype=np.float64)
        self.hi = np.array([r[1] for r in rng], dtype=np.float64)
        self.ood_window = int(limits.ood_window)
        self._span = max(self.window, self.ood_window)
        # A ring of the last rows' bin codes (``nb``: undefined) and out-of-range flags, and the
        # counts of each feature's own window (and of the range window) after the last row: a
        # row adds its bin and takes out the one of the row leaving each window. Row k sits at
        # slot k % len(ring); a step of m <= `_chunk` rows after n reads rows n - span .. n+m-1
        # and writes n .. n+m-1, so span + _chunk slots never overwrite a row it still reads;
        # rows before row 0 read as undefined. A step costs its own rows x features, not their
        # bins nor a copy of the window (the live predictor folds a few rows at a time).
        self._chunk = min(CHUNK, self._span + 1)
        self._slots = self._span + self._chunk
        self._codes = np.full((self._slots, len(self.names)), nb, dtype=np.int16)
        self._outs = np.zeros((self._slots, len(self.names)), dtype=bool)
        self._counts = np.zeros((len(self.names), nb + 1), dtype=np.int64)
        self._ocounts = np.zeros(len(self.names), dtype=np.int64)
        self._flat = np.arange(len(self.names), dtype=np.int64) * (nb + 1)  # bincount offsets
        self.n = 0
        self._psi = np.full(len(self.names), np.nan)
        self._ratio = math.nan

    def update_many(self, matrix: np.ndarray, stride: int = 1, last: bool = False) -> DriftTrace:
        """Add rows; returns their out-of-range counts and the ratio after each row (with
        ``stride`` > 1, only rows whose count since the start is a multiple of it are judged,
        the others are NaN: the calibration's sample of windows). ``last``: judge only the
        last row (the live predictor exports the state after a fold, not each row's: PSI of
        every row of a fold cost it more than the rest of its bookkeeping); the same values
        for that row, NaN for the others."""
        matrix = np.asarray(matrix, dtype=np.float64).reshape(-1, len(self.all_names))
        with np.errstate(invalid="ignore"):
            out = (matrix < self.lo) | (matrix > self.hi)
        counts = out.sum(axis=0)
        ood = {self.all_names[i]: int(c) for i, c in enumerate(counts) if c}
        ratios, psis = [], []
        step = self._chunk
        for a in range(0, len(matrix), step):
            final = last and a + step >= len(matrix)
            only = None if not last else final
            r, p = self._step(
                matrix[a : a + step], out[a : a + step][:, self.cols], stride, judge=only
            )
            ratios.append(r)
            psis.append(p)
        if not ratios:
            return DriftTrace(ood, np.empty(0), np.empty((0, len(self.names))))
        return DriftTrace(ood, np.concatenate(ratios), np.concatenate(psis))

    def _step(
        self, rows: np.ndarray, out: np.ndarray, stride: int = 1, judge: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add ``rows``; judge each (``judge`` None), only the last one (True) or none (False)."""
        m, f = len(rows), len(self.names)
        nb = self.expected.shape[1]
        values = rows[:, self.cols]
        if m <= BIN_AT_ONCE:  # a few rows (live): every feature in one comparison
            with np.errstate(invalid="ignore"):
                below = (self._edges[None, :, :] < values[:, :, None]).sum(axis=2)
            index = np.minimum(below, self._top[None, :])
        else:  # many rows: a binary search per feature costs less than comparing every edge
            index = np.empty((m, f), dtype=np.int64)
            for j, bins in enumerate(self.bins):
                index[:, j] = bins.index(values[:, j])
        codes = np.where(np.isfinite(values), index, nb)
        slots, n = self._slots, self.n
        entering = n + np.arange(m)  # absolute row numbers
        self._codes[entering % slots] = codes
        self._outs[entering % slots] = out
        leaving = entering[:, None] - self.windows[None, :]  # the row each window lets go
        gone = np.where(leaving >= 0, self._codes[leaving % slots, np.arange(f)], nb)
        oleaving = entering - self.ood_window
        ogone = self._outs[oleaving % slots] & (oleaving >= 0)[:, None]
        flat, size = self._flat[None, :], f * (nb + 1)
        before, obefore = self._counts, self._ocounts
        self._counts = before + (
            np.bincount((flat + codes).ravel(), minlength=size)
            - np.bincount((flat + gone).ravel(), minlength=size)
        ).reshape(f, nb + 1)
        self._ocounts = obefore + out.sum(axis=0) - ogone.sum(axis=0)
        seen = self.n + 1 + np.arange(m)  # rows seen after each new row
        if judge is not None:
            sel = np.arange(m - 1, m) if judge else np.arange(0)
        else:
            sel = np.flatnonzero(seen % stride == 0) if stride > 1 else np.arange(m)
        if judge:  # the counts after the last row, as kept
            window, ocounts = self._counts[None, :, :nb], self._ocounts[None, :]
        elif len(sel):  # the counts after each judged row: the rows' changes summed in order
            delta = np.zeros((m, f, nb + 1), dtype=np.int32)
            at, feat = np.arange(m)[:, None], np.arange(f)[None, :]
            delta[at, feat, codes] = 1
            delta[at, feat, gone] -= 1
            np.cumsum(delta, axis=0, out=delta)  # in place, int32 (no int64 temporary)
            window = (delta[sel] + before[None])[:, :, :nb]
            ochange = out.astype(np.int32) - ogone
            ocounts = np.cumsum(ochange, axis=0)[sel] + obefore[None]
        else:
            window = np.zeros((0, f, nb), dtype=np.int64)
            ocounts = np.zeros((0, f), dtype=np.int64)
        defined = window.sum(axis=2)
        values = psi_many(window, self.expected[None, :, :])
        judged = defined >= self.need[None, :]
        ood_share = ocounts / self.ood_window
        beyond = values > self.thresholds[None, :]
        drifted = (judged & beyond) | (ood_share > self.limits.ood_share)
        n_judged = judged.sum(axis=1)
        warm = (seen[sel] >= self.min_rows) & (n_judged > 0)
        ratio = np.full(m, np.nan)
        ratio[sel] = np.where(warm, drifted.sum(axis=1) / np.maximum(n_judged, 1), np.nan)
        psis = np.full((m, f), np.nan)
        psis[sel] = np.where(judged, values, np.nan)
        self.n += m
        if len(sel) and sel[-1] == m - 1:
            self._psi, self._ratio = psis[-1], float(ratio[-1])
        return ratio, psis

    def psi(self) -> dict[str, float]:
        """PSI of each feature its window can judge, after the last row."""
        return {n: float(v) for n, v in zip(self.names, self._psi, strict=True) if v == v}

    def threshold_of(self) -> dict[str, float]:
        """Each judged feature's own PSI limit."""
        return dict(zip(self.names, self.thresholds.tolist(), strict=True))

    def warm(self) -> bool:
        """True once the ratio is defined (the longest window has been filled once)."""
        return not math.isnan(self._ratio)

    def drift_ratio(self) -> float | None:
        """Share of judged features beyond their limit or out of range; None while not warm."""
        return None if math.isnan(self._ratio) else self._ratio

    def filled(self) -> int:
        """Rows seen since the monitor was built (capped at the longest window)."""
        return min(self.n, self.window)

    def fill(self) -> float:
        """How far the monitor is from defining the ratio, 0..1 (1: warm)."""
        return min(self.n, self.min_rows) / max(self.min_rows, 1)


def null_psi(
    matrix: np.ndarray,
    names: Sequence[str],
    reference: Mapping[str, Sequence[float]],
    windows: Mapping[str, int],
    stride: int = NULL_STRIDE,
) -> dict[str, np.ndarray]:
    """PSI of every window of the reference rows (one ending every ``stride`` rows), per feature,
    computed by :class:`DriftMonitor` itself: the null distribution of the live statistic."""
    lim = DriftLimits(dict(windows), {n: math.inf for n in windows}, ood_share=math.inf)
    mon = DriftMonitor(names, reference, {}, lim)
    out: dict[str, list[np.ndarray]] = {n: [] for n in mon.names}
    for a in range(0, len(matrix), CHUNK):
        p = mon.update_many(matrix[a : a + CHUNK], stride=stride).psi
        for j, n in enumerate(mon.names):
            v = p[:, j]
            out[n].append(v[np.isfinite(v)])
    return {n: np.concatenate(v) if v else np.empty(0) for n, v in out.items()}


def calibrate(
    matrix: np.ndarray,
    names: Sequence[str],
    reference: Mapping[str, Sequence[float]],
    memory: Mapping[str, int],
    quantile: float = NULL_QUANTILE,
    exclude: Iterable[str] = (),
) -> DriftLimits:
    """Per-feature windows and limits from the reference's own per-minute feature rows
    (``matrix``, columns in ``names`` order, time-ordered): the ``quantile`` of each feature's
    null PSI distribution. Features without enough reference windows are left out."""
    skip = set(exclude)
    windows = {n: window_for(memory.get(n, 1)) for n in names if n in reference and n not in skip}
    nulls = null_psi(matrix, names, reference, windows)
    kept = {n: v for n, v in nulls.items() if len(v) >= 100}
    return DriftLimits(
        {n: windows[n] for n in kept},
        {n: float(np.quantile(v, quantile)) for n, v in kept.items()},
        quantile=quantile,
        meta={"reference_rows": len(matrix), "stride": NULL_STRIDE},
    )
