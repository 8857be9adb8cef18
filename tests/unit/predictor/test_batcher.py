"""Micro-batched ``POST /predict``: concurrent calls are scored together, yet each gets exactly
its own result (the same as scoring its row alone) and its own error."""

from __future__ import annotations

import asyncio
import dataclasses
import random

import numpy as np
import pytest

from services.common.schemas import Prediction
from services.common.settings import Settings
from services.predictor.app import build_service
from services.predictor.batcher import PredictBatcher
from services.predictor.core import feature_matrix, interval_bounds, score
from services.predictor.settings import PredictorSettings

LEVEL = PredictorSettings().interval_level


@pytest.fixture()
async def service(registry):
    svc = build_service(Settings(), PredictorSettings(), registry)
    assert await svc.holder.reload()
    return svc


def body(vec) -> dict:
    return {
        "symbol": vec.symbol,
        "time": vec.time,
        "feature_version": vec.feature_version,
        "features": vec.features,
    }


def alone(model, vec) -> tuple[float, float, float]:
    """``(log_rv, rv_lo, rv_hi)`` of one vector scored in a call of its own (the interval from
    the model's live calibration, read only, as ``/predict`` reads it)."""
    bundle = model.bundle
    row = feature_matrix([vec.features], bundle.feature_names)
    log_rv = score(bundle, row)
    bounds = interval_bounds(bundle, log_rv, row, LEVEL, model.intervals, [vec], False)
    assert bounds is not None
    return float(log_rv[0]), float(bounds[0][0]), float(bounds[1][0])


def flushes(metrics_text: str) -> float:
    """Scoring calls made for REST requests so far."""
    line = next(
        ln
        for ln in metrics_text.splitlines()
        if ln.startswith('prediction_latency_seconds_count{path="rest"}')
    )
    return float(line.split()[-1])


async def test_concurrent_calls_get_their_own_results(client, service, calm_features, to_vectors):
    warm = calm_features[calm_features["warm"]]
    vecs = to_vectors(warm.iloc[::-61].iloc[:48])  # an hour apart: different volatility
    random.Random(3).shuffle(vecs)
    answers = await asyncio.gather(*(client.post("/predict", json=body(v)) for v in vecs))
    assert [a.status_code for a in answers] == [200] * len(vecs)
    # scored together: far fewer XGBoost calls than requests
    calls = flushes((await client.get("/metrics")).text)
    assert 1 <= calls <= len(vecs) / 8
    champion = service.holder.models.champion
    b = champion.bundle
    for vec, answer in zip(vecs, answers, strict=True):
        got = answer.json()
        assert (got["symbol"], got["time"]) == (vec.symbol, vec.time)
        log_rv, lo, hi = alone(champion, vec)  # batch == single within float32 scoring precision
        assert got["log_rv"] == pytest.approx(log_rv, rel=1e-6, abs=1e-6)
        assert (got["rv_lo"], got["rv_hi"]) == pytest.approx((lo, hi), rel=1e-6)
        assert got["interval_level"] == LEVEL and got["model_version"] == b.version
    # the rows really differ, so a mix-up would show
    assert len({a.json()["log_rv"] for a in answers}) > len(vecs) / 3


async def test_errors_stay_per_request(client, service, calm_features, to_vectors):
    vecs = to_vectors(calm_features[calm_features["warm"]].iloc[-12:])
    good = [body(v) for v in vecs]
    bad_value = {**good[1], "features": {**good[1]["features"], "rv_5m": "x"}}
    bad_version = {**good[3], "feature_version": "rv60-0123"}
    lacking = {
        **good[5],
        "features": {k: v for k, v in good[5]["features"].items() if k != "lrv_60m"},
    }
    bodies = [*good]
    bodies[1], bodies[3], bodies[5] = bad_value, bad_version, lacking
    answers = await asyncio.gather(*(client.post("/predict", json=b) for b in bodies))
    codes = [a.status_code for a in answers]
    assert codes == [200, 422, 200, 409, 200, 422, *[200] * 6]
    assert answers[1].json()["detail"][0]["loc"] == ["body", "features", "rv_5m"]
    assert answers[5].json()["detail"][0]["loc"] == ["body", "features", "lrv_60m"]
    champion = service.holder.models.champion
    for vec, answer, code in zip(vecs, answers, codes, strict=True):
        if code == 200:
            assert answer.json()["time"] == vec.time
            log_rv = alone(champion, vec)[0]
            assert answer.json()["log_rv"] == pytest.approx(log_rv, rel=1e-6, abs=1e-6)


async def test_each_model_scores_its_own_requests(
    service, calm_features, calm_candles, to_vectors, make_bundle
):
    """A swap between two requests of one batch: each is scored by the model it was checked
    against; a model whose call fails fails only its own requests."""
    champion = service.holder.models.champion
    other = dataclasses.replace(champion, bundle=make_bundle(calm_candles, version="2", trees=5))
    broken_bundle = dataclasses.replace(
        champion.bundle, version="3", feature_names=champion.bundle.feature_names[:-1]
    )
    broken = dataclasses.replace(champion, bundle=broken_bundle)  # one column short
    vecs = to_vectors(calm_features[calm_features["warm"]].iloc[-9:])
    models = [champion, other, broken] * 3
    batcher = PredictBatcher(LEVEL)
    results = await asyncio.gather(
        *(batcher.submit(m, v) for m, v in zip(models, vecs, strict=True)), return_exceptions=True
    )
    for model, vec, result in zip(models, vecs, results, strict=True):
        if model is broken:
            assert isinstance(result, Exception)
            continue
        assert not isinstance(result, BaseException), result
        result = Prediction.from_bytes(result)
        assert result.model_version == model.bundle.version and result.time == vec.time
        assert result.log_rv == pytest.approx(alone(model, vec)[0], rel=1e-6, abs=1e-6)
    preds = [
        r if m is broken else Prediction.from_bytes(r) for m, r in zip(models, results, strict=True)
    ]
    v1 = [r.log_rv for m, r in zip(models, preds, strict=True) if m is champion]
    v2 = [r.log_rv for m, r in zip(models, preds, strict=True) if m is other]
    assert not np.allclose(v1, v2)  # the two models really differ


async def test_batches_are_capped_and_a_lone_call_is_answered(service, calm_features, to_vectors):
    champion = service.holder.models.champion
    vecs = to_vectors(calm_features[calm_features["warm"]].iloc[-150:])
    sizes: list[int] = []
    batcher = PredictBatcher(LEVEL, max_rows=64)
    score_batch = batcher._score

    def spy(model, vectors):  # records the batch sizes of the real scoring
        sizes.append(len(vectors))
        return score_batch(model, vectors)

    batcher._score = spy  # type: ignore[method-assign]
    answers = await asyncio.gather(*(batcher.submit(champion, v) for v in vecs))
    preds = [Prediction.from_bytes(a) for a in answers]
    assert [p.time for p in preds] == [v.time for v in vecs]
    assert max(sizes) == 64 and sum(sizes) == 150
    lone = Prediction.from_bytes(await asyncio.wait_for(batcher.submit(champion, vecs[0]), 1))
    assert lone.time == vecs[0].time and sizes[-1] == 1
