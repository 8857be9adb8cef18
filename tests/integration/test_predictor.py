"""The predictor end to end: real MLflow (a model trained by the trainer on real candles), a real
broker, real feature vectors computed by the shared feature code from real candles."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr

from devstack.broker import EmbeddedBroker, free_port
from services.common import kafka, registry
from services.common.features import FEATURE_NAMES, FEATURE_VERSION, featurize_many
from services.common.schemas import Candle, DeadLetter, FeatureVector, ModelEvent, Prediction
from services.common.settings import REPO_ROOT, Settings
from services.common.topics import FEATURES, MODEL_EVENTS, PREDICTIONS, TICKS_CLEAN, TICKS_DLQ
from services.common.vector_codec import encode

pytestmark = pytest.mark.integration

PARQUET = REPO_ROOT.parent / "shared" / "data" / "btcusdt_1m_2023-2024.parquet"
ADMIN_KEY = "integration-admin-key"


def candles(start: str, days: float) -> pd.DataFrame:
    t0 = int(pd.Timestamp(start, tz="UTC").timestamp())
    filters = [("time", ">=", t0), ("time", "<", t0 + int(days * 86400))]
    return pd.read_parquet(PARQUET, filters=filters).reset_index(drop=True)


@pytest.fixture(scope="module")
def trained(mlflow_server, tmp_path_factory) -> tuple[Settings, str]:
    """A model trained and registered by the trainer on 40 real days (no alias left set)."""
    from trainer.settings import TrainerSettings
    from trainer.train import train_and_register

    tmp = tmp_path_factory.mktemp("predictor-train")
    name = f"predictor-it-{uuid.uuid4().hex[:8]}"
    with EmbeddedBroker(port=free_port(), log_path=tmp / "broker.log") as b:
        s = Settings(
            kafka_bootstrap_servers=b.bootstrap,
            mlflow_tracking_uri=mlflow_server.uri,
            model_name=name,
        )
        ts = TrainerSettings(
            xgb_rounds=80, dvc_enabled=False, datasets_dir=tmp / "datasets", xgb_threads=1
        )
        out = train_and_register(candles("2023-07-01", 40), s, ts, promote=False)
    client = registry.client(s)
    for alias in registry.ALIASES:
        if registry.alias_version(alias, s):
            client.delete_registered_model_alias(name, alias)
    return s, str(out["version"])


def vectors(feats: pd.DataFrame) -> list[FeatureVector]:
    values = feats[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    return [
        FeatureVector(
            symbol="BTC",
            time=int(t),
            feature_version=FEATURE_VERSION,
            warm=bool(w),
            features={
                n: None if np.isnan(v) else float(v)
                for n, v in zip(FEATURE_NAMES, row, strict=True)
            },
            ingested_at=time.time(),
        )
        for t, w, row in zip(feats["time"], feats["warm"], values, strict=True)
    ]


async def produce(
    settings: Settings, topic: str, records: list[tuple[bytes | None, bytes]]
) -> None:
    producer = kafka.make_producer(settings)
    await producer.start()
    try:
        for i in range(0, len(records), 5000):
            await kafka.send_batch(producer, topic, records[i : i + 5000])
    finally:
        await producer.stop()


async def read_all(settings: Settings, topic: str, idle_s: float = 2.0) -> list[bytes]:
    """Every record of ``topic`` (reads until ``idle_s`` without new records)."""
    consumer = kafka.make_consumer(topic, group_id=None, settings=settings)
    await consumer.start()
    out: list[bytes] = []
    idle = 0.0
    try:
        while idle < idle_s:
            batch = await consumer.getmany(timeout_ms=250)
            got = [r.value for recs in batch.values() for r in recs]
            out += got
            idle = 0.0 if got else idle + 0.25
    finally:
        await consumer.stop()
    return out


async def wait_for(check, timeout_s: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def start_predictor(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.predictor"],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


def metric(text: str, line_start: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.slow
async def test_replayed_week_one_prediction_per_warm_vector(
    trained, settings, service_env, tmp_path
) -> None:
    model_settings, version = trained
    await kafka.ensure_topics(settings)
    port = free_port()
    env = {
        **service_env,
        "MLFLOW_TRACKING_URI": model_settings.mlflow_tracking_uri,
        "MODEL_NAME": model_settings.model_name,
        "PREDICTOR_PORT": str(port),
        "PREDICTOR_MODEL_WAIT_S": "1",
        "PREDICTOR_REALIZED_OFFSET_RESET": "earliest",
        "VAR_DIR": str(tmp_path / "var"),
    }
    proc = start_predictor(env, tmp_path / "predictor.log")
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:

            async def get(path: str) -> httpx.Response | None:
                try:
                    return await http.get(path)
                except httpx.TransportError:
                    assert proc.poll() is None, (tmp_path / "predictor.log").read_text()[-3000:]
                    return None

            await wait_for(lambda: get("/health"), 120, "the predictor's HTTP port")
            ready = await get("/ready")
            assert ready.status_code == 503 and "no champion" in ready.json()["reasons"][0]

            # eight real days: the first one only warms the week-long features up
            week = candles("2023-08-15", 8)
            feats = featurize_many(week).iloc[1440:]
            vecs = vectors(feats)
            warm_times = [v.time for v in vecs if v.warm]
            assert 1000 < len(warm_times) < len(vecs)
            binary = encode(vecs[-1])
            bad = [
                (b"BTC", b'{"symbol": "BTC", "time": -1}'),
                (b"BTC", vecs[-1].model_copy(update={"feature_version": "rv60-other"}).to_bytes()),
                (b"BTC", binary[:-3]),  # cut short
                (b"BTC", b"\xf9" + binary[1:]),  # a format this code does not know
            ]
            # a rolling upgrade: JSON vectors from before it, then binary ones (the featurizer's)
            half = len(vecs) // 2
            wire = [v.to_bytes() for v in vecs[:half]] + [encode(v) for v in vecs[half:]]
            await produce(settings, FEATURES, [(b"BTC", v) for v in wire] + bad)
            closes = [Candle.from_dict({**r, "symbol": "BTC"}) for r in week.to_dict("records")]
            await produce(settings, TICKS_CLEAN, [(b"BTC", c.to_bytes()) for c in closes])
            await asyncio.sleep(2)
            assert await read_all(settings, PREDICTIONS, idle_s=0.5) == []  # wait-then-score

            registry.set_alias("champion", version, model_settings)
            await wait_for(lambda: _ready(http), 60, "readiness after the champion appears")

            async def all_predicted() -> list[Prediction] | None:
                preds = [
                    Prediction.from_bytes(v) for v in await read_all(settings, PREDICTIONS, 1.0)
                ]
                return preds if len(preds) >= len(warm_times) else None

            preds = await wait_for(all_predicted, 120, "a prediction per warm vector", every=1)
            assert sorted(p.time for p in preds) == warm_times  # exactly one each
            assert {(p.role, p.model_version) for p in preds} == {("champion", version)}
            dead = [DeadLetter.from_bytes(v) for v in await read_all(settings, TICKS_DLQ, 0.5)]
            codes = sorted(d.codes[0] for d in dead)
            assert codes == [
                "feature_version_mismatch",
                "malformed",
                "malformed",
                "unknown_vector_format",
            ]
            assert {d.payload() for d in dead} == {v for _, v in bad}  # the original bytes

            latest = (await http.get("/predictions/latest", params={"symbol": "BTC"})).json()
            assert latest["time"] == warm_times[-1]
            resolvable = sum(t + 3600 <= week["time"].iloc[-1] for t in warm_times)

            async def resolved() -> str | None:
                text = (await http.get("/metrics")).text
                n = metric(text, 'model_resolved_predictions_total{role="champion"}')
                return text if n == resolvable else None

            text = await wait_for(resolved, 60, "live accuracy on every resolvable prediction")
            qlike = metric(text, 'model_live_qlike{role="champion"}')
            assert qlike is not None and 0 < qlike < 5
            assert 0 < metric(text, 'model_live_rmse{role="champion"}') < 3
            assert metric(text, 'predictor_vectors_total{outcome="cold"}') == len(vecs) - len(
                warm_times
            )
            assert metric(text, "data_drift_ratio") is not None
            # the resolved full hours taught the champion's adaptive interval state, kept on disk
            states = list((tmp_path / "var" / "predictor" / "intervals").glob(f"*-v{version}-*"))
            assert len(states) == 1 and "BTC" in json.loads(states[0].read_text())
    finally:
        rc = stop_process(proc)
    assert rc == 0, (tmp_path / "predictor.log").read_text()[-3000:]


async def _ready(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/ready")).status_code == 200
    except httpx.TransportError:  # the server is not listening yet
        return False


def extra_versions(model_settings: Settings, version: str) -> tuple[str, str]:
    """Version 2: the same run registered again, with its hash tags (loads fine). Version 3: a
    run with no bundle (cannot load)."""
    client = registry.client(model_settings)
    name = model_settings.model_name
    mv = client.get_model_version(name, version)
    good = client.create_model_version(name, mv.source, run_id=mv.run_id, tags=mv.tags).version
    run = client.create_run(client.get_run(mv.run_id).info.experiment_id)
    client.set_terminated(run.info.run_id)
    bad = client.create_model_version(
        name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
    )
    return str(good), str(bad.version)


async def hammer(http: httpx.AsyncClient, body: dict, stop: asyncio.Event, seen: Counter) -> None:
    """Steady load: /predict and /model in a loop; counts statuses and serving versions."""
    while not stop.is_set():
        r = await http.post("/predict", json=body)
        seen[(r.status_code, r.json().get("model_version"))] += 1
        seen[((await http.get("/model")).status_code, "model")] += 1


@pytest.mark.slow
async def test_hot_reload_under_load_fails_no_request(trained, settings, tmp_path) -> None:
    import uvicorn

    from services.predictor.app import build_service, create_app
    from services.predictor.settings import PredictorSettings

    model_settings, v1 = trained
    v2, broken = extra_versions(model_settings, v1)
    registry.set_alias("champion", v1, model_settings)
    await kafka.ensure_topics(settings)
    port = free_port()
    s = settings.model_copy(
        update={
            "mlflow_tracking_uri": model_settings.mlflow_tracking_uri,
            "model_name": model_settings.model_name,
        }
    )
    service = build_service(
        s,
        PredictorSettings(
            model_poll_s=3600, realized_offset_reset="earliest", admin_api_key=SecretStr(ADMIN_KEY)
        ),
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(service), host="127.0.0.1", port=port, log_config=None, access_log=False
        )
    )
    serving = asyncio.create_task(server.serve())
    feats = featurize_many(candles("2023-08-15", 7.1)).iloc[-1]
    body = {
        "symbol": "BTC",
        "feature_version": FEATURE_VERSION,
        "features": {n: None if math.isnan(feats[n]) else float(feats[n]) for n in FEATURE_NAMES},
    }
    stop, seen = asyncio.Event(), Counter()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            await wait_for(lambda: _ready(http), 90, "readiness")
            assert (await http.post("/model/reload")).status_code == 401
            assert (
                await http.post("/model/reload", headers={"X-API-Key": "nope"})
            ).status_code == 403
            load = [asyncio.create_task(hammer(http, body, stop, seen)) for _ in range(8)]

            # 1. promotion announced on model.events
            registry.set_alias("champion", v2, model_settings)
            event = ModelEvent(
                event="promoted", model_name=s.model_name, version=v2, alias="champion"
            )
            await produce(settings, MODEL_EVENTS, [(s.model_name.encode(), event.to_bytes())])

            async def champion_is(v: str) -> bool:
                return (await http.get("/model")).json()["champion"]["version"] == v

            await wait_for(lambda: champion_is(v2), 60, "the event-driven swap to v2")
            # 2. a challenger appears; the admin asks for a reload
            registry.set_alias("challenger", v1, model_settings)
            admin = {"X-API-Key": ADMIN_KEY}
            r = (await http.post("/model/reload", headers=admin)).json()
            assert r["ok"] and r["challenger"]["version"] == v1
            # 3. a broken champion: the load fails, v2 keeps serving
            registry.set_alias("champion", broken, model_settings)
            r = (await http.post("/model/reload", headers=admin)).json()
            assert not r["ok"] and r["champion"]["version"] == v2 and r["last_error"]
            await asyncio.sleep(1)
            stop.set()
            await asyncio.gather(*load)
            text = (await http.get("/metrics")).text
    finally:
        stop.set()
        server.should_exit = True
        await asyncio.wait_for(serving, 30)
    assert {status for status, _ in seen} == {200}, seen  # not one failed request
    assert seen[(200, v1)] > 0 and seen[(200, v2)] > 0
    assert metric(text, "model_reload_failures_total") == 1
    assert metric(text, 'model_reloads_total{role="champion"}') == 2  # v1 at start, then v2
