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


async def test_latest_fast_path_answers_exactly_as_the_route(
    client, service, calm_features, to_vectors
) -> None:
    """``GET /predictions/latest`` is served before routing (``LatestFastPath``): the same status,
    headers and bytes as the route itself gives, counted in the same metrics; its errors (422,
    404) and other methods are still the route's."""
    from services.predictor.core import RawRecord, process
    from services.predictor.middleware import LatestFastPath

    vecs = to_vectors(calm_features.iloc[-3:])
    for symbol in ("BTC", "ETH"):
        recs = [RawRecord("f", 0, i, None, v.to_bytes()) for i, v in enumerate(vecs)]
        preds = process(recs, service.holder.models.champion.bundle, None).predictions
        service.ring.extend([p.model_copy(update={"symbol": symbol}) for p in preds])
    routed = create_app(service)
    routed.user_middleware = [m for m in routed.user_middleware if m.cls is not LatestFastPath]
    transport = httpx.ASGITransport(app=routed)
    async with httpx.AsyncClient(transport=transport, base_url="http://predictor") as plain:
        for query in ("", "?symbol=ETH", "?symbol=BTC&symbol=ETH", "?x=1&symbol=BTC"):
            fast = await client.get(f"/predictions/latest{query}")
            slow = await plain.get(f"/predictions/latest{query}")
            assert fast.status_code == slow.status_code == 200, query
            assert fast.content == slow.content, query
            assert fast.headers.items() == slow.headers.items(), query
        assert fast.json()["symbol"] == "BTC"
        for query in ("?symbol=btc/usd", "?symbol=SOL"):  # 422, 404: the route's own answers
            fast = await client.get(f"/predictions/latest{query}")
            slow = await plain.get(f"/predictions/latest{query}")
            assert (fast.status_code, fast.content) == (slow.status_code, slow.content)
            assert fast.status_code in (404, 422)
        fast, slow = (
            await client.head("/predictions/latest"),
            await plain.head("/predictions/latest"),
        )
        assert fast.status_code == slow.status_code  # another method: the route's answer
    # both apps count into the service's metrics: 4 answers each by the fast path and the route
    stats = service.metrics.http
    assert stats.sample_value("GET", "/predictions/latest", 200) == 8
    assert stats.sample_value("GET", "/predictions/latest", 404) == 2
    assert stats.sample_value("GET", "/predictions/latest", 422) == 2
    assert stats.sample_value("HEAD", "/predictions/latest", 405) == 2
    text = (await client.get("/metrics")).text
    line = 'http_request_duration_seconds_count{method="GET",route="/predictions/latest"}'
    assert f"{line} 12.0" in text


async def test_predict_fast_path_answers_as_the_route(
    client, service, calm_features, to_vectors
) -> None:
    """``POST /predict`` is served before routing (``PredictFastPath``) by the route's own
    answer function: the same statuses, headers and bodies as the route (a 200's timestamps
    aside), counted in the same metrics; bodies of unknown or excessive length go to the route."""
    from services.predictor.middleware import PredictFastPath

    body = payload(to_vectors(calm_features.iloc[-1:])[0])
    bodies = [
        body,
        {**body, "features": {**body["features"], "rv_5m": "x"}},
        {**body, "features": {k: v for k, v in body["features"].items() if k != "lrv_60m"}},
        {**body, "feature_version": "rv60-0123"},
        {**body, "symbol": "btc/usd"},
        {**body, "features": {f"f{i}": 1.0 for i in range(10_000)}},  # 413
    ]
    routed = create_app(service)
    routed.user_middleware = [m for m in routed.user_middleware if m.cls is not PredictFastPath]
    transport = httpx.ASGITransport(app=routed)
    async with httpx.AsyncClient(transport=transport, base_url="http://predictor") as plain:
        statuses = []
        for b in bodies:
            fast, slow = await client.post("/predict", json=b), await plain.post("/predict", json=b)
            assert fast.status_code == slow.status_code, b
            same = ("content-type", "content-length") if fast.status_code != 200 else ()
            assert [fast.headers.get(h) for h in same] == [slow.headers.get(h) for h in same]
            assert fast.headers["content-type"] == slow.headers["content-type"]
            assert len(fast.headers) == len(slow.headers)
            if fast.status_code == 200:  # the timestamps' digits can change the length
                stamps = ("emitted_at", "features_emitted_at")
                f, s = (
                    {k: v for k, v in r.json().items() if k not in stamps} for r in (fast, slow)
                )
                assert f == s
            else:
                assert fast.content == slow.content
            statuses.append(fast.status_code)
        assert statuses == [200, 422, 422, 409, 422, 413]
        bad = {"content": b"{not json", "headers": {"content-type": "application/json"}}
        fast, slow = await client.post("/predict", **bad), await plain.post("/predict", **bad)
        assert (fast.status_code, fast.content) == (slow.status_code, slow.content)
        # no champion: 503 from both
        service.holder.models = type(service.holder.models)()
        fast, slow = (
            await client.post("/predict", json=body),
            await plain.post("/predict", json=body),
        )
        assert fast.status_code == slow.status_code == 503 and fast.content == slow.content
    stats = service.metrics.http
    assert stats.sample_value("POST", "/predict", 200) == 2
    assert stats.sample_value("POST", "/predict", 422) == 8
    assert stats.sample_value("POST", "unmatched", 413) == 2  # BodyLimit answers before routing
    assert stats.sample_value("POST", "/predict", 503) == 2
