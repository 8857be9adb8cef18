"""Support for the ingestor integration tests (no tests here): subprocesses stopped by PID."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from devstack.broker import free_port, port_open
from services.common import kafka
from services.common.schemas import RawBatch
from services.common.settings import Settings
from services.common.topics import TICKS_RAW


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
    """Signal the process group and wait; kill it if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def volstream(*args: str, env: dict[str, str], timeout: float = 300) -> str:
    """Run ``volstream ARGS`` (as ``python -m devstack.cli``); assert success; its stdout."""
    out = subprocess.run(
        [sys.executable, "-m", "devstack.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


class EmulatorProc:
    """``python -m devstack.emulator`` on a free port."""

    def __init__(self, tmp: Path, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = spawn(
            ["devstack.emulator", "--port", str(self.port), *args], env, tmp / "emu.log"
        )
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", self.port):
            assert self.proc.poll() is None, (tmp / "emu.log").read_text()
            assert time.monotonic() < deadline, "emulator did not start"
            time.sleep(0.1)

    def call(self, method: str, path: str, **kw) -> dict:
        resp = httpx.request(method, self.url + path, timeout=10, **kw)
        resp.raise_for_status()
        return resp.json()

    def closed_rows(self, symbol: str) -> list[dict]:
        """The emulator's closed candles (the newest 2000), as it serves them."""
        doc = self.call(
            "GET", "/data/v2/histominute", params={"fsym": symbol, "tsym": "USD", "limit": 2000}
        )
        return doc["Data"]["Data"][:-1]


@contextmanager
def emulator(tmp: Path, env: dict[str, str], *args: str) -> Iterator[EmulatorProc]:
    emu = EmulatorProc(tmp, env, *args)
    try:
        yield emu
    finally:
        stop(emu.proc)


def checkpoint(settings: Settings, symbol: str) -> int | None:
    from services.ingestor.checkpoint import CheckpointStore

    return CheckpointStore.under(settings.data_dir).load(symbol)


def wait_until(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None:
            assert proc.poll() is None, f"process exited with {proc.returncode} while {what}"
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.2)


async def consume_raw(settings: Settings, idle_s: float = 3.0):
    """Every RawBatch on ticks.raw as (key, partition, batch), read until idle."""
    consumer = kafka.make_consumer(TICKS_RAW, group_id=None, settings=settings)
    await consumer.start()
    out: list[tuple[str, int, RawBatch]] = []
    idle = 0.0
    try:
        while idle < idle_s:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            if not batch:
                idle += 0.5
                continue
            idle = 0.0
            for tp, records in batch.items():
                for r in records:
                    b = RawBatch.from_bytes(r.value)
                    out.append((r.key.decode(), tp.partition, b))
    finally:
        await consumer.stop()
    return out


def run_consume(settings: Settings, **kw):
    return asyncio.run(consume_raw(settings, **kw))
