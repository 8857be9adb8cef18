"""Live accuracy: join each prediction with the realized volatility that the stream reveals
``horizon`` minutes later, and keep rolling QLIKE and RMSE per model role. Pure, no I/O.

The realized RV is computed exactly like the training target, from the closes on ``ticks.clean``:
``RV(t) = sqrt(sum_{k=1..H} ln(c_{t+k} / c_{t+k-1})^2)`` over the 1-minute candles after the
feature candle ``t``. A prediction resolves once all ``H + 1`` closes are known; one whose window
has a gap (a missing candle) is dropped and counted, never guessed.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

#: The training target's floor: ``log max(RV, 1e-5)`` (a flat hour is not log 0).
TRAINER_RV_FLOOR = 1e-5


def realized_rv(closes: list[float]) -> float:
    """Square root of the sum of squared log returns of consecutive closes (floored).

    >>> round(realized_rv([100.0, 101.0, 100.0]), 6)
    0.014072
    """
    rv = math.sqrt(sum(math.log(b / a) ** 2 for a, b in itertools.pairwise(closes)))
    return max(rv, TRAINER_RV_FLOOR)


def qlike(rv_real: float, rv_pred: float) -> float:
    """QLIKE loss on variances: ``r - ln r - 1`` with ``r = real / predicted`` (0 when exact).

    >>> qlike(0.01, 0.01)
    0.0
    >>> round(qlike(0.02, 0.01), 4)
    1.6137
    """
    r = (rv_real / rv_pred) ** 2
    return r - math.log(r) - 1.0


class Forecast(Protocol):
    """What the joiner needs of a forecast: a ``Prediction``, or a :class:`BaselineForecast`."""

    @property
    def symbol(self) -> str: ...
    @property
    def time(self) -> int: ...
    @property
    def role(self) -> str: ...
    @property
    def rv(self) -> float: ...
    @property
    def log_rv(self) -> float: ...
    @property
    def rv_lo(self) -> float | None: ...
    @property
    def rv_hi(self) -> float | None: ...


class BaselineForecast(NamedTuple):
    """The HAR-seasonal baseline's forecast for one scored vector (never published). A named
    tuple: a fold makes one per scored vector and they wait an hour in the join."""

    symbol: str
    time: int
    log_rv: float
    role: str = "har_seasonal"
    rv_lo: float | None = None  # no interval: nothing to cover
    rv_hi: float | None = None

    @property
    def rv(self) -> float:
        return math.exp(self.log_rv)


#: The role under which the baseline's live accuracy is exported.
BASELINE_ROLE = "har_seasonal"


class HarSeasonal:
    """The HAR-seasonal baseline as trained (``trainer.baselines``), scored from a feature vector.

    Its regressors are the per-hour log RV over 1, 4, 24 and 168 hours, which the feature
    vector already holds as ``lhar_*`` (log per-hour *variance*, so half of it), and the UTC hour
    and weekday of the vector's candle; coefficients and bias factor come from the model's
    bundle (``ModelBundle.har_seasonal``).

    >>> p = {"coef": [0.5, 1.0] + [0.0] * 3 + [0.1] * 23 + [0.0] * 6, "bias_factor": 1.0,
    ...      "inputs": ["a", "b", "c", "d"], "input_scale": 0.5}
    >>> h = HarSeasonal(p, ["a", "b", "c", "d"])
    >>> h.log_rv(np.array([[-8.0, 0, 0, 0]]), np.array([3600])).round(6).tolist()  # 01:00 UTC
    [-3.4]
    """

    def __init__(self, params: Mapping[str, Any], names: Sequence[str]) -> None:
        self.coef = np.asarray(params["coef"], dtype=np.float64)
        self.cols = [list(names).index(n) for n in params["inputs"]]
        self.scale = float(params.get("input_scale", 0.5))
        self.floor = math.log(float(params.get("floor", TRAINER_RV_FLOOR)))
        self.shift = 0.5 * math.log(float(params.get("bias_factor", 1.0)))

    def log_rv(self, matrix: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Bias-adjusted log-RV forecasts for rows (model column order) at candle times."""
        with np.errstate(invalid="ignore"):
            har = np.maximum(self.scale * matrix[:, self.cols], self.floor)
        t = np.asarray(times, dtype=np.int64)
        hour, dow = (t % 86400) // 3600, (t // 86400 + 3) % 7  # 1970-01-01 was a Thursday
        design = np.column_stack(
            [np.ones(len(t)), har]
            + [(hour == h).astype(np.float64) for h in range(1, 24)]
            + [(dow == d).astype(np.float64) for d in range(1, 7)]
        )
        return design @ self.coef + self.shift


