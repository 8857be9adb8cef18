"""Process supervision for the local stack, delegated to supervisord.

``volstream up`` writes a supervisord config under ``var/run/``, starts supervisord, and drives it
over its XML-RPC socket: start a program, wait until it answers, start the next. supervisord
restarts crashed services, keeps each child's log in ``var/log/``, and stops process groups on
shutdown, so nothing is left running or bound.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport


@dataclass(frozen=True)
class Program:
    """One supervised process. ``oneshot`` programs run to completion and are not restarted."""

    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    oneshot: bool = False
    cwd: Path | None = None


@dataclass(frozen=True)
class Layout:
    """Where the stack keeps its runtime files."""

    var: Path

    @property
    def run(self) -> Path:
        return self.var / "run"

    @property
    def logs(self) -> Path:
        return self.var / "log"

    @property
    def conf(self) -> Path:
        return self.run / "supervisord.conf"

    @property
    def pidfile(self) -> Path:
        return self.run / "supervisord.pid"

    @property
    def socket(self) -> Path:
        return self.run / "supervisor.sock"


def _quote_env(env: dict[str, str]) -> str:
    return ",".join(f'{k}="{v.replace("%", "%%").replace(chr(34), "")}"' for k, v in env.items())


def render_config(layout: Layout, programs: list[Program]) -> str:
    """The supervisord.conf text; every program starts only when asked (autostart=false)."""
    lines = [
        "[unix_http_server]",
        f"file={layout.socket}",
        "",
        "[supervisord]",
        f"logfile={layout.logs / 'supervisord.log'}",
        f"pidfile={layout.pidfile}",
        "nodaemon=true",
        f"childlogdir={layout.logs}",
        "loglevel=info",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{layout.socket}",
        "",
    ]
    for p in programs:
        lines += [
            f"[program:{p.name}]",
            "command=" + " ".join(_shell_word(w) for w in p.command),
            "autostart=false",
            f"autorestart={'false' if p.oneshot else 'unexpected'}",
            f"startsecs={0 if p.oneshot else 2}",
            "startretries=5",
            "stopasgroup=true",
            "killasgroup=true",
            "stopwaitsecs=20",
            "redirect_stderr=true",
            f"stdout_logfile={layout.logs / (p.name + '.log')}",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=2",
        ]
        if p.cwd:
            lines.append(f"directory={p.cwd}")
        if p.env:
            lines.append("environment=" + _quote_env(p.env))
        lines.append("")
    return "\n".join(lines)


def _shell_word(word: str) -> str:
    if word and all(c.isalnum() or c in "-_./:=@,+" for c in word):
        return word
    return '"' + word.replace('"', '\\"') + '"'


def running_pid(layout: Layout) -> int | None:
    """The PID of a live supervisord of this stack, if any."""
    try:
        pid = int(layout.pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


class Supervisor:
    """A supervisord child process and its XML-RPC client."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, programs: list[Program], timeout_s: float = 20) -> None:
        for d in (self.layout.run, self.layout.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.layout.conf.write_text(render_config(self.layout, programs))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.layout.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.rpc().supervisor.getState()["statename"] == "RUNNING":
                    return
            except (OSError, xmlrpc.client.Fault):
                time.sleep(0.1)
        raise RuntimeError(f"supervisord did not start; see {self.layout.logs}/supervisord.log")

    def rpc(self) -> Any:
        transport = SupervisorTransport(None, None, f"unix://{self.layout.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def start_program(self, name: str) -> None:
        self.rpc().supervisor.startProcess(name, True)

    def processes(self) -> list[dict[str, Any]]:
        return list(self.rpc().supervisor.getAllProcessInfo())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def shutdown(self, timeout_s: float = 60) -> None:
        """Stop every program (by process group) and supervisord itself."""
        pid = self.proc.pid if self.proc else running_pid(self.layout)
        if pid is None:
            return
        stop_pid(pid, timeout_s)
        if self.proc:
            self.proc.wait(5)


def stop_pid(pid: int, timeout_s: float = 60) -> None:
    """SIGTERM a supervisord and wait for it (it stops its children first); SIGKILL as a last
    resort."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if _is_zombie(pid):
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
