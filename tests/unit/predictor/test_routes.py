"""The REST API in-process (httpx ASGI transport, no lifespan: no Kafka), on a real model."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from pydantic import SecretStr

from services.common.settings import Settings
from services.predictor.app import build_service, create_app
from services.predictor.settings import PredictorSettings

KEY = "s3cret-admin-key"


@pytest.fixture()
async def service(registry):
    svc = build_service(Settings(), PredictorSettings(admin_api_key=SecretStr(KEY)), registry)
    assert await svc.holder.reload()
    return svc


def payload(vec) -> dict:
    return {
        "symbol": vec.symbol,
        "time": vec.time,
        "feature_version": vec.feature_version,
        "features": vec.features,
    }


async def test_health_and_readiness(client, service) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    r = await client.get("/ready")
    assert r.status_code == 503  # the model is loaded but no partitions are assigned here
    assert r.json()["reasons"] == ["waiting for partition assignment"]
    assert r.json()["champion_version"] == "1"
    service.worker.assignment.joined = True
    assert (await client.get("/ready")).status_code == 200


async def test_predict_scores_like_the_stream(client, service, calm_features, to_vectors) -> None:
    from services.predictor.core import RawRecord, process

    vecs = to_vectors(calm_features.iloc[-20:])
    answers = await asyncio.gather(*(client.post("/predict", json=payload(v)) for v in vecs))
    assert [a.status_code for a in answers] == [200] * 20
    records = [RawRecord("f", 0, i, None, v.to_bytes()) for i, v in enumerate(vecs)]
    stream = process(records, service.holder.models.champion.bundle, None)
    assert [a.json()["log_rv"] for a in answers] == pytest.approx(
        [p.log_rv for p in stream.predictions]
    )
    assert answers[0].json()["role"] == "champion" and answers[0].json()["time"] == vecs[0].time
    for key in ("rv_lo", "rv_hi"):  # the same interval as the stream, at the configured level
        assert [a.json()[key] for a in answers] == pytest.approx(
            [getattr(p, key) for p in stream.predictions]
        )
    assert {a.json()["interval_level"] for a in answers} == {service.psettings.interval_level}


async def test_bad_predict_input_is_4xx_with_field_messages(
    client, calm_features, to_vectors
) -> None:
    vec = to_vectors(calm_features.iloc[-1:])[0]
    body = payload(vec)
    r = await client.post("/predict", json={**body, "features": {**body["features"], "rv_5m": "x"}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:3] == [
        "body",
        "features",
        "rv_5m",
    ]
    lacking = {k: v for k, v in body["features"].items() if k != "lrv_60m"}
    r = await client.post("/predict", json={**body, "features": lacking})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "features", "lrv_60m"]
    r = await client.post("/predict", json={**body, "feature_version": "rv60-0123"})
    assert r.status_code == 409 and "rv60-0123" in r.json()["detail"]
    r = await client.post("/predict", json={**body, "symbol": "btc/usd"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "symbol"]
    r = await client.post(
        "/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    huge = {**body, "features": {f"f{i}": 1.0 for i in range(10_000)}}
    r = await client.post("/predict", json=huge)
    assert r.status_code == 413


async def test_predictions_from_the_ring(client, service, calm_features, to_vectors) -> None:
    assert (await client.get("/predictions/latest", params={"symbol": "BTC"})).status_code == 404
    from services.predictor.core import RawRecord, process

    vecs = to_vectors(calm_features.iloc[-30:])
    out = process(
        [RawRecord("f", 0, i, None, v.to_bytes()) for i, v in enumerate(vecs)],
        service.holder.models.champion.bundle,
        None,
    )
    service.ring.extend(out.predictions)
    latest = (await client.get("/predictions/latest", params={"symbol": "BTC"})).json()
    assert latest["time"] == vecs[-1].time
    assert latest["rv_lo"] < latest["rv"] < latest["rv_hi"] and latest["interval_level"] == 0.8
    page = (
        await client.get(
            "/predictions", params={"symbol": "BTC", "since": vecs[10].time, "limit": 5}
        )
    ).json()
    assert page["count"] == 5 and [p["time"] for p in page["predictions"]] == [
        v.time for v in vecs[10:15]
    ]
    assert all(p["rv_lo"] < p["rv"] < p["rv_hi"] for p in page["predictions"])
    r = await client.get("/predictions", params={"symbol": "BTC", "limit": 0})
    assert r.status_code == 422


async def test_model_info_and_admin_reload(
    client, service, registry, bundle, make_bundle, calm_candles
) -> None:
    info = (await client.get("/model")).json()
    assert info["champion"]["version"] == "1" and info["challenger"] is None
    assert info["champion"]["metrics"]["test_qlike"] == 0.2
    assert (await client.post("/model/reload")).status_code == 401
    assert (await client.post("/model/reload", headers={"X-API-Key": "wrong"})).status_code == 403
    registry.bundles["2"] = make_bundle(calm_candles, version="2", trees=5)
    registry.aliases["challenger"] = "2"
    r = await client.post("/model/reload", headers={"X-API-Key": KEY})
    assert r.status_code == 200 and r.json()["ok"] and r.json()["challenger"]["version"] == "2"
    registry.aliases["champion"] = "2"
    registry.broken.add("2")
    r = (await client.post("/model/reload", headers={"X-API-Key": KEY})).json()
    assert not r["ok"] and "cannot load model version '2'" in r["last_error"]
    assert r["champion"]["version"] == "1"  # the old model keeps serving
    metrics = (await client.get("/metrics")).text
    assert "model_reload_failures_total 1.0" in metrics
    assert 'model_info{name="volstream-rv60",role="champion",version="1"} 1.0' in metrics


async def test_admin_disabled_without_a_key(registry) -> None:
    svc = build_service(Settings(), PredictorSettings(admin_api_key=None), registry)
    transport = httpx.ASGITransport(app=create_app(svc))
    async with httpx.AsyncClient(transport=transport, base_url="http://p") as c:
        r = await c.post("/model/reload", headers={"X-API-Key": "anything"})
    assert r.status_code == 403 and "PREDICTOR_ADMIN_API_KEY" in r.json()["detail"]


async def test_http_metrics_by_route_template(client) -> None:
    await client.get("/predictions/latest", params={"symbol": "ETH"})
    await client.get("/no/such/path")
    text = (await client.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/predictions/latest",status="404"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "http_request_duration_seconds_bucket" in text