class Resolved(NamedTuple):
    """A forecast joined with what happened (a named tuple: one per resolved forecast)."""

    prediction: Forecast
    rv_real: float

    @property
    def log_error(self) -> float:
        """Predicted minus realized log RV."""
        return self.prediction.log_rv - math.log(self.rv_real)


class RealizedJoiner:
    """Holds recent closes per symbol and pending predictions; resolves them when possible.

    Each close's squared log return from the minute before (``ln(c_t / c_{t-1})^2``) is kept
    as the close arrives, so a resolution sums ``H`` of them instead of taking ``H`` logs, and
    the predictions resolved together share one pass over their span: the same floats added
    in the same order as :func:`realized_rv`, so the same value to the last bit."""

    def __init__(self, horizon_minutes: int = 60, keep_minutes: int = 3 * 1440) -> None:
        self.horizon = horizon_minutes
        self.keep = keep_minutes
        self._closes: dict[str, OrderedDict[int, float]] = {}
        # per symbol, time t -> ln(c_t / c_{t-60})^2, where both closes are known and positive
        self._returns: dict[str, dict[int, float]] = {}
        self._pending: dict[str, dict[tuple[int, str], Forecast]] = {}
        self._due: dict[str, list[tuple[int, str]]] = {}  # heap of pending keys, oldest first
        self.dropped = 0

    def add_closes(self, rows: Iterable[tuple[str, int, float]]) -> list[Resolved]:
        """Record (symbol, candle time, close) rows; returns predictions that became resolvable."""
        touched: dict[str, None] = {}
        keep, symbol_now = self.keep, None
        book: OrderedDict[int, float] = OrderedDict()
        returns: dict[int, float] = {}
        for symbol, t, close in rows:
            if symbol != symbol_now:  # a batch of closes is mostly one symbol's
                symbol_now = symbol
                got = self._closes.get(symbol)
                if got is None:
                    got = self._closes[symbol] = OrderedDict()
                    self._returns[symbol] = {}
                book, returns = got, self._returns[symbol]
                touched[symbol] = None
            book[t] = close
            _set_return(returns, book, t)
            _set_return(returns, book, t + 60)
            if len(book) > keep:
                while len(book) > keep:
                    old, _ = book.popitem(last=False)
                    returns.pop(old, None)
                    returns.pop(old + 60, None)
        return [r for s in touched for r in self._resolve(s)]

    def add_predictions(self, preds: Iterable[Forecast]) -> list[Resolved]:
        """Queue predictions (dedup by symbol, time and role); returns any already resolvable.

        A symbol's predictions more than ``keep`` minutes older than its newest one are dropped
        and counted: their closes would be forgotten by then anyway, and without this a symbol
        whose candles stop coming (or a side consumer far behind) would grow the queue forever.
        """
        touched: dict[str, int] = {}
        pending, dues, push = self._pending, self._due, heapq.heappush
        for p in preds:
            symbol, t = p.symbol, p.time
            key = (t, p.role)
            pend = pending.get(symbol)
            if pend is None:
                pend = pending[symbol] = {}
            if key not in pend:
                due = dues.get(symbol)
                if due is None:
                    due = dues[symbol] = []
                push(due, key)
            pend[key] = p
            if t > touched.get(symbol, t - 1):
                touched[symbol] = t
        for symbol, newest in touched.items():
            self._expire(symbol, newest - 60 * self.keep)
        return [r for s in touched for r in self._resolve(s)]

    def _expire(self, symbol: str, before: int) -> None:
        """Drop the symbol's pending predictions made before ``before`` (epoch seconds)."""
        due, pend = self._due[symbol], self._pending[symbol]
        while due and due[0][0] < before:
            pend.pop(heapq.heappop(due), None)
            self.dropped += 1

    def pending(self) -> int:
        """Predictions still waiting for their realized value."""
        return sum(len(v) for v in self._pending.values())

    def forget(self) -> None:
        """Drop every pending prediction (a new model's windows start empty)."""
        self._pending.clear()
        self._due.clear()

    def _resolve(self, symbol: str) -> list[Resolved]:
        """Every pending forecast whose horizon ended by the newest close, oldest first (a heap
        by time: a minute's call touches only what became due). Roles of one time share one
        realized value."""
        book = self._closes.get(symbol)
        pend = self._pending.get(symbol)
        due = self._due.get(symbol)
        if not book or not pend or not due:
            return []
        newest = next(reversed(book))
        span, horizon = 60 * self.horizon, self.horizon
        keys = []
        pop = heapq.heappop
        while due and due[0][0] + span <= newest:
            keys.append(pop(due))
        if not keys:
            return []
        # the returns over the keys' whole span, once: slot i is minute keys[0].time + 60 (i + 1)
        first, last = keys[0][0], keys[-1][0]
        get = self._returns[symbol].get
        returns = [get(t) for t in range(first + 60, last + span + 60, 60)]
        # unknown returns before each slot: a window is complete when none falls inside it
        unknown = list(itertools.accumulate((r is None for r in returns), initial=0))
        out: list[Resolved] = []
        sqrt, floor = math.sqrt, TRAINER_RV_FLOOR
        t_prev, rv = None, None  # a time's roles come together (the heap is ordered by time)
        for key in keys:
            pred = pend.pop(key)
            t = key[0]
            if t != t_prev:
                t_prev, i = t, (t - first) // 60
                ok = unknown[i + horizon] == unknown[i]  # every close known and positive
                rv = max(sqrt(sum(returns[i : i + horizon])), floor) if ok else None  # type: ignore[arg-type]
            if rv is None:
                self.dropped += 1
                continue
            out.append(Resolved(pred, rv))
        return out


