"""``volstream data fetch`` against a faithful local archive built from the real shared candles.

The archive is served over real HTTP in exactly the published layout (zips of header-less 12-column
CSVs beside ``sha256sum`` checksums; millisecond open times up to 2024, microseconds from 2025).
The public host is never reached: every test passes the local base URL, and the default base URL
is pointed at a closed local port, so a forgotten ``--base-url`` fails instead of going online.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from devstack.broker import free_port
from devstack.data_fetch import local_archive as la
from devstack.data_fetch.cli import data_app, run_fetch
from devstack.data_fetch.core import Archive, plan_archives
from devstack.data_fetch.settings import DataFetchSettings
from services.common.lake import read_lake
from services.common.settings import REPO_ROOT, get_settings, metrics_off_env
from trainer import sources as trainer_sources

pytestmark = pytest.mark.integration
SHARED_FILE = "btcusdt_1m_2023-2024.parquet"
LEAP_YEAR_S = 366 * 86400
VOLSTREAM = [sys.executable, "-m", "devstack.cli"]
MONTHS = ["2024-01", "2024-02", "2024-03"]
DECEMBER = [f"2024-12-{d:02d}" for d in range(1, 32)]  # daily archives only, no monthly one
DAYS = DECEMBER[:3]


def _slice(frame: pd.DataFrame, *periods: str) -> pd.DataFrame:
    parts = []
    for p in periods:
        lo, hi = Archive("BTCUSDT", p).bounds
        parts.append(frame[(frame["time"] >= lo) & (frame["time"] < hi)])
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> pd.DataFrame:
    return pd.read_parquet(shared_data / SHARED_FILE)


@pytest.fixture(scope="module")
def january_2025(candles: pd.DataFrame) -> pd.DataFrame:
    """January 2024's real candles moved a leap year on: a 2025 month, written in microseconds."""
    jan = _slice(candles, "2024-01")
    return jan.assign(time=jan["time"] + LEAP_YEAR_S)


@pytest.fixture(scope="module")
def pristine(
    tmp_path_factory: pytest.TempPathFactory, candles: pd.DataFrame, january_2025: pd.DataFrame
) -> Path:
    root = tmp_path_factory.mktemp("archive")
    la.build(root, "BTCUSDT", candles, [*MONTHS, "2024-11", *DECEMBER])
    la.build(root, "BTCUSDT", january_2025, ["2025-01"])
    return root


@pytest.fixture()
def server(pristine: Path, tmp_path: Path) -> Iterator[la.ArchiveServer]:
    """A fresh copy of the archive per test (faults change files), served on a free port."""
    root = tmp_path / "archive"
    shutil.copytree(pristine, root)
    srv = la.ArchiveServer(root).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(autouse=True)
def offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    env = {
        "DATA_FETCH_BASE_URL": "http://127.0.0.1:9",  # discard port: nothing answers, no network
        "DATA_FETCH_DIR": str(tmp_path / "fetched"),
        "DATA_FETCH_ATTEMPTS": "3",
        "DATA_FETCH_RETRY_INITIAL_S": "0.01",
        "DATA_FETCH_TIMEOUT_S": "1",
        "DATA_DIR": str(tmp_path / "data"),
        "SHARED_DATA_DIR": str(tmp_path / "no-shared-data"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield {**os.environ, **env}
    get_settings.cache_clear()


def _fetch(base_url: str, *args: str, months: tuple[str, str] = ("2024-01", "2024-03")):
    cmd = ["fetch", "--source", "binance", "--symbol", "BTCUSDT", "--from", months[0]]
    return CliRunner().invoke(data_app, [*cmd, "--to", months[1], "--base-url", base_url, *args])


def _volstream_fetch(
    env: dict[str, str], base_url: str, start: str, end: str, out: Path
) -> subprocess.CompletedProcess[str]:
    """The real ``volstream`` process, as a user runs it."""
    args = ["--from", start, "--to", end, "--base-url", base_url, "--output", str(out)]
    return subprocess.run(
        [*VOLSTREAM, "data", "fetch", "--symbol", "BTCUSDT", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _zip_requests(server: la.ArchiveServer) -> list[str]:
    return [r for r in server.requests if r.endswith(".zip")]


def test_round_trip_gives_back_the_shared_candles_exactly(
    server: la.ArchiveServer, tmp_path: Path, candles: pd.DataFrame, shared_data: Path
) -> None:
    out = tmp_path / "out.parquet"
    result = _fetch(server.base_url, "--output", str(out))
    assert result.exit_code == 0, result.output
    back = pd.read_parquet(out)
    expected = _slice(candles, *MONTHS)
    pd.testing.assert_frame_equal(back, expected, check_exact=True)
    assert pq.read_schema(out).remove_metadata() == (
        pq.read_schema(shared_data / SHARED_FILE).remove_metadata()
    )
    assert f"{len(expected)} candles" in result.stdout and "0 gaps" in result.stdout


def test_a_2025_month_in_microseconds_gives_unix_seconds(
    server: la.ArchiveServer,
    tmp_path: Path,
    offline_env: dict[str, str],
    january_2025: pd.DataFrame,
) -> None:
    """The acceptance check, through the real ``volstream`` process."""
    zipped = server.root / Archive("BTCUSDT", "2025-01").path
    first = pd.read_csv(zipped, header=None, nrows=1)[0][0]
    assert first == 1735689600 * 1_000_000  # the archive really holds microseconds
    out = tmp_path / "jan2025.parquet"
    proc = _volstream_fetch(offline_env, server.base_url, "2025-01", "2025-01", out)
    assert proc.returncode == 0, proc.stderr
    back = pd.read_parquet(out)
    pd.testing.assert_frame_equal(back, january_2025.reset_index(drop=True), check_exact=True)
    lo, hi = Archive("BTCUSDT", "2025-01").bounds
    assert back["time"].iloc[0] == lo and back["time"].iloc[-1] == hi - 60
    assert len(back) == 31 * 1440


def test_a_checksum_mismatch_exits_non_zero_naming_the_file_and_writes_nothing(
    server: la.ArchiveServer, tmp_path: Path, offline_env: dict[str, str]
) -> None:
    la.corrupt_checksum(server.root, Archive("BTCUSDT", "2024-02"))
    out = tmp_path / "out.parquet"
    proc = _volstream_fetch(offline_env, server.base_url, "2024-01", "2024-03", out)
    assert proc.returncode == 1
    assert "BTCUSDT-1m-2024-02.zip: checksum mismatch" in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.parquet*"))
    cached = sorted(p.name for p in (tmp_path / "fetched").rglob("*.zip"))
    assert cached == ["BTCUSDT-1m-2024-01.zip"]  # the verified month only: resumable


@pytest.mark.parametrize("fault", ["404", "truncated"])
def test_a_missing_or_truncated_archive_is_an_error_naming_it(
    server: la.ArchiveServer, tmp_path: Path, fault: str
) -> None:
    bad = Archive("BTCUSDT", "2024-03")
    if fault == "404":
        (server.root / bad.path).unlink()
    else:
        la.truncate_zip(server.root, bad)
    out = tmp_path / "out.parquet"
    result = _fetch(server.base_url, "--output", str(out))
    assert result.exit_code == 1
    reason = "not published (404" if fault == "404" else "truncated or corrupt zip"
    assert f"{bad.path}: {reason}" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "fault",
    [la.Fault(delay_s=2.5, times=1), la.Fault(status=503, times=2), la.Fault(cut=True, times=1)],
    ids=["slow", "5xx", "cut"],
)
def test_timeouts_5xx_and_cut_bodies_are_retried(
    server: la.ArchiveServer, tmp_path: Path, candles: pd.DataFrame, fault: la.Fault
) -> None:
    path = Archive("BTCUSDT", "2024-02").path
    server.faults[path] = fault
    out = tmp_path / "out.parquet"
    result = _fetch(server.base_url, "--output", str(out))
    assert result.exit_code == 0, result.output
    assert server.requests.count(path) == (3 if fault.status else 2)
    pd.testing.assert_frame_equal(pd.read_parquet(out), _slice(candles, *MONTHS))


def test_retries_give_up_with_the_file_named(server: la.ArchiveServer, tmp_path: Path) -> None:
    path = Archive("BTCUSDT", "2024-02").path
    server.faults[path] = la.Fault(delay_s=1.5)
    result = _fetch(server.base_url, "--output", str(tmp_path / "out.parquet"))
    assert result.exit_code == 1
    assert f"{path}: download failed after 3 attempts (ReadTimeout" in result.stderr
    assert server.requests.count(path) == 3


def test_resumable_and_idempotent(
    server: la.ArchiveServer, tmp_path: Path, candles: pd.DataFrame
) -> None:
    out = tmp_path / "out.parquet"
    missing = server.root / Archive("BTCUSDT", "2024-03").path
    held = missing.rename(missing.with_suffix(".held"))
    assert _fetch(server.base_url, "--output", str(out)).exit_code == 1
    held.rename(missing)
    server.requests.clear()
    assert _fetch(server.base_url, "--output", str(out)).exit_code == 0
    assert _zip_requests(server) == [Archive("BTCUSDT", "2024-03").path]
    server.requests.clear()
    again = _fetch(server.base_url, "--output", str(out))
    assert again.exit_code == 0 and _zip_requests(server) == []
    assert "0 downloaded, 3 cached" in again.stdout
    pd.testing.assert_frame_equal(pd.read_parquet(out), _slice(candles, *MONTHS))


def test_lake_partitions_with_the_symbol_rule_and_override(
    server: la.ArchiveServer, tmp_path: Path, candles: pd.DataFrame
) -> None:
    result = _fetch(server.base_url, "--lake", months=("2024-02", "2024-02"))
    assert result.exit_code == 0, result.output
    data_dir = tmp_path / "data"
    month = _slice(candles, "2024-02")
    back = read_lake(data_dir, "BTC")
    pd.testing.assert_frame_equal(back.drop(columns="symbol"), month, check_exact=True)
    days = sorted(p.name for p in (data_dir / "lake/candles/symbol=BTC").iterdir())
    assert days[0] == "date=2024-02-01" and days[-1] == "date=2024-02-29" and len(days) == 29
    window = trainer_sources.read_lake(data_dir, "BTC", "2024-02-10", "2024-02-12")
    assert len(window) == 2 * 1440  # what `volstream train --lake --symbol BTC` reads
    again = _fetch(server.base_url, "--lake", months=("2024-02", "2024-02"))
    assert "(0 new rows)" in again.stdout
    mapped = _fetch(server.base_url, "--lake", "--as", "BTCUSDT=XBT", months=("2024-02", "2024-02"))
    assert mapped.exit_code == 0 and len(read_lake(data_dir, "XBT")) == len(month)


def test_the_current_month_comes_from_daily_archives(
    server: la.ArchiveServer, tmp_path: Path, candles: pd.DataFrame
) -> None:
    """On 2024-12-05: November whole, then December 1..4 day by day; the 4th is not published
    yet, which is a warning, not an error."""
    unpublished = Archive("BTCUSDT", "2024-12-04")
    (server.root / unpublished.path).unlink()
    (server.root / f"{unpublished.path}.CHECKSUM").unlink()
    today = date(2024, 12, 5)
    plan = plan_archives("BTCUSDT", "2024-11", "2024-12", today=today)
    assert plan[-1] == unpublished
    out = tmp_path / "out.parquet"
    plans, names = {"BTCUSDT": plan}, {"BTCUSDT": "BTC"}
    run_fetch(DataFetchSettings(), plans, names, today=today, base_url=server.base_url, output=out)
    assert [r for r in _zip_requests(server) if "/daily/" in r] == [
        Archive("BTCUSDT", d).path for d in DAYS
    ]
    assert server.requests[-1] == unpublished.path + ".CHECKSUM"
    pd.testing.assert_frame_equal(pd.read_parquet(out), _slice(candles, "2024-11", *DAYS))


def test_last_months_unpublished_archive_is_read_day_by_day(
    server: la.ArchiveServer,
    tmp_path: Path,
    candles: pd.DataFrame,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On 2025-01-02 December's monthly archive is not out yet (the archive holds its days)."""
    today = date(2025, 1, 2)
    plan = plan_archives("BTCUSDT", "2024-12", "2025-01", today=today)
    assert [a.period for a in plan] == ["2024-12", "2025-01-01"]
    out = tmp_path / "out.parquet"
    plans, names = {"BTCUSDT": plan}, {"BTCUSDT": "BTC"}
    run_fetch(DataFetchSettings(), plans, names, today=today, base_url=server.base_url, output=out)
    assert len([r for r in _zip_requests(server) if "/daily/" in r]) == 31
    pd.testing.assert_frame_equal(pd.read_parquet(out), _slice(candles, "2024-12"))
    later = date(2025, 3, 1)  # two months on, a missing month is an error
    older = {"BTCUSDT": plan_archives("BTCUSDT", "2024-12", "2024-12", today=later)}
    with pytest.raises(typer.Exit):
        run_fetch(DataFetchSettings(), older, names, today=later, base_url=server.base_url)
    assert "BTCUSDT-1m-2024-12.zip: not published (404" in capsys.readouterr().err


PAIRS = ["fetch", "--symbol", "BTCUSDT", "--symbol", "ETHUSDT"]


def test_arguments_are_checked(server: la.ArchiveServer, tmp_path: Path) -> None:
    neither = _fetch(server.base_url)
    assert neither.exit_code == 2 and "--output" in neither.output
    two = CliRunner().invoke(
        data_app,
        [*PAIRS, "--from", "2024-01", "--to", "2024-01", "--output", str(tmp_path / "x.parquet")],
    )
    assert two.exit_code == 2 and "{pair}" in two.output
    assert server.requests == []


def test_demo_dir_says_what_to_do_in_one_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(data_app, ["demo-dir"])
    assert result.exit_code == 3 and result.stdout == ""
    message = result.stderr
    assert "No market data for the demo" in message and "VOLSTREAM_FETCH=1 make run" in message
    cmd = "volstream data fetch --source binance --symbol BTCUSDT --from 2023-01 --to 2024-12"
    assert cmd in message and str(tmp_path / "fetched" / SHARED_FILE) in message


def test_demo_dir_prefers_the_shared_data(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beside the shared folder ``make run`` runs as before: nothing fetched, nothing asked."""
    monkeypatch.setenv("SHARED_DATA_DIR", str(shared_data))
    monkeypatch.setenv("VOLSTREAM_FETCH", "1")
    get_settings.cache_clear()
    result = CliRunner().invoke(data_app, ["demo-dir"])
    assert result.exit_code == 0 and result.stdout == f"{shared_data}\n"
    assert result.stderr == "" and not (tmp_path / "fetched").exists()


@pytest.mark.slow
def test_volstream_fetch_rebuilds_the_whole_demo_file_identically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data: Path
) -> None:
    """``VOLSTREAM_FETCH=1``: the demo's two years come back from the archive bit for bit."""
    candles = pd.read_parquet(shared_data / SHARED_FILE)
    root = tmp_path / "full-archive"
    months = [p.strftime("%Y-%m") for p in pd.period_range("2023-01", "2024-12", freq="M")]
    la.build(root, "BTCUSDT", candles, months)
    srv = la.ArchiveServer(root).start()
    try:
        monkeypatch.setenv("DATA_FETCH_BASE_URL", srv.base_url)
        monkeypatch.setenv("VOLSTREAM_FETCH", "1")
        result = CliRunner().invoke(data_app, ["demo-dir"])
    finally:
        srv.stop()
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{tmp_path / 'fetched'}\n"  # only the directory: make reads it
    fetched = tmp_path / "fetched"
    back = pd.read_parquet(fetched / SHARED_FILE)
    pd.testing.assert_frame_equal(back, candles, check_exact=True)
    assert "1 gaps (80 missing minutes" in result.stderr


@pytest.mark.slow
def test_make_run_without_data_says_what_to_do_in_one_message(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    """``make run`` away from ``../shared/data``: one message with the fetch command, nothing
    started (free ports and a private VAR_DIR all the same, should the check ever let it pass)."""
    env = {
        **offline_env,
        **metrics_off_env(),
        "VAR_DIR": str(tmp_path / "var"),
        "BROKER_PORT": str(free_port()),
        "PREDICTOR_PORT": str(free_port()),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("VOLSTREAM_FETCH", None)
    try:
        proc = subprocess.run(
            ["make", "--no-print-directory", "run", "RUN_ARGS=--no-monitoring"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        subprocess.run([*VOLSTREAM, "down"], env=env, timeout=120)
        raise
    assert proc.returncode != 0
    assert "volstream is up" not in proc.stdout and not (tmp_path / "var" / "log").exists()
    messages = [ln for ln in proc.stderr.splitlines() if "No market data for the demo" in ln]
    assert len(messages) == 1, proc.stderr
    fetch = "volstream data fetch --source binance --symbol BTCUSDT --from 2023-01 --to 2024-12"
    assert fetch in proc.stderr and "VOLSTREAM_FETCH=1 make run" in proc.stderr
