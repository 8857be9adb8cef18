"""The live check: the real stack on real data, watched by a real Prometheus and Alertmanager.

Setup (everything on free loopback ports, stopped by PID at the end):
- a champion trained with ``volstream train`` on calm real candles (September 2023);
- the services as subprocesses on a fresh embedded broker: validator, featurizer, predictor, the
  lag exporter, and a live ingestor polling the CryptoCompare emulator (with injected HTTP 500s);
- Prometheus, Alertmanager and the webhook sink, scraping and evaluating every second.
  ``DataDriftHigh``'s ``for:`` is cut from 5 minutes to 5 seconds in the test copy of the rules.

Then the real March 2020 crash week is replayed from its file in CryptoCompare's v2
``histominute`` format. It is all the history there is, so the featurizer warms up inside it
(``WARMUP_MINUTES``, 80 % of a week) and the champion scores its last 33.6 hours, 14 and
15 March 2020, in the crash's wake. Checked:
- every target is up;
- every dashboard panel query, every recording rule and every alert's signal returns data, and
  every rule evaluates without error;
- the crash, scored by the calm model, fires DataDriftHigh through Alertmanager to the webhook;
- ``volstream report`` renders its PNGs with data in every panel.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.harness import Pipeline, write_slice
from devstack.broker import free_port
from devstack.cli import app
from devstack.monitoring_stack import MonitoringStack
from monitoring.alerts import ALERTS, ALERTS_BY_NAME, RECORDINGS
from monitoring.panels import PANELS
from monitoring.promapi import PromClient
from services.common.kafka import publish
from services.common.schemas import RawBatch
from services.common.topics import TICKS_RAW
from tests.tools import require_daemons

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(900),  # trains a model and runs the whole stack: minutes on a busy box
]

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
CALM_WEEK_JSON = SHARED / "cryptocompare" / "cc_histominute_BTCUSDT_2024-03-01_7d.json"
TRAIN = ("2023-09-01", 14)  # calm: start, days (a week of warm-up, a week of origins)
CRASH_WEEK_JSON = SHARED / "cryptocompare" / "cc_histominute_BTCUSDT_2020-03-09_7d.json"


@pytest.fixture(scope="module", autouse=True)
def _daemons() -> None:
    """Prometheus and Alertmanager must be installed (a failure when ``CI`` is set)."""
    require_daemons()


def ts(day: str) -> int:
    return int(pd.Timestamp(day, tz="UTC").timestamp())


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 1.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` (and the last value)."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def wait_until_empty(check: Callable[[], list[str]], timeout_s: float) -> list[str]:
    """Poll ``check`` (what is still missing) until it is empty or time is up; the last list."""
    deadline, missing = time.monotonic() + timeout_s, check()
    while missing and time.monotonic() < deadline:
        time.sleep(1)
        missing = check()
    return missing


def train_calm_champion(pipe: Pipeline, workdir: Path) -> None:
    calm = workdir / "calm.parquet"
    start, days = TRAIN
    write_slice(calm, ts(start), ts(start) + days * 86400)
    # the trainer's dataset snapshots stay out of the repository, and DVC off, in this test
    quiet = {
        "TRAINER_DATASETS_DIR": str(workdir / "datasets"),
        "TRAINER_DVC_ENABLED": "false",
        "TRAINER_XGB_ROUNDS": "300",
        "TRAINER_HOLDOUT_DAYS": "0",  # two weeks are all warm-up and fit; promoted by hand below
    }
    pipe.volstream(
        "train", "train", "--data", str(calm), "--symbol", "BTC", "--no-promote", **quiet
    )
    assert pipe.wait("train", 900) == 0, (workdir / "pipe" / "log" / "train.log").read_text()[
        -3000:
    ]
    pipe.volstream("promote", "promote", "--force", "--why", "the test needs a champion", **quiet)
    assert pipe.wait("promote", 300) == 0, (workdir / "pipe" / "log" / "promote.log").read_text()


def start_services(pipe: Pipeline, ports: dict[str, int], emulator_port: int) -> None:
    """Everything Prometheus scrapes, each on its own metrics port."""
    py = sys.executable
    pipe.start(
        "emulator",
        [py, "-m", "devstack.emulator", "--port", str(emulator_port), "--dataset",
         f"ETH={CALM_WEEK_JSON}", "--faults", "http_500=0.3", "--seed", "3"],
    )  # fmt: skip
    pipe.service(
        "ingestor",
        INGESTOR_METRICS_PORT=str(ports["ingestor"]),
        INGESTOR_MODE="live",
        SYMBOLS="ETH",
        INGESTOR_POLL_INTERVAL_S="1",
        INGESTOR_RETRY_INITIAL_S="0.1",
        INGESTOR_CRYPTOCOMPARE_BASE_URL=f"http://127.0.0.1:{emulator_port}",
    )
    pipe.service("validator", VALIDATOR_METRICS_PORT=str(ports["validator"]))
    pipe.service(
        "featurizer", FEATURIZER_METRICS_PORT=str(ports["featurizer"]), FEATURIZER_WEB_PORT="0"
    )
    pipe.service("predictor", PREDICTOR_PORT=str(ports["predictor"]), PREDICTOR_PSI_WINDOW="1440")
    pipe.start(
        "lag-exporter",
        [py, "-m", "services.lag_exporter"],
        LAG_EXPORTER_METRICS_PORT=str(ports["kafka-lag"]),
        LAG_EXPORTER_POLL_INTERVAL_S="1",
    )


async def publish_bad_batch(pipe: Pipeline) -> None:
    """One RawBatch with broken rows, as a faulty upstream would send: the DLQ must show it."""
    rows = [
        {"time": ts("2024-08-01"), "open": 1.0, "high": 0.5, "low": 2.0, "close": 1.0,
         "volumefrom": 1.0, "volumeto": 1.0},
        {"time": ts("2024-08-01") + 60, "open": 1.0, "high": 1.0, "low": 1.0},
    ]  # fmt: skip
    batch = RawBatch(
        batch_id=RawBatch.make_id("SOL", rows),
        symbol="SOL",
        source="live",
        fetched_at=time.time(),
        candles=rows,
    )
    await publish(TICKS_RAW, [(b"SOL", batch.to_bytes())], pipe.settings)


def missing_data(prom: PromClient) -> list[str]:
    """Every panel query, recording and alert signal that returns nothing right now."""
    exprs = [q.expr for p in PANELS for q in p.queries]
    exprs += [r.record for r in RECORDINGS]
    exprs += [s for a in ALERTS for s in a.signals]
    return [e for e in dict.fromkeys(exprs) if not prom.query(e)]


def target_health(prom: PromClient) -> dict[str, str]:
    return {t["labels"]["job"]: t["health"] for t in prom.targets()}


def drift_notification(stack: MonitoringStack) -> list[tuple[str, dict]]:
    return [
        (n["path"], a)
        for n in stack.notifications()
        for a in n["body"]["alerts"]
        if a["labels"]["alertname"] == "DataDriftHigh" and a["status"] == "firing"
    ]


def test_live_check(mlflow_server: Any, tmp_path: Path) -> None:
    with Pipeline(tmp_path / "pipe", mlflow_server.uri) as pipe:
        train_calm_champion(pipe, tmp_path)
        jobs = ("ingestor", "validator", "featurizer", "predictor", "kafka-lag")
        ports = {job: free_port() for job in jobs}
        start_services(pipe, ports, free_port())
        predictor = f"http://127.0.0.1:{ports['predictor']}"
        wait_for(lambda: httpx.get(f"{predictor}/ready", timeout=2).status_code == 200, 180,
                 "the predictor to load the champion")  # fmt: skip

        fast = {"DataDriftHigh": ALERTS_BY_NAME["DataDriftHigh"].with_for(5 / 60)}
        targets = {job: f"127.0.0.1:{port}" for job, port in ports.items()}
        with MonitoringStack(tmp_path / "monitoring", targets, alerts=fast) as stack:
            prom = PromClient(stack.prometheus_url)
            pipe.volstream("replay", "ingest", "replay", "--file", str(CRASH_WEEK_JSON),
                           "--symbol", "BTC", "--metrics-port", "0")  # fmt: skip
            asyncio.run(publish_bad_batch(pipe))
            assert pipe.wait("replay", 300) == 0, "replay of the March 2020 week failed"
            latest = f"{predictor}/predictions/latest?symbol=BTC"
            wait_for(lambda: httpx.get(latest, timeout=5).status_code == 200, 300, "predictions")
            for path in ("/model", "/predictions?symbol=BTC"):
                assert httpx.get(predictor + path, timeout=5).status_code == 200, path

            health = wait_for(
                lambda: (h := target_health(prom)) and set(h.values()) == {"up"} and h,
                60,
                "every target up",
            )
            assert set(health) == {*jobs, "prometheus", "alertmanager"}

            (path, alert), *_ = wait_for(
                lambda: drift_notification(stack), 240, "DataDriftHigh at the webhook"
            )
            assert path == "/alerts/warning"
            assert alert["labels"]["severity"] == "warning"
            drift = float(prom.query("max(data_drift_ratio)")[0]["value"][1])
            assert drift > ALERTS_BY_NAME["DataDriftHigh"].thresholds["ratio"]

            assert wait_until_empty(lambda: missing_data(prom), 240) == []
            unhealthy = [r["name"] for r in prom.rules() if r.get("health") != "ok"]
            assert unhealthy == []

            out = tmp_path / "report"
            args = ["report", "--prometheus", stack.prometheus_url, "--since", "15m", "--out"]
            result = CliRunner().invoke(app, [*args, str(out)])
            assert result.exit_code == 0, result.output
            assert "no data" not in result.output, result.output
            assert sorted(p.name for p in out.glob("*.png")) == [
                "dlq.png", "drift.png", "latency.png", "predicted_vs_realized.png"
            ]  # fmt: skip
            prom.close()