def _set_return(returns: dict[int, float], book: Mapping[int, float], t: int) -> None:
    """``returns[t]``: the squared log return into minute ``t`` (as :func:`realized_rv` takes
    it), or none when either close is unknown or not positive."""
    a, b = book.get(t - 60), book.get(t)
    if a is not None and b is not None and a > 0 and b > 0:
        returns[t] = math.log(b / a) ** 2
    else:
        returns.pop(t, None)


class RollingAccuracy:
    """Rolling QLIKE and log-RV RMSE over the last ``window`` resolved predictions of one role.

    >>> acc = RollingAccuracy(window=2)
    >>> for pred, real in [(0.01, 0.01), (0.01, 0.02), (0.02, 0.02)]:
    ...     acc.update(pred, real)
    >>> round(acc.qlike(), 4), round(acc.rmse(), 4)
    (0.8069, 0.4901)
    """

    def __init__(self, window: int = 1440) -> None:
        self.window = window
        self._q: deque[float] = deque(maxlen=window)
        self._se: deque[float] = deque(maxlen=window)
        self._in: deque[bool] = deque(maxlen=window)
        # running sums, so reading the means costs nothing (the replay reads them every minute);
        # summed afresh every ``window`` updates, so rounding cannot accumulate
        self._qsum = self._sesum = 0.0
        self._updates = 0

    def update(
        self, rv_pred: float, rv_real: float, lo: float | None = None, hi: float | None = None
    ) -> None:
        """Add one resolved prediction (and whether its interval ``[lo, hi]`` held it)."""
        q, se = qlike(rv_real, rv_pred), (math.log(rv_pred) - math.log(rv_real)) ** 2
        if len(self._q) == self.window:
            self._qsum -= self._q[0]
            self._sesum -= self._se[0]
        self._q.append(q)
        self._se.append(se)
        self._qsum += q
        self._sesum += se
        self._updates += 1
        if self._updates % self.window == 0:
            self._qsum, self._sesum = math.fsum(self._q), math.fsum(self._se)
        if lo is not None and hi is not None:
            self._in.append(lo <= rv_real <= hi)

    def update_many(
        self,
        rv_pred: Sequence[float],
        rv_real: Sequence[float],
        lo: Sequence[float | None],
        hi: Sequence[float | None],
    ) -> None:
        """:meth:`update` of each resolved prediction in order, at once: the same window, each
        loss the same float; the running sums move by the exact sum of what enters minus what
        leaves (``math.fsum``), so they may differ from one-by-one adding in the last bits."""
        log = math.log
        ratios = [(r / p) ** 2 for p, r in zip(rv_pred, rv_real, strict=True)]
        q = [r - log(r) - 1.0 for r in ratios]  # qlike(real, pred), as update() takes it
        se = [(log(p) - log(r)) ** 2 for p, r in zip(rv_pred, rv_real, strict=True)]
        k, window = len(q), self.window
        if not k:
            return
        leaving = max(0, len(self._q) + k - window)
        before = self._updates
        self._updates += k
        if leaving >= len(self._q) or before // window != self._updates // window:
            self._q.extend(q)
            self._se.extend(se)
            self._qsum, self._sesum = math.fsum(self._q), math.fsum(self._se)
        else:
            out_q = math.fsum(itertools.islice(self._q, leaving))
            out_se = math.fsum(itertools.islice(self._se, leaving))
            self._q.extend(q)
            self._se.extend(se)
            self._qsum += math.fsum(q) - out_q
            self._sesum += math.fsum(se) - out_se
        self._in.extend(
            a <= r <= b
            for a, r, b in zip(lo, rv_real, hi, strict=True)
            if a is not None and b is not None
        )

    def intervals(self) -> int:
        """Resolved predictions with an interval in the window."""
        return len(self._in)

    def coverage(self) -> float:
        """Share of those whose realized RV fell inside the interval (NaN when none).

        >>> acc = RollingAccuracy(window=3)
        >>> acc.update(0.01, 0.012, 0.008, 0.015); acc.update(0.01, 0.02, 0.008, 0.015)
        >>> acc.coverage()
        0.5
        """
        return sum(self._in) / len(self._in) if self._in else math.nan

    def __len__(self) -> int:
        return len(self._q)

    def qlike(self) -> float:
        """Mean QLIKE over the window (NaN when empty)."""
        return self._qsum / len(self._q) if self._q else math.nan

    def rmse(self) -> float:
        """Root mean squared error of log RV over the window (NaN when empty)."""
        return math.sqrt(max(self._sesum, 0.0) / len(self._se)) if self._se else math.nan


