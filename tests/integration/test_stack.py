"""``volstream up`` / ``status`` / ``down`` on a fresh var dir: everything starts, then nothing is
left running and no port stays bound."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.broker import free_port, port_open
from services.common.settings import metrics_off_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _volstream(env: dict[str, str], *args: str, timeout: float = 60) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "devstack.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_up_status_down(tmp_path: Path) -> None:
    ports = {"broker": free_port(), "mlflow": free_port(), "predictor": free_port()}
    env = {
        **os.environ,
        "VAR_DIR": str(tmp_path / "var"),
        "DATA_DIR": str(tmp_path / "data"),
        "BROKER_PORT": str(ports["broker"]),
        "PREDICTOR_PORT": str(ports["predictor"]),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
        **metrics_off_env(),
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    up = subprocess.Popen(
        [sys.executable, "-m", "devstack.cli", "up", "--no-monitoring"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert up.stdout is not None
    try:
        lines = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            lines.append(line)
            if "volstream is up" in line or up.poll() is not None:
                break
        assert any("volstream is up" in ln for ln in lines), "".join(lines)
        status = _volstream(env, "status")
        assert "broker" in status and "mlflow" in status
        running = [ln for ln in status.splitlines() if "RUNNING" in ln]
        assert {ln.split()[0] for ln in running} >= {"broker", "mlflow"}
        assert "ticks.raw" in status and "p2=" in status
        pids = [int(ln.split("pid=")[1].split()[0]) for ln in running]
        assert "stopped" in _volstream(env, "down")
        assert up.wait(60) == 0
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"pid {pid} survived"
        for name, port in ports.items():
            assert not port_open("127.0.0.1", port), f"{name} port {port} still bound"
    finally:
        if up.poll() is None:
            up.terminate()
            up.wait(60)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
