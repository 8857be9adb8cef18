"""Shared fixtures: a real embedded broker per test, a real MLflow server per session.

Everything binds to free loopback ports, so suites (and developers) can run side by side, and every
process started here is stopped by its PID when the fixture ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.broker import EmbeddedBroker, free_port
from devstack.mlflow_local import MlflowServer
from services.common.settings import REPO_ROOT, Settings, metrics_off_env

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
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update(metrics_off_env())
    return env


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One real MLflow server for the whole session (it takes ~15 s to start)."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def pytest_unconfigure(config: pytest.Config) -> None:
    """At the very end: how many tests were skipped, grouped by why (a skip hides a check)."""
    terminalreporter = config.pluginmanager.get_plugin("terminalreporter")
    if terminalreporter is None:
        return
    skipped = terminalreporter.stats.get("skipped", [])
    reasons: dict[str, int] = {}
    for report in skipped:
        longrepr = report.longrepr
        why = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        why = why.removeprefix("Skipped: ")
        reasons[why] = reasons.get(why, 0) + 1
    write = terminalreporter.write_line
    write(f"{len(skipped)} tests skipped" + (":" if skipped else ""))
    for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        write(f"  {n:>4}  {why}")
