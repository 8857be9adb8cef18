"""Stopping child processes we started, by process group, so nothing outlives its owner."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process_group(proc: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    """SIGTERM the process group of ``proc`` (started with ``start_new_session=True``), wait, and
    SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
