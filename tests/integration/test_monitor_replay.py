"""``volstream monitor replay`` agrees with the running stack, minute by minute.

A champion trained by ``volstream train`` on calm September 2023 candles; the featurizer and the
predictor run as processes on a real broker; real candles from 27 July to the early hours of
5 August 2024 (the crash) go to ``ticks.clean``: in bulk until the drift windows are full, then
one minute at a time, reading the predictor's ``data_drift_ratio`` from ``/metrics`` after each.
The replay of the same candles through the same model must give the same ratio at every minute.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.harness import Pipeline, write_slice
from devstack.broker import free_port
from devstack.cli import app
from devstack.monitor_replay import monitor_series
from services.common.kafka import publish
from services.common.registry import load_bundle
from services.common.schemas import Candle
from services.common.topics import TICKS_CLEAN

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

TRAIN = ("2023-09-01", 14)
SLICE = ("2024-07-27", "2024-08-05 01:00")  # the featurizer warms up inside it
STEPPED = 90  # the last minutes, sent one at a time (the crash begins at 00:00)


def ts(when: str) -> int:
    return int(pd.Timestamp(when, tz="UTC").timestamp())


def scrape(url: str) -> dict[str, float]:
    out = {}
    for line in httpx.get(url, timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def scored(metrics: dict[str, float]) -> float:
    return metrics.get('predictor_vectors_total{outcome="scored"}', 0.0)


def ratio(metrics: dict[str, float]) -> float:
    values = [v for k, v in metrics.items() if k.startswith("data_drift_ratio{")]
    return values[0] if values else float("nan")


def wait_scored(url: str, n: int, timeout_s: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            m = scrape(url)
        except httpx.HTTPError:
            m = {}
        if scored(m) >= n:
            assert scored(m) == n, f"scored {scored(m)} vectors, expected {n}"
            return m
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {n} scored vectors")


def candles(df: pd.DataFrame) -> list[tuple[bytes, bytes]]:
    rows = df.to_dict("records")
    return [(b"BTC", Candle.from_dict({**r, "symbol": "BTC"}).to_bytes()) for r in rows]


def test_replay_and_live_predictor_agree_minute_by_minute(mlflow_server, tmp_path: Path) -> None:
    data = tmp_path / "slice.parquet"
    write_slice(data, ts(SLICE[0]), ts(SLICE[1]))
    df = pd.read_parquet(data)
    with Pipeline(tmp_path / "pipe", mlflow_server.uri) as pipe:
        train = tmp_path / "train.parquet"
        write_slice(train, ts(TRAIN[0]), ts(TRAIN[0]) + TRAIN[1] * 86400)
        # two weeks are all warm-up and fit: no held-out gate window, promoted by hand
        env = {"TRAINER_XGB_ROUNDS": "60", "TRAINER_HOLDOUT_DAYS": "0"}
        args = ("train", "--data", str(train), "--no-promote")
        assert pipe.volstream("train", *args, **env).wait(600) == 0
        why = ("--why", "the test needs a champion")
        assert pipe.volstream("promote", "promote", "--force", *why).wait(300) == 0
        settings = pipe.settings.model_copy(update={"mlflow_tracking_uri": mlflow_server.uri})
        bundle = load_bundle("champion", settings)
        assert bundle.drift_limits and bundle.har_seasonal  # stored with the model by training

        # the replay first: it also says how many vectors the live predictor will score
        series = monitor_series(df, bundle)
        expected = dict(zip(series.time.tolist(), series.drift_ratio.tolist(), strict=True))
        assert np.isfinite(series.drift_ratio[-STEPPED:]).all()

        port = free_port()
        pipe.service("featurizer")
        pipe.service("predictor", PREDICTOR_PORT=str(port), PREDICTOR_MODEL_WAIT_S="1")
        url = f"http://127.0.0.1:{port}/metrics"
        bulk, stepped = df.iloc[:-STEPPED], df.iloc[-STEPPED:]
        asyncio.run(publish(TICKS_CLEAN, candles(bulk), pipe.settings))
        n = int((series.time <= bulk["time"].iloc[-1]).sum())
        live = {int(bulk["time"].iloc[-1]): ratio(wait_scored(url, n, 600))}
        for i in range(len(stepped)):
            asyncio.run(publish(TICKS_CLEAN, candles(stepped.iloc[i : i + 1]), pipe.settings))
            n += 1
            live[int(stepped["time"].iloc[i])] = ratio(wait_scored(url, n, 60))

    times = sorted(live)
    got = np.array([live[t] for t in times])
    want = np.array([expected[t] for t in times])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert want.max() > want.min()  # the crash moves the ratio inside the stepped hour and a half

    # the CLI on the same candles and the registered champion: one JSON object, the keys
    result = CliRunner().invoke(
        app,
        ["monitor", "replay", "--data", str(data), "--model", "champion", "--json"],
        env={"MLFLOW_TRACKING_URI": mlflow_server.uri},
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # MLflow draws its download progress on stderr
    assert set(out) == {"minutes", "warm_minutes", "alerts", "drift_ratio"}
    assert out["minutes"] == len(series.time)
    assert out["warm_minutes"] == int(np.isfinite(series.drift_ratio).sum())
    assert set(out["alerts"]) == {"DataDriftHigh", "ModelAccuracyDegraded"}
    for alert in out["alerts"].values():
        assert set(alert) == {"firing_minutes", "episodes"}
    assert out["drift_ratio"]["p50"] == pytest.approx(np.nanquantile(series.drift_ratio, 0.5))