class Adwin:
    """river's ``drift.ADWIN`` with its defaults, on the same engine, without importing
    ``river.drift``: that package imports all of river's detectors, datasets and stream readers
    (scipy.stats, SQLAlchemy, narwhals), about 70 MB of resident memory for one detector. The
    engine is river's Rust ``AdaptiveWindowing`` (``river._river_rust``, light to import), which
    ``river.drift.ADWIN`` wraps exactly like this: a new window after each detection. A river
    without that module gets its own ``ADWIN`` as is. (A test checks both give the same drifts.)

    >>> import random
    >>> rng = random.Random(12345)
    >>> adwin = Adwin()
    >>> for i, x in enumerate(rng.choices([0, 1], k=1000) + rng.choices(range(4, 8), k=1000)):
    ...     adwin.update(x)
    ...     if adwin.drift_detected:
    ...         print(f"change at {i}")
    change at 1023
    """

    def __init__(self) -> None:
        try:
            from river._river_rust.drift import AdaptiveWindowing
        except ImportError:  # river < 0.23: its own ADWIN, whatever it imports
            from river.drift import ADWIN

            self._river: Any = ADWIN()
            self._new: Any = None
        else:
            self._river = None
            self._new = AdaptiveWindowing
        self.drift_detected = False
        self._window = self._fresh()

    def _fresh(self) -> Any:
        """A new window with ``river.drift.ADWIN``'s defaults."""
        if self._new is None:
            return None
        return self._new(delta=0.002, clock=32, max_buckets=5, min_window_length=5, grace_period=10)

    def update(self, x: float) -> None:
        """Add one value; ``drift_detected`` tells whether it completed a change."""
        if self._river is not None:
            self._river.update(x)
            self.drift_detected = bool(self._river.drift_detected)
            return
        if self.drift_detected:
            self._window = self._fresh()
        self.drift_detected = bool(self._window.update(x))

    def update_many(self, xs: Iterable[float]) -> int:
        """:meth:`update` of each value in order; returns how many changes they completed."""
        if self._river is not None:
            n = 0
            for x in xs:
                self.update(x)
                n += self.drift_detected
            return n
        n, detected, window = 0, self.drift_detected, self._window
        for x in xs:
            if detected:
                window = self._fresh()
            detected = bool(window.update(x))
            n += detected
        self._window, self.drift_detected = window, detected
        return n


