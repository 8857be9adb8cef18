"""Schemathesis ``--checks all`` against the running predictor: generated requests, valid and
invalid, never get a 5xx, valid ones are accepted, invalid ones refused, and every answer (status,
headers, body) is one the OpenAPI document declares.

The app runs HTTP-only (no Kafka loops) with a real model fitted by the trainer on real candles,
served by uvicorn on a free port; the ``st`` CLI runs against it as it would against production,
once with no admin key configured (admin routes answer 403) and once with one (and the header).
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pandas as pd
import pytest
import uvicorn
from pydantic import SecretStr

from devstack.broker import free_port
from services.common.settings import REPO_ROOT, Settings
from services.predictor.app import build_service, create_app
from services.predictor.models import StaticRegistry
from services.predictor.settings import PredictorSettings

PARQUET = REPO_ROOT.parent / "shared" / "data" / "btcusdt_1m_2023-2024.parquet"
ST = REPO_ROOT / ".venv" / "bin" / "st"
ADMIN_KEY = "contract-key"


@pytest.fixture(scope="module")
def bundle():
    from trainer.baselines import LAMBDA_GRID
    from trainer.dataset import build_dataset
    from trainer.settings import TrainerSettings
    from trainer.train import fit, make_bundle

    t0 = int(pd.Timestamp("2023-07-01", tz="UTC").timestamp())
    df = pd.read_parquet(PARQUET, filters=[("time", ">=", t0), ("time", "<", t0 + 30 * 86400)])
    ts = TrainerSettings(xgb_rounds=30, dvc_enabled=False)
    ds = build_dataset(df, ts, lambdas=LAMBDA_GRID)
    return replace(make_bundle(fit(ds, ts, 1), ds, "BTC", Settings()), version="1", run_id="c")


@pytest.fixture(params=[None, ADMIN_KEY], ids=["no-admin-key", "admin-key"])
def predictor(request: pytest.FixtureRequest, bundle) -> Iterator[tuple[str, str | None]]:
    """The predictor's HTTP app on a free port: (base URL, admin key)."""
    key = request.param
    options = PredictorSettings(admin_api_key=SecretStr(key) if key else None)
    service = build_service(Settings(), options, StaticRegistry(bundle, champion="1"))
    asyncio.run(service.holder.reload())
    assert service.holder.models.champion is not None
    # steady state: the stream loop (not run here) has joined its group; the 503s are tested
    # in the unit tests, and schemathesis counts every 5xx as a failure
    service.worker.assignment.joined = True
    port = free_port()
    config = uvicorn.Config(
        create_app(service, run_loops=False), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the predictor did not start"
        time.sleep(0.1)
    try:
        yield url, key
    finally:
        server.should_exit = True
        thread.join(15)


def schemathesis(url: str, report: Path, *headers: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(ST), "run", f"{url}/openapi.json", "--checks", "all", "--max-examples", "60"]
    cmd += ["--report", "junit", "--report-junit-path", str(report)]
    for h in headers:
        cmd += ["--header", h]
    # run from the test's directory: st keeps a cache (.schemathesis/) in its working directory
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=report.parent)


def test_schemathesis_checks_all_find_nothing(
    predictor: tuple[str, str | None], tmp_path: Path
) -> None:
    url, key = predictor
    spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
    assert {"/predict", "/predictions/latest", "/model/reload"} <= set(spec["paths"])
    headers = [f"X-API-Key: {key}"] if key else []
    out = schemathesis(url, tmp_path / "junit.xml", *headers)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "failure" not in out.stdout.splitlines()[-1], out.stdout[-3000:]


def test_the_spec_lists_every_feature_and_every_answer(predictor: tuple[str, str | None]) -> None:
    from services.common.features import FEATURE_NAMES, FEATURE_VERSION

    url, _ = predictor
    spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
    predict = spec["paths"]["/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]
    features = body["properties"]["features"]
    assert features["required"] == list(FEATURE_NAMES)
    assert all(
        {"type": "number"}.items() <= features["properties"][n]["anyOf"][0].items()
        for n in FEATURE_NAMES
    )
    assert body["properties"]["feature_version"]["enum"] == [FEATURE_VERSION]
    assert {"200", "409", "413", "422", "503"} <= set(predict["responses"])
    reload_ = spec["paths"]["/model/reload"]["post"]["responses"]
    assert {"200", "401", "403", "413"} <= set(reload_)
    assert "503" not in reload_  # no key configured is a 403 (see routes/deps.py)
