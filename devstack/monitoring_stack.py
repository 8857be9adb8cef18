"""Run Prometheus, Alertmanager and the webhook sink as child processes on chosen loopback ports.

``volstream up`` has its own supervisor; this is for the live check and for ad-hoc runs. Each
daemon is started in its own session and stopped by its PID; ``start()`` returns once it answers
its readiness endpoint.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devstack.broker import free_port
from devstack.procs import stop_process_group
from monitoring import render
from monitoring.alerts import Alert
from services.common.errors import VolstreamError
from services.common.settings import REPO_ROOT

ALERTMANAGER_CONFIG = REPO_ROOT / "monitoring" / "alertmanager" / "alertmanager.yml"


class DaemonError(VolstreamError):
    """A monitoring daemon did not start or exited early."""


@dataclass
class Daemon:
    """A child process with an HTTP readiness URL."""

    name: str
    command: list[str]
    ready_url: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout_s: float = 30.0) -> Daemon:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DaemonError(f"{self.name} exited: {self.log_tail()}")
            try:
                if httpx.get(self.ready_url, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise DaemonError(f"{self.name} not ready in {timeout_s}s: {self.log_tail()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            stop_process_group(proc, timeout_s)

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def _prometheus_family(
    binary: str, name: str, flags: list[str], port: int, workdir: Path
) -> Daemon:
    """A Prometheus-family daemon on 127.0.0.1:port, ready at ``/-/ready``, log in ``workdir``."""
    return Daemon(
        name,
        [binary, *flags, f"--web.listen-address=127.0.0.1:{port}"],
        f"http://127.0.0.1:{port}/-/ready",
        workdir / f"{name}.log",
    )


def prometheus(config: Path, port: int, workdir: Path) -> Daemon:
    """Prometheus with its TSDB under ``workdir``."""
    flags = [
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'prometheus-data'}",
        "--web.enable-lifecycle",
    ]
    return _prometheus_family("prometheus", "prometheus", flags, port, workdir)


def alertmanager(config: Path, port: int, workdir: Path) -> Daemon:
    """Alertmanager, clustering off (it would bind 0.0.0.0:9094)."""
    flags = [
        f"--config.file={config}",
        f"--storage.path={workdir / 'alertmanager-data'}",
        "--cluster.listen-address=",
    ]
    return _prometheus_family("prometheus-alertmanager", "alertmanager", flags, port, workdir)


def webhook_sink(port: int, workdir: Path) -> Daemon:
    """The notification recorder (:mod:`monitoring.webhook_sink`)."""
    return Daemon(
        "webhook-sink",
        [
            sys.executable,
            "-m",
            "monitoring.webhook_sink",
            "--port",
            str(port),
            "--out",
            str(workdir / "notifications.jsonl"),
        ],
        f"http://127.0.0.1:{port}/health",
        workdir / "webhook.log",
    )


@dataclass
class MonitoringStack:
    """Prometheus + Alertmanager + webhook sink on free loopback ports, evaluating every second.

    ``targets`` maps job names to ``host:port``; ``alerts`` replaces alert definitions by name
    (e.g. a shorter ``for:`` so a test need not wait five minutes).
    """

    workdir: Path
    targets: dict[str, str]
    alerts: dict[str, Alert] = field(default_factory=dict)
    interval: str = "1s"
    daemons: list[Daemon] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.prom_port, self.am_port, self.hook_port = free_port(), free_port(), free_port()
        self.prometheus_url = f"http://127.0.0.1:{self.prom_port}"
        self.alertmanager_url = f"http://127.0.0.1:{self.am_port}"
        self.webhook_url = f"http://127.0.0.1:{self.hook_port}"

    def write_configs(self) -> tuple[Path, Path]:
        """The Prometheus and Alertmanager configs of this stack, under ``workdir``."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        rules = self.workdir / "volstream.rules.yml"
        rules.write_text(render.render_rules(replace=self.alerts))
        prom = self.workdir / "prometheus.yml"
        targets = {
            "prometheus": f"127.0.0.1:{self.prom_port}",
            "alertmanager": f"127.0.0.1:{self.am_port}",
            **self.targets,
        }
        prom.write_text(
            render.render_prometheus(
                targets, f"127.0.0.1:{self.am_port}", self.interval, [str(rules)]
            )
        )
        am = self.workdir / "alertmanager.yml"
        am.write_text(
            render.retarget_alertmanager(ALERTMANAGER_CONFIG.read_text(), self.webhook_url, True)
        )
        return prom, am

    def start(self) -> MonitoringStack:
        prom, am = self.write_configs()
        try:
            for daemon in (
                webhook_sink(self.hook_port, self.workdir),
                alertmanager(am, self.am_port, self.workdir),
                prometheus(prom, self.prom_port, self.workdir),
            ):
                self.daemons.append(daemon.start())
        except DaemonError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.stop()
        self.daemons.clear()

    def notifications(self) -> list[dict[str, Any]]:
        """What the webhook sink received so far."""
        return list(httpx.get(f"{self.webhook_url}/received", timeout=2).json())

    def __enter__(self) -> MonitoringStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
