"""Realized volatility from the stream's closes, joined with predictions; rolling accuracy."""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict

import numpy as np
import pytest

from services.common.schemas import Prediction
from services.predictor.accuracy import (
    LiveAccuracy,
    RealizedJoiner,
    RollingAccuracy,
    qlike,
    realized_rv,
)
from trainer.dataset import log_rv_target, minute_grid


def pred(t: int, log_rv: float = -5.0, role: str = "champion") -> Prediction:
    return Prediction(
        symbol="BTC",
        time=t,
        rv=math.exp(log_rv),
        log_rv=log_rv,
        model_name="m",
        model_version="1",
        role=role,
        feature_version="v",
    )


def closes(df) -> list[tuple[str, int, float]]:
    return [("BTC", int(t), float(c)) for t, c in zip(df["time"], df["close"], strict=True)]


def test_realized_matches_the_training_target(calm_candles) -> None:
    df = calm_candles.iloc[:400]
    origins = df["time"].to_numpy()[[0, 100, 250]]
    j = RealizedJoiner(60)
    assert j.add_predictions([pred(int(t)) for t in origins]) == []
    resolved = j.add_closes(closes(df))
    assert [r.prediction.time for r in resolved] == origins.tolist()
    target = log_rv_target(minute_grid(df), origins)
    np.testing.assert_allclose([math.log(r.rv_real) for r in resolved], target, rtol=1e-9)
    assert j.pending() == 0


def test_predictions_wait_for_the_horizon_and_gaps_are_dropped(calm_candles) -> None:
    df = calm_candles.iloc[:200]
    j = RealizedJoiner(60)
    t0 = int(df["time"].iloc[0])
    j.add_closes(closes(df.iloc[:60]))  # 59 minutes after t0: not yet known
    assert j.add_predictions([pred(t0)]) == [] and j.pending() == 1
    holed = df.drop(index=100)  # the candle at t0+100 min is missing
    assert len(j.add_closes(closes(holed.iloc[60:61]))) == 1  # t0+60 min closes the horizon
    j.add_predictions([pred(t0 + 60 * 50)])
    assert j.add_closes(closes(holed.iloc[60:])) == []
    assert j.dropped == 1 and j.pending() == 0


def test_rolling_accuracy_per_role_and_adwin(calm_candles) -> None:
    acc = LiveAccuracy(60, window=500)
    rng = np.random.default_rng(7)
    from services.predictor.accuracy import Resolved

    drifts = acc.observe(
        Resolved(pred(60 * i, -5.0 + rng.normal(0, 0.05)), math.exp(-5.0)) for i in range(1000)
    )
    assert drifts == 0
    drifts = acc.observe(
        Resolved(pred(60 * i, -3.0 + rng.normal(0, 0.05)), math.exp(-5.0))
        for i in range(1000, 1300)
    )
    assert drifts >= 1
    acc.observe([Resolved(pred(0, -5.0, role="shadow"), math.exp(-5.0))])
    assert acc.roles["shadow"].qlike() == 0.0 and len(acc.roles["champion"]) == 500
    assert acc.roles["champion"].rmse() > 1.0


def test_qlike_is_asymmetric() -> None:
    assert qlike(0.02, 0.01) > qlike(0.01, 0.02) > 0
    roll = RollingAccuracy()
    assert math.isnan(roll.qlike()) and math.isnan(roll.rmse())


