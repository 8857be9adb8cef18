"""``volstream up --emulator`` on an empty broker is warm from the first minute: the live
ingestor publishes a week of history before its first live poll, so a prediction comes out
within two minutes instead of after six days of polling (issue #20)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from aiokafka import AIOKafkaConsumer

from devstack.broker import free_port, port_open
from devstack.mlflow_local import MlflowServer
from services.common import registry
from services.common.schemas import Prediction
from services.common.settings import Settings, metrics_off_env
from services.common.topics import PREDICTIONS
from tests.conftest import TWO_YEAR_FILE

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FIRST_PREDICTION_S = 120  # the promise to a new user


def champion_into(var: Path, mlflow_port: int, broker_port: int) -> None:
    """Train a small champion into the stack's own MLflow store (var/mlflow), as `make run`
    leaves one, then stop that server: `up` starts its own on the same store."""
    from trainer.settings import TrainerSettings
    from trainer.train import train_and_register

    t0 = int(pd.Timestamp("2023-07-01", tz="UTC").timestamp())
    candles = pd.read_parquet(
        TWO_YEAR_FILE, filters=[("time", ">=", t0), ("time", "<", t0 + 40 * 86400)]
    )
    server = MlflowServer(var / "mlflow", port=mlflow_port).start()
    try:
        s = Settings(
            mlflow_tracking_uri=server.uri,
            kafka_bootstrap_servers=f"127.0.0.1:{broker_port}",  # nothing there: events only logged
            xgb_threads=1,
        )
        ts = TrainerSettings(xgb_rounds=80, dvc_enabled=False, datasets_dir=var / "datasets")
        out = train_and_register(candles, s, ts, promote=False)
        registry.set_alias("champion", str(out["version"]), s)
    finally:
        server.stop()


async def first_prediction(bootstrap: str, deadline: float) -> Prediction | None:
    """The first message on ``predictions`` (read from the start), or None at the deadline.

    It subscribes only once ``up`` created the topic (subscribing earlier would auto-create it
    with the broker's default partition count)."""
    consumer = None
    try:
        while consumer is None and time.monotonic() < deadline:
            try:
                candidate = AIOKafkaConsumer(
                    bootstrap_servers=bootstrap, auto_offset_reset="earliest"
                )
                await candidate.start()
            except Exception:  # the broker is not up yet
                await asyncio.sleep(0.5)
                continue
            consumer = candidate
        while consumer is not None and time.monotonic() < deadline:
            if PREDICTIONS not in await consumer.topics():
                await asyncio.sleep(0.5)
                continue
            consumer.subscribe([PREDICTIONS])
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for r in records:
                        return Prediction.model_validate_json(r.value)
        return None
    finally:
        if consumer is not None:
            await consumer.stop()


def test_up_emulator_predicts_within_two_minutes_on_an_empty_broker(tmp_path: Path) -> None:
    var = tmp_path / "var"
    ports = {p: free_port() for p in ("broker", "mlflow", "predictor", "emulator")}
    champion_into(var, ports["mlflow"], ports["broker"])
    env = {
        **os.environ,
        "VAR_DIR": str(var),
        "DATA_DIR": str(tmp_path / "data"),
        "BROKER_PORT": str(ports["broker"]),
        "PREDICTOR_PORT": str(ports["predictor"]),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
        "EMULATOR_PORT": str(ports["emulator"]),
        **metrics_off_env(),
        "SYMBOLS": "BTC,ETH",
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    t0 = time.monotonic()
    up = subprocess.Popen(
        [sys.executable, "-m", "devstack.cli", "up", "--emulator", "--no-monitoring"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        bootstrap = f"127.0.0.1:{ports['broker']}"
        pred = asyncio.run(first_prediction(bootstrap, t0 + FIRST_PREDICTION_S + 60))
        elapsed = time.monotonic() - t0
        logs = (tmp_path / "up.log").read_text()[-3000:]
        assert pred is not None, f"no prediction in {elapsed:.0f} s:\n{logs}"
        assert elapsed <= FIRST_PREDICTION_S, f"first prediction after {elapsed:.0f} s"
        assert pred.symbol in ("BTC", "ETH") and pred.role == "champion"
        print(f"first prediction {elapsed:.0f} s after `volstream up --emulator`")
    finally:
        up.terminate()
        up.wait(90)
        log.close()
    for name, port in ports.items():
        assert not port_open("127.0.0.1", port), f"{name} port {port} still bound"
