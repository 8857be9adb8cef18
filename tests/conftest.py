"""Shared fixtures: a real embedded broker per test, a real MLflow server per session.

Everything binds to free loopback ports, so suites (and developers) can run side by side, and every
process started here is stopped by its PID when the fixture ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.common.broker import EmbeddedBroker, free_port
from services.common.settings import REPO_ROOT, Settings

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
TWO_YEAR_FILE = SHARED_DATA / "btcusdt_1m_2023-2024.parquet"
CC_DIR = SHARED_DATA / "cryptocompare"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real recorded data, read in place."""
    assert TWO_YEAR_FILE.exists(), f"missing real data at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A fresh in-memory Tansu broker on a free port (starts in well under a second)."""
    b = EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log")
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture()
def settings(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    """Settings pointing at the test broker, with state under tmp_path."""
    return Settings(
        kafka_bootstrap_servers=broker.bootstrap,
        data_dir=tmp_path / "data",
        var_dir=tmp_path / "var",
        shared_data_dir=SHARED_DATA,
    )


@pytest.fixture()
def service_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """Environment for service subprocesses started by a test (metrics ports disabled)."""
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        DATA_DIR=str(settings.data_dir),
        VAR_DIR=str(settings.var_dir),
        SHARED_DATA_DIR=str(SHARED_DATA),
        METRICS_PORT="0",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    return env


class MlflowServer:
    """A real ``mlflow server`` on SQLite with a local artifact store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "mlflow.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.root / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited; see {self.root / 'mlflow.log'}")
            try:
                if httpx.get(f"{self.uri}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError("mlflow server did not become healthy")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One real MLflow server for the whole session (it takes ~15 s to start)."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