def test_har_seasonal_from_the_vector_is_the_trainers_baseline(calm_candles) -> None:
    """The predictor scores the baseline from ``lhar_*`` and the candle time; the trainer from its
    own point-in-time inputs. Same forecasts: exactly for the 1/4/24 h terms and the calendar
    dummies; the 168 h term is summed from clock hours in the features (the current hour plus the
    167 before), from a rolling week in the trainer, so it differs a little."""
    from services.common.features import FEATURE_NAMES, featurize_many
    from services.predictor.accuracy import HarSeasonal
    from trainer.baselines import predict_baselines
    from trainer.drift_reference import har_seasonal_params
    from trainer.targets import HAR_COLUMNS, baseline_inputs

    feats = featurize_many(calm_candles)
    feats = feats[feats["warm"]]
    times = feats["time"].to_numpy()
    inputs = baseline_inputs(minute_grid(calm_candles), times)
    coef = np.random.default_rng(1).normal(size=34)
    coef[4] = 0.0  # the 168 h term, compared on its own below
    params = {"har_seasonal": {"coef": coef.tolist(), "bias_factor": 1.7}}
    want = predict_baselines(params, inputs)["har_seasonal"] + 0.5 * math.log(1.7)
    names = list(FEATURE_NAMES)
    baseline = HarSeasonal(har_seasonal_params(params, names), names)
    got = baseline.log_rv(feats[names].to_numpy(dtype=np.float64), times)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    week = 0.5 * feats["lhar_168h"].to_numpy() - inputs[HAR_COLUMNS[3]].to_numpy()
    assert np.median(np.abs(week)) < 1e-3 and np.max(np.abs(week)) < 0.1


def test_interval_coverage_is_exported_per_role() -> None:
    """model_interval_coverage: the share of resolved predictions whose realized RV fell inside
    [rv_lo, rv_hi], per role; predictions without an interval do not count."""
    from services.predictor.accuracy import Resolved
    from services.predictor.metrics import PredictorMetrics
    from services.predictor.stream import observe_accuracy

    def with_interval(t: int, role: str) -> Prediction:
        p = pred(t, role=role)
        return p.model_copy(update={"rv_lo": p.rv / 2, "rv_hi": p.rv * 2, "interval_level": 0.8})

    rv = math.exp(-5.0)
    resolved = [Resolved(with_interval(60 * i, "champion"), rv * f) for i, f in enumerate(
        [1.0, 1.5, 3.0, 0.3])]  # fmt: skip
    resolved += [Resolved(with_interval(60, "shadow"), rv), Resolved(pred(120, role="shadow"), rv)]
    m = PredictorMetrics()
    observe_accuracy(m, LiveAccuracy(60), resolved)
    value = m.registry.get_sample_value
    assert value("model_interval_coverage", {"role": "champion"}) == 0.5
    assert value("model_interval_coverage", {"role": "shadow"}) == 1.0


class NaiveJoiner:
    """The join written plainly: 61 closes looked up and ``realized_rv`` per prediction."""

    def __init__(self, keep: int) -> None:
        self.keep, self.book, self.pending = keep, OrderedDict(), {}

    def add(self, rows, preds) -> list[tuple[int, float]]:
        for p in preds:
            self.pending[p.time] = p
        for _, t, c in rows:
            self.book[t] = c
            while len(self.book) > self.keep:
                self.book.popitem(last=False)
        if not self.book:
            return []
        newest, out = next(reversed(self.book)), []
        for t in sorted(x for x in self.pending if x + 3600 <= newest):
            del self.pending[t]
            window = [self.book.get(t + 60 * k) for k in range(61)]
            if all(c is not None and c > 0 for c in window):
                out.append((t, realized_rv(window)))
        return out


