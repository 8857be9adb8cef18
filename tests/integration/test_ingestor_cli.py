"""The entry points the demo and the supervisor use: ``volstream ingest ...``, ``volstream
emulator``, ``python -m services.ingestor`` (config errors, metrics endpoint, backfill)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from devstack.broker import free_port
from services.common.settings import Settings
from tests.integration.test_ingestor_support import (
    emulator,
    run_consume,
    spawn,
    stop,
    volstream,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_live_against_the_real_api_without_a_key_says_what_to_do(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "INGESTOR_METRICS_PORT": "0",
        "DATA_DIR": str(tmp_path),
        "INGESTOR_CRYPTOCOMPARE_BASE_URL": "https://min-api.cryptocompare.com",
    }
    out = subprocess.run(
        [sys.executable, "-m", "services.ingestor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert (
        "INGESTOR_CRYPTOCOMPARE_API_KEY" in out.stderr and "volstream ingest replay" in out.stderr
    )
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_backfill_cli_against_the_emulator(
    settings: Settings, service_env: dict[str, str], tmp_path: Path
) -> None:
    args = ("--speed", "0", "--start-time", "1800000000", "--lag-s", "0")
    with emulator(tmp_path, service_env, *args) as emu:
        env = {**service_env, "INGESTOR_CRYPTOCOMPARE_BASE_URL": emu.url}
        report = volstream("ingest", "backfill", "--days", "0.5", "--symbols", "BTC,ETH", env=env)
        assert "BTC: ok: fetched 720; skipped 0" in report, report
        served = {s: emu.closed_rows(s)[-720:] for s in ("BTC", "ETH")}
        # a range behind what is already published: refused, and the report says why
        again = subprocess.run(
            [sys.executable, "-m", "devstack.cli", "ingest", "backfill", "--days", "1"],
            env={**env, "SYMBOLS": "BTC"},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert again.returncode == 1 and "backfill refused for BTC" in again.stderr, again.stderr
        assert "BTC: empty: fetched 0; skipped 1440: behind data already published" in again.stdout
        # an API that keeps failing: the one-shot backfill says so with its exit status
        emu.call("POST", "/_emulator/faults", json={"probabilities": {"http_500": 1.0}})
        failing = {**env, "INGESTOR_RETRY_ATTEMPTS": "2", "INGESTOR_RETRY_INITIAL_S": "0.01"}
        out = subprocess.run(
            [sys.executable, "-m", "devstack.cli", "ingest", "backfill", "--symbols", "BTC"],
            env=failing,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert out.returncode == 1 and "backfill incomplete for BTC" in out.stderr
    batches = run_consume(settings, idle_s=2.0)
    for symbol in ("BTC", "ETH"):
        mine = [b for k, _, b in batches if k == symbol]
        assert {b.source for b in mine} == {"backfill"} and {b.symbol for b in mine} == {symbol}
        rows = [c for b in mine for c in b.candles]
        assert rows == served[symbol]  # half a day, oldest first, exactly as served
        assert rows[-1]["time"] == 1800000000 - 60


@pytest.mark.slow
def test_metrics_endpoint_while_live(
    settings: Settings, service_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    with emulator(tmp_path, service_env, "--speed", "60") as emu:
        env = {
            **service_env,
            "INGESTOR_CRYPTOCOMPARE_BASE_URL": emu.url,
            "INGESTOR_METRICS_PORT": str(port),
            "INGESTOR_POLL_INTERVAL_S": "0.2",
            "SYMBOLS": "BTC",
        }
        proc = spawn(["services.ingestor"], env, tmp_path / "ing.log")
        try:

            def scraped() -> str:
                try:
                    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                except httpx.HTTPError:
                    return ""
                live = 'ingestor_candles_published_total{source="live",symbol="BTC"}'
                return text if live in text else ""  # after the warm-up (source backfill)

            wait_until(lambda: bool(scraped()), 90, "metrics after a live poll", proc)
            text = scraped()
        finally:
            assert stop(proc) == 0
    for name in (
        'ingestor_candles_published_total{source="live",symbol="BTC"}',
        'ingestor_lag_seconds{symbol="BTC"}',
        "ingestor_http_request_duration_seconds_bucket",
    ):
        assert name in text
