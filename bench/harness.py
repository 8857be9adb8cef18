"""A whole pipeline on one machine, for the benchmarks and the chaos run.

It starts a fresh embedded broker on a free port, creates the topics, runs each service as a real
subprocess (``python -m services.<name>``, exactly as the supervisor does), and reads topics back
in full. Every process it starts is stopped by PID in :meth:`Pipeline.close`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from aiokafka.structs import TopicPartition

from devstack.broker import EmbeddedBroker, free_port
from services.common import kafka
from services.common.settings import Settings, metrics_off_env

#: Consumer groups of the stream services, for lag checks.
GROUPS = {"validator": "validator", "featurizer": "volstream-featurizer", "predictor": "predictor"}
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TWO_YEARS = SHARED / "btcusdt_1m_2023-2024.parquet"


@dataclass(frozen=True)
class Record:
    """One record read back from a topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


def write_slice(path: Path, start: int, end: int, source: Path = TWO_YEARS) -> int:
    """Write real candles with start <= time < end to ``path``; returns the row count."""
    table = pq.read_table(source, filters=[("time", ">=", start), ("time", "<", end)])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return table.num_rows


@dataclass
class Pipeline:
    """A broker plus service subprocesses under ``workdir`` (logs in ``workdir/log``)."""

    workdir: Path
    mlflow_uri: str | None = None
    partitions: int = 3
    broker: EmbeddedBroker | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        assert self.broker is not None
        return Settings(
            kafka_bootstrap_servers=self.broker.bootstrap,
            topic_partitions=self.partitions,
            data_dir=self.workdir / "data",
        )

    def env(self, **extra: str) -> dict[str, str]:
        assert self.broker is not None
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "DATA_DIR": str(self.workdir / "data"),
            "VAR_DIR": str(self.workdir / "var"),
            **metrics_off_env(),
            "FEATURIZER_WEB_PORT": "0",
            "PYTHONUNBUFFERED": "1",
            "TOPIC_PARTITIONS": str(self.partitions),
            "PREDICTOR_PORT": str(free_port()),
            "TRAINER_DATASETS_DIR": str(
                self.workdir / "datasets"
            ),  # keep the repo's DVC data clean
            "TRAINER_DVC_ENABLED": "false",
        }
        if self.mlflow_uri:
            env["MLFLOW_TRACKING_URI"] = self.mlflow_uri
        return {**env, **extra}

    def start_broker(self) -> None:
        (self.workdir / "log").mkdir(parents=True, exist_ok=True)
        self.broker = EmbeddedBroker(port=free_port(), log_path=self.workdir / "log" / "broker.log")
        self.broker.start()
        asyncio.run(kafka.ensure_topics(self.settings))

    def start(self, name: str, command: list[str], **env: str) -> subprocess.Popen[bytes]:
        """Start (or restart) a named process; output appends to ``log/<name>.log``."""
        self.commands[name] = command
        self.envs[name] = env
        log = open(self.workdir / "log" / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            command,
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def service(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        return self.start(name, [sys.executable, "-m", f"services.{name}"], **env)

    def volstream(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        return self.start(name, [sys.executable, "-m", "devstack.cli", *args], **env)

    def train_champion(self, data: Path, timeout_s: float = 900) -> None:
        """Train on ``data`` and make sure a champion exists: when the gate refused the model
        (a short history may not beat HAR), promote it with ``--force``; the benchmarks need a
        model either way."""
        from services.common.registry import alias_version

        # exit 0: promoted; 3: the gate refused (then forced below); anything else failed
        if self.volstream("train", "train", "--data", str(data)).wait(timeout_s) not in (0, 3):
            raise RuntimeError(f"`volstream train` failed; see {self.workdir}/log/train.log")
        settings = self.settings.model_copy(update={"mlflow_tracking_uri": self.mlflow_uri})
        no_champion = alias_version("champion", settings) is None
        if (
            no_champion
            and self.volstream(
                "promote", "promote", "--force", "--why", "benchmarks need a model"
            ).wait(timeout_s)
            != 0
        ):
            raise RuntimeError(f"`volstream promote` failed; see {self.workdir}/log/promote.log")

    def kill9(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def restart(self, name: str, command: list[str] | None = None) -> None:
        """Start ``name`` again, with its command (or ``command``) and its environment."""
        self.start(name, command or self.commands[name], **self.envs.get(name, {}))

    def wait(self, name: str, timeout_s: float) -> int:
        return self.procs[name].wait(timeout_s)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if self.broker:
            self.broker.stop()

    def __enter__(self) -> Pipeline:
        self.start_broker()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def read_topic(settings: Settings, topic: str, idle_s: float = 2.0) -> list[Record]:
    """Every record of ``topic`` from the beginning, until nothing arrives for ``idle_s``."""
    consumer = kafka.make_consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        tps = await kafka.topic_partitions(consumer, topic)
        until = kafka.Until.idle(int(idle_s * 1000))
        return [
            Record(r.partition, r.offset, r.key, r.value, r.timestamp)
            async for batch in kafka.read_log(consumer, tps, until)
            for r in batch
        ]
    finally:
        await consumer.stop()


async def committed(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (0 when none)."""
    consumer = kafka.make_consumer(group_id=group, settings=settings)
    await consumer.start()
    try:
        parts = range(settings.topic_partitions)
        return {p: (await consumer.committed(TopicPartition(topic, p))) or 0 for p in parts}
    finally:
        await consumer.stop()


def true_ends(records: Iterable[Record]) -> dict[int, int]:
    """End offset per partition counted from the records read (Tansu's reported ends can lag)."""
    ends: dict[int, int] = {}
    for r in records:
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    return ends