def test_resolved_rv_is_realized_rv_to_the_last_bit(calm_candles) -> None:
    """Closes out of order, revised, missing, zero, and forgotten (a short memory): the joiner
    resolves what the plain join resolves, each to the same value to the last bit."""
    rng = np.random.default_rng(11)
    df = calm_candles.iloc[:1200]
    rows = closes(df)
    rows = [r for i, r in enumerate(rows) if i not in (300, 301, 650)]  # gaps
    rows[400] = (rows[400][0], rows[400][1], 0.0)  # not positive: its windows are dropped
    order = np.argsort(np.arange(len(rows)) + rng.integers(0, 5, len(rows)), kind="stable")
    rows = [rows[i] for i in order]  # a little out of order
    rows[500:500] = [(s, t, c * 1.001) for s, t, c in rows[450:453]]  # revised, re-sent later
    j, naive = RealizedJoiner(60, keep_minutes=500), NaiveJoiner(500)
    times = df["time"].astype(int).tolist()
    got, want = [], []
    for a in range(0, len(rows), 37):
        preds = [pred(t) for t in times[a : a + 37 : 2]]
        got += [(r.prediction.time, r.rv_real) for r in j.add_predictions(preds)]
        got += [(r.prediction.time, r.rv_real) for r in j.add_closes(rows[a : a + 37])]
        want += naive.add(rows[a : a + 37], preds)
    late = [pred(t) for t in times]  # the closes of many are forgotten by now
    got += [(r.prediction.time, r.rv_real) for r in j.add_predictions(late)]
    want += naive.add([], late)
    assert len(want) > 300 and j.dropped > 0
    assert got == want  # floats compared exactly


def test_pending_predictions_are_bounded_without_closes() -> None:
    """Predictions whose closes never come are dropped once older than the closes kept."""
    t0 = 1_700_000_040  # a minute boundary
    j = RealizedJoiner(60, keep_minutes=120)
    for i in range(1000):
        j.add_predictions([pred(t0 + 60 * i), pred(t0 + 60 * i, role="shadow")])
    assert j.pending() == 2 * 121  # the newest 121 minutes (0..120 behind the newest), 2 roles
    assert j.dropped == 2 * (1000 - 121)
    # what is still pending resolves as before once its closes arrive
    resolved = [r for i in range(878, 1060) for r in j.add_closes([("BTC", t0 + 60 * i, 100.0)])]
    assert len(resolved) == 2 * 121 and j.pending() == 0


def test_a_window_filled_in_bulk_reads_as_one_filled_row_by_row() -> None:
    """``RollingAccuracy.update_many`` (what a fold calls) against ``update`` one row at a time:
    the same losses in the window, the same means and coverage, over chunks that fill, slide
    and wrap the window (sums refreshed on a window boundary) and intervals that come and go."""
    rng = np.random.default_rng(5)
    n = 3000
    pred_rv = np.exp(rng.normal(-5.0, 0.3, n)).tolist()
    real_rv = np.exp(rng.normal(-5.0, 0.4, n)).tolist()
    lo = [p / 2 if i % 7 else None for i, p in enumerate(pred_rv)]
    hi = [p * 2 if i % 7 else None for i, p in enumerate(pred_rv)]
    one, bulk = RollingAccuracy(window=500), RollingAccuracy(window=500)
    a = 0
    for size in itertools.cycle([1, 37, 499, 500, 3, 1200]):
        if a >= n:
            break
        b = min(n, a + size)
        for i in range(a, b):
            one.update(pred_rv[i], real_rv[i], lo[i], hi[i])
        bulk.update_many(pred_rv[a:b], real_rv[a:b], lo[a:b], hi[a:b])
        assert list(bulk._q) == list(one._q) and len(bulk) == len(one)
        assert bulk.qlike() == pytest.approx(one.qlike(), rel=1e-12)
        assert bulk.rmse() == pytest.approx(one.rmse(), rel=1e-12)
        assert (bulk.intervals(), bulk.coverage()) == (one.intervals(), one.coverage())
        a = b


def test_adwin_in_bulk_detects_what_it_detects_one_by_one() -> None:
    from services.predictor.accuracy import Adwin

    rng = np.random.default_rng(2)
    stream = [float(x) for mu in (0.0, 2.0, -1.0, 3.0) for x in rng.normal(mu, 0.5, 800)]
    one, bulk = Adwin(), Adwin()
    want = 0
    for x in stream:
        one.update(x)
        want += one.drift_detected
    got = sum(bulk.update_many(stream[a : a + 97]) for a in range(0, len(stream), 97))
    assert want >= 3 and got == want and bulk.drift_detected == one.drift_detected
