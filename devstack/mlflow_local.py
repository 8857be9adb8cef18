"""A local MLflow tracking server on SQLite (tests, benchmarks and chaos runs start their own).

The supervisor runs the stack's MLflow the same way (``volstream up``); this class is for code
that needs a private one on a free port and must stop it by PID afterwards.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devstack.broker import free_port
from devstack.procs import stop_process_group

#: No background job runners (7 huey workers that burn CPU while idle); volstream uses no MLflow
#: server-side jobs.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class MlflowServer:
    """``mlflow server`` on SQLite with a local artifact store under ``root``."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
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
        ]

    def start(self, timeout_s: float = 300) -> MlflowServer:
        """Start and wait for ``/health``.

        A first start migrates the SQLite schema (~20 s on an idle machine, minutes on a busy
        one), so the freshly migrated empty store is kept as a template and copied next time.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        db = self.root / "mlflow.db"
        template = _template()
        if template.exists() and not db.exists():
            shutil.copyfile(template, db)
        log = open(self.root / "mlflow.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,
            env={**os.environ, **SERVER_ENV},
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited; see {self.root / 'mlflow.log'}")
            try:
                if httpx.get(f"{self.uri}/health", timeout=1).status_code == 200:
                    _save_template(db, template)
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError("mlflow server did not become healthy")

    def stop(self) -> None:
        """Stop the server's process group (SIGTERM, then SIGKILL)."""
        if self.proc:
            stop_process_group(self.proc)

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _template() -> Path:
    import mlflow

    cache = Path.home() / ".cache" / "volstream"
    return cache / f"mlflow-{mlflow.__version__}-empty.db"


def _save_template(db: Path, template: Path) -> None:
    """Keep a copy of a just-migrated, still empty store (SQLite's online backup is safe)."""
    if template.exists() or not db.exists():
        return
    template.parent.mkdir(parents=True, exist_ok=True)
    tmp = template.with_suffix(f".{os.getpid()}.tmp")
    with sqlite3.connect(db) as src, sqlite3.connect(tmp) as dst:
        src.backup(dst)
    os.replace(tmp, template)
