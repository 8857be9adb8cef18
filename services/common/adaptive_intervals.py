"""Adaptive calibration of the prediction intervals: adaptive conformal inference (ACI, Gibbs and
Candès 2021) per regime bin (Mondrian) and per tail, on the bundle's validation residual
quantiles. Pure (numpy, no I/O): the live predictor and ``volstream evaluate`` run this one class.

The static calibration (:mod:`services.common.intervals`) fixes, per regime bin ``b``, residual
quantiles ``Q_b`` from the validation window. Here each symbol keeps two tail probabilities per
bin, ``a_lo[b]`` and ``a_hi[b]``; a row in bin ``b`` gets
``[exp(log_rv + Q_b(a_lo[b])), exp(log_rv + Q_b(1 - a_hi[b]))]``. They start at the static
split-conformal values (so a fresh state gives the static intervals) and, after each resolved
prediction of bin ``b``, move by ``gamma * ((1 - L) / 2 - miss)`` where ``miss`` is 1 when the
realized log RV fell beyond that tail's bound: a run of misses widens the tail, a run of hits
narrows it, and over ``T`` updates the miss rate of each tail is within
``(1 + gamma) / (gamma * T)`` of ``(1 - L) / 2`` whatever the data (Gibbs and Candès, Prop. 4.1,
with the probabilities clamped to the stored grid's ends).

**What is learned, and when.** Only predictions at full hours (``time % every_s == 0``) teach:
their target windows do not overlap, and they are the origins ``evaluate`` scores, so the live
state and the replay see the same sequence. A prediction at ``t`` resolves when the candle at
``t + H`` closes; its update is used by predictions from the next candle on
(``time >= t + H + 60``), so the live race between the closes and the features of one candle
cannot change an interval. Updates are applied in time order when a prediction needs them.

>>> rng = np.random.default_rng(1)
>>> cal = intervals.calibrate(rng.normal(size=2000), np.zeros(2000), bins=1, feature="x")
>>> aci = AdaptiveIntervals(cal, level=0.8, gamma=0.05)
>>> for h in range(300):  # the errors are now half as wide as on validation
...     t = 3600 * h
...     _ = aci.predict_many("BTC", [t], np.zeros(1), np.zeros(1))
...     _ = aci.learn_one("BTC", t, 0.5 * rng.normal())
>>> lo, hi = aci.predict_many("BTC", [3600 * 301], np.zeros(1), np.zeros(1))
>>> round(float(np.log(hi[0])), 1), aci.updates("BTC")  # static: 1.3; the new 90 %: 0.64
(0.7, 300)
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.common import intervals

CANDLE_S = 60
KEEP_S = 3 * 86400
"""Issued full-hour predictions are remembered this long waiting for their realized value (the
predictor's joiner keeps closes as long)."""


@dataclass
class _Symbol:
    """The adaptive state of one symbol: tail probabilities per bin and the resolved, not yet
    applied updates."""

    a_lo: np.ndarray
    a_hi: np.ndarray
    updates: int = 0
    issued: OrderedDict[int, tuple[int, float, float]] = field(default_factory=OrderedDict)
    due: deque[tuple[int, int, int, int]] = field(default_factory=deque)  # t, bin, miss lo, hi
    offsets: np.ndarray | None = None  # cached log offsets per bin (lower, upper)


class AdaptiveIntervals:
    """Per-symbol ACI state over one model's interval calibration at one ``level``.

    ``gamma`` defaults to the calibration's own (a calibration saved before it existed adapts
    with today's default; ``0`` keeps the static intervals). Thread-safe: the scoring path and
    the resolver may run in different threads."""

    def __init__(
        self,
        calibration: dict[str, Any],
        level: float = intervals.DEFAULT_LEVEL,
        gamma: float | None = None,
        horizon_s: int = 3600,
        every_s: int = 3600,
    ) -> None:
        if not 0.0 < level < 1.0:
            raise ValueError(f"interval level must be in (0, 1), got {level}")
        self.cal, self.level = calibration, level
        own = calibration.get("gamma", intervals.ADAPT_GAMMA)
        self.gamma = float(own if gamma is None else gamma)
        self.horizon_s, self.every_s = horizon_s, every_s
        self.target = (1.0 - level) / 2.0
        self._probs = np.asarray(calibration["probs"], dtype=np.float64)
        self._q = np.asarray(calibration["quantiles"], dtype=np.float64)
        n = np.maximum(np.asarray(calibration["n"], dtype=np.float64), 1.0)
        self._start = 1.0 - np.minimum(1.0, (1.0 + level) / 2.0 * (1.0 + 1.0 / n))
        self._cuts = np.asarray(calibration["cuts"], dtype=np.float64)
        self._symbols: dict[str, _Symbol] = {}
        self._lock = threading.Lock()

    def _state(self, symbol: str) -> _Symbol:
        s = self._symbols.get(symbol)
        if s is None:
            s = self._symbols[symbol] = _Symbol(self._start.copy(), self._start.copy())
        return s

    def predict_many(
        self, symbol: str, times: Sequence[int], log_rv: np.ndarray, regime: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(rv_lo, rv_hi)`` of rows of one symbol (times in seconds, bias-adjusted log RV, the
        regime feature); the full-hour rows are remembered to learn from once resolved."""
        idx = self._bins(regime)
        with self._lock:
            s = self._state(symbol)
            if len(times):
                self._release(s, int(min(times)))
            log_b = np.asarray(log_rv, dtype=np.float64)[:, None] + self._offsets(s)[idx]
            for i, t in enumerate(times):
                if t % self.every_s == 0:
                    self._issue(s, int(t), int(idx[i]), float(log_b[i, 0]), float(log_b[i, 1]))
        rv = np.exp(log_b)
        return rv[:, 0], rv[:, 1]

    def _bins(self, regime: np.ndarray) -> np.ndarray:
        """:func:`services.common.intervals.bin_index` with the cuts held as an array."""
        z = np.asarray(regime, dtype=np.float64)
        idx = np.searchsorted(self._cuts, z, side="right")
        undefined = ~np.isfinite(z)
        if undefined.any():
            idx[undefined] = len(self._cuts) + 1
        return idx

    def peek_many(
        self, symbol: str, log_rv: np.ndarray, regime: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(rv_lo, rv_hi)`` with the symbol's current state, learning nothing and applying no
        update: for requests whose time the caller chooses (``POST /predict``)."""
        idx = self._bins(regime)
        with self._lock:
            offsets = self._offsets(self._state(symbol))
        rv = np.exp(np.asarray(log_rv, dtype=np.float64)[:, None] + offsets[idx])
        return rv[:, 0], rv[:, 1]

    def learn_one(self, symbol: str, time: int, log_y: float) -> bool:
        """The realized log RV of the prediction at ``time``; True when it will teach (a
        full-hour prediction issued here and not yet resolved)."""
        with self._lock:
            s = self._symbols.get(symbol)
            got = s.issued.pop(int(time), None) if s is not None else None
            if s is None or got is None or not np.isfinite(log_y):
                return False
            b, lo, hi = got
            s.due.append((int(time), b, int(log_y < lo), int(log_y > hi)))
            return True

    def updates(self, symbol: str) -> int:
        """Updates applied so far to ``symbol``'s state."""
        s = self._symbols.get(symbol)
        return s.updates if s is not None else 0

    def _issue(self, s: _Symbol, t: int, b: int, lo: float, hi: float) -> None:
        s.issued[t] = (b, lo, hi)
        while s.issued and next(iter(s.issued)) < t - KEEP_S:
            s.issued.popitem(last=False)

    def _release(self, s: _Symbol, now: int) -> None:
        """Apply the resolved updates that a prediction at ``now`` may know of, oldest first."""
        ready = now - self.horizon_s - CANDLE_S
        while s.due and s.due[0][0] <= ready:
            _, b, miss_lo, miss_hi = s.due.popleft()
            s.a_lo[b] += self.gamma * (self.target - miss_lo)
            s.a_hi[b] += self.gamma * (self.target - miss_hi)
            s.updates += 1
            s.offsets = None

    def _offsets(self, s: _Symbol) -> np.ndarray:
        """The lower and upper log offsets per bin (``bins x 2``), cached until a lesson."""
        if s.offsets is None:
            lo = [np.interp(p, self._probs, q) for p, q in zip(s.a_lo, self._q, strict=True)]
            hi = [np.interp(1.0 - p, self._probs, q) for p, q in zip(s.a_hi, self._q, strict=True)]
            s.offsets = np.column_stack([lo, hi])
        return s.offsets

    def state(self) -> dict[str, Any]:
        """The tail probabilities and update counts per symbol (plain JSON, for a snapshot)."""
        with self._lock:
            return {
                sym: {"a_lo": s.a_lo.tolist(), "a_hi": s.a_hi.tolist(), "updates": s.updates}
                for sym, s in self._symbols.items()
            }

    def restore(self, doc: dict[str, Any]) -> None:
        """Continue from :meth:`state` of the same calibration and level."""
        with self._lock:
            for sym, d in doc.items():
                if len(d["a_lo"]) != len(self._start) or len(d["a_hi"]) != len(self._start):
                    raise ValueError("snapshot of another calibration")
                s = self._state(sym)
                s.a_lo, s.a_hi = np.asarray(d["a_lo"], float), np.asarray(d["a_hi"], float)
                s.updates, s.offsets = int(d["updates"]), None


def replay(
    aci: AdaptiveIntervals,
    times: np.ndarray,
    log_rv: np.ndarray,
    regime: np.ndarray,
    log_y: np.ndarray,
    symbol: str = "replay",
) -> tuple[np.ndarray, np.ndarray]:
    """The intervals the live predictor would have published for time-ordered rows, each
    resolved with its realized ``log_y`` (the update waits for its time, as live).

    >>> cal = intervals.calibrate(np.linspace(-1, 1, 101), np.zeros(101), bins=1, feature="x")
    >>> t = 3600 * np.arange(4)
    >>> aci = AdaptiveIntervals(cal, gamma=0.05)
    >>> lo, hi = replay(aci, t, np.zeros(4), np.zeros(4), np.full(4, 5.0))
    >>> np.log(hi).round(2).tolist()  # misses above: wider from the third hour (t + H + 1 min)
    [0.82, 0.82, 0.91, 1.0]
    """
    lo, hi = np.empty(len(times)), np.empty(len(times))
    for i, t in enumerate(np.asarray(times, dtype=np.int64).tolist()):
        lo[i : i + 1], hi[i : i + 1] = aci.predict_many(
            symbol, [t], log_rv[i : i + 1], regime[i : i + 1]
        )
        aci.learn_one(symbol, t, float(log_y[i]))
    return lo, hi