class Learner(Protocol):
    """What learns from resolved predictions besides the accuracy windows
    (``services.predictor.calibration.IntervalLearner``)."""

    def observe(self, resolved: Iterable[Resolved]) -> int: ...


class LiveAccuracy:
    """Per-role rolling accuracy plus ADWIN on the champion's absolute log error.

    The HAR-seasonal baseline is scored on every vector the champion scores and resolved by the
    same closes, so its window (role ``har_seasonal``) holds exactly the champion's minutes:
    ``ModelAccuracyDegraded`` compares the two. A role's accuracy is reported (:meth:`ready`)
    once its window holds ``min_fill`` resolved predictions; :meth:`reset` starts over (a new
    champion version).
    """

    def __init__(self, horizon_minutes: int = 60, window: int = 1440, min_fill: int = 1) -> None:
        self.joiner = RealizedJoiner(horizon_minutes)
        self.window = window
        self.min_fill = min(min_fill, window)
        self.roles: dict[str, RollingAccuracy] = {}
        self._adwin = Adwin()
        self.learner: Learner | None = None  # the adaptive interval calibration, when wired

    def reset(self) -> None:
        """Empty every window and drop pending predictions; keeps the closes seen."""
        self.roles.clear()
        self.joiner.forget()
        self._adwin = Adwin()

    def ready(self) -> dict[str, RollingAccuracy]:
        """The roles whose window is full enough to report."""
        return {k: v for k, v in self.roles.items() if len(v) >= self.min_fill}

    def observe(self, resolved: Iterable[Resolved]) -> int:
        """Fold resolved predictions in; returns how many concept drifts ADWIN detected."""
        drifts = 0
        resolved = list(resolved)
        if self.learner is not None:
            self.learner.observe(resolved)
        by_role: dict[str, list[Forecast]] = {}
        reals: dict[str, list[float]] = {}
        for p, rv in resolved:  # grouped by role, in order: each window in bulk
            got = by_role.get(p.role)
            if got is None:
                got = by_role[p.role] = []
                reals[p.role] = []
            got.append(p)
            reals[p.role].append(rv)
        for role, preds in by_role.items():
            roll = self.roles.get(role)
            if roll is None:  # not setdefault: a new window per call is three deques
                roll = self.roles[role] = RollingAccuracy(self.window)
            real = reals[role]
            rvs = [p.rv for p in preds]
            roll.update_many(rvs, real, [p.rv_lo for p in preds], [p.rv_hi for p in preds])
            if role == "champion":
                log = math.log  # |Resolved.log_error|, in order
                errors = [abs(p.log_rv - log(r)) for p, r in zip(preds, real, strict=True)]
                drifts += self._adwin.update_many(errors)
        return drifts
