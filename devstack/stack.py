"""``volstream up``, ``down`` and ``status``: the local stack on embedded defaults.

``up`` starts, in order and each only once the previous answers: the embedded broker (unless
``KAFKA_BOOTSTRAP_SERVERS`` names an external one), the topics, MLflow on SQLite, every service
that exists, Prometheus/Alertmanager when installed, and optionally the CryptoCompare emulator
with a live ingestor, Airflow, and the demo feed. Ctrl-C or ``volstream down`` stops it all.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import httpx
import typer

from devstack import durable as durable_mode
from devstack.broker import port_open, tansu_binary, wait_for_broker
from devstack.mlflow_local import SERVER_ENV
from devstack.supervisor import Layout, Program, Supervisor, running_pid, stop_pid
from services.common.settings import REPO_ROOT, Settings, get_settings

#: ``EMULATOR_PORT``: where ``up --emulator`` serves the CryptoCompare emulator.
EMULATOR_PORT = int(os.environ.get("EMULATOR_PORT", "8765"))
S3_PORT = 9000
PY = sys.executable


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _base_env(settings: Settings) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "DATA_DIR": str(settings.data_dir),
        "VAR_DIR": str(settings.var_dir),
        "PYTHONUNBUFFERED": "1",
    }


def plan(
    settings: Settings,
    *,
    demo: bool,
    emulator: bool = False,
    airflow: bool = False,
    durable: bool = False,
    monitoring: bool = True,
) -> list[Program]:
    """Every program the stack may run, in start order."""
    var, env = settings.var_dir, _base_env(settings)
    url = f"tcp://{settings.broker_host}:{settings.broker_port}"
    mlflow_port = urlsplit(settings.mlflow_tracking_uri).port or 5000
    storage, broker_env = "memory://tansu/", {}
    progs = []
    if durable:
        progs.append(Program("s3", durable_mode.s3rver_command(var / "s3", S3_PORT)))
        storage, broker_env = durable_mode.STORAGE_URL, durable_mode.broker_env(S3_PORT)
    broker_cmd = [tansu_binary(), "broker", "--listener-url", url]
    broker_cmd += ["--advertised-listener-url", url, "--storage-engine", storage]
    progs += [
        Program("broker", broker_cmd, env=broker_env),
        Program(
            "mlflow",
            [
                PY,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{var / 'mlflow' / 'mlflow.db'}",
                "--artifacts-destination",
                str(var / "mlflow" / "artifacts"),
            ],
            cwd=var / "mlflow",
            env=SERVER_ENV,
        ),
    ]
    for svc in ("validator", "featurizer", "predictor"):
        if _exists(f"services.{svc}.__main__"):
            progs.append(Program(svc, [PY, "-m", f"services.{svc}"], env=env))
    if _exists("services.archiver"):
        progs.append(
            Program(
                "archiver",
                [PY, "-m", "services.archiver"],
                env=env,
            )
        )
    if _exists("services.lag_exporter"):
        progs.append(Program("lag-exporter", [PY, "-m", "services.lag_exporter"], env=env))
    if monitoring:
        progs += _monitoring_programs(var)
    if emulator and _exists("devstack.emulator"):
        progs.append(
            Program(
                "emulator",
                [PY, "-m", "devstack.emulator", "--port", str(EMULATOR_PORT)],
                env=env,
            )
        )
        progs.append(
            Program(
                "ingestor",
                [PY, "-m", "services.ingestor"],
                env={**env, "INGESTOR_CRYPTOCOMPARE_BASE_URL": f"http://127.0.0.1:{EMULATOR_PORT}"},
            )
        )
    if airflow and (REPO_ROOT / "airflow" / "standalone.sh").exists():
        progs.append(
            Program(
                "airflow",
                ["bash", str(REPO_ROOT / "airflow" / "standalone.sh")],
                env={**env, "AIRFLOW_HOME": str(var / "airflow")},
            )
        )
    if demo:
        progs.append(Program("demo", [PY, "-m", "devstack.demo"], env=env, oneshot=True))
    return progs


def _monitoring_programs(var: Path) -> list[Program]:
    prom_conf = REPO_ROOT / "monitoring" / "prometheus" / "prometheus.yml"
    am_conf = REPO_ROOT / "monitoring" / "alertmanager" / "alertmanager.yml"
    progs = []
    if shutil.which("prometheus") and prom_conf.exists():
        progs.append(
            Program(
                "prometheus",
                [
                    "prometheus",
                    f"--config.file={prom_conf}",
                    f"--storage.tsdb.path={var / 'prometheus'}",
                    "--web.listen-address=127.0.0.1:9090",
                    "--web.enable-lifecycle",
                ],
            )
        )
    if shutil.which("prometheus-alertmanager") and am_conf.exists():
        progs.append(
            Program(
                "alert-sink",
                [
                    PY,
                    "-m",
                    "monitoring.webhook_sink",
                    "--port",
                    "9105",
                    "--out",
                    str(var / "alerts.jsonl"),
                ],
            )
        )
        progs.append(
            Program(
                "alertmanager",
                [
                    "prometheus-alertmanager",
                    f"--config.file={am_conf}",
                    f"--storage.path={var / 'alertmanager'}",
                    "--web.listen-address=127.0.0.1:9093",
                    "--cluster.listen-address=",
                ],
            )
        )
    return progs


def up(
    demo: Annotated[
        bool, typer.Option(help="feed real data, train a champion, keep replaying")
    ] = False,
    emulator: Annotated[
        bool, typer.Option(help="run the CryptoCompare emulator + live ingestor")
    ] = False,
    airflow: Annotated[bool, typer.Option(help="run Airflow standalone on 127.0.0.1:8080")] = False,
    durable: Annotated[
        bool, typer.Option(help="keep the broker's log on disk (s3rver under var/s3)")
    ] = False,
    monitoring: Annotated[
        bool, typer.Option(help="run Prometheus + Alertmanager when installed")
    ] = True,
) -> None:
    """Start the local stack in the foreground; Ctrl-C (or `volstream down`) stops everything."""
    settings = get_settings()
    layout = Layout(settings.var_dir)
    if running_pid(layout):
        typer.echo("the stack is already running; `volstream down` first", err=True)
        raise typer.Exit(1)
    for d in ("mlflow", "prometheus", "alertmanager", "airflow", "data"):
        (settings.var_dir / d).mkdir(parents=True, exist_ok=True)
    programs = plan(
        settings,
        demo=demo,
        emulator=emulator,
        airflow=airflow,
        durable=durable,
        monitoring=monitoring,
    )
    sup = Supervisor(layout)
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    sup.start(programs)
    try:
        _start_in_order(sup, settings, programs, lambda: stopping or not sup.alive())
        _print_where_to_look(programs, layout)
        while not stopping and sup.alive():
            time.sleep(0.5)
    finally:
        typer.echo("stopping the stack ...")
        sup.shutdown()
        typer.echo("stopped; nothing left running")


def _start_in_order(
    sup: Supervisor, settings: Settings, programs: list[Program], cancelled: Callable[[], bool]
) -> None:
    from services.common import kafka

    names = [p.name for p in programs]
    if settings.embedded_broker:
        if port_open(settings.broker_host, settings.broker_port):
            raise typer.BadParameter(f"port {settings.broker_port} is taken; is a broker running?")
        if "s3" in names:
            sup.start_program("s3")
            _wait_port(S3_PORT, "s3rver", cancelled)
        sup.start_program("broker")
    wait_for_broker(settings.bootstrap_servers)
    created = asyncio.run(kafka.ensure_topics(settings))
    typer.echo(f"broker ready on {settings.bootstrap_servers}; topics created: {created or 'none'}")
    sup.start_program("mlflow")
    _wait_http(f"{settings.mlflow_tracking_uri}/health", "MLflow", 180, cancelled)
    for name in names:
        if name not in ("broker", "mlflow") and not cancelled():
            sup.start_program(name)
            typer.echo(f"started {name}")


def _wait_port(port: int, what: str, cancelled: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not port_open("127.0.0.1", port):
        if cancelled() or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on {port}")
        time.sleep(0.1)


def _wait_http(url: str, what: str, timeout_s: float, cancelled: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not cancelled():
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                typer.echo(f"{what} ready at {url.rsplit('/', 1)[0]}")
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    if cancelled():
        return
    raise RuntimeError(f"{what} did not answer at {url} within {timeout_s}s")


def _print_where_to_look(programs: list[Program], layout: Layout) -> None:
    names = {p.name for p in programs}
    lines = [
        "",
        "volstream is up. Where to look:",
        "  MLflow UI:             http://127.0.0.1:5000",
    ]
    if "predictor" in names:
        lines += [
            "  REST API:              http://127.0.0.1:8000/docs",
            "  latest prediction:     curl 'http://127.0.0.1:8000/predictions/latest?symbol=BTC'",
        ]
    lines.append("  subscribe:             volstream tail predictions   (or features, ticks.clean)")
    if "prometheus" in names:
        lines.append("  Prometheus:            http://127.0.0.1:9090  (alerts: /alerts)")
    if "alertmanager" in names:
        lines.append(
            "  Alertmanager:          http://127.0.0.1:9093  (notifications: var/alerts.jsonl)"
        )
    elif not shutil.which("prometheus"):
        lines.append("  Prometheus: not installed (make monitoring-setup); carrying on without it")
    if "airflow" in names:
        lines.append("  Airflow UI:            http://127.0.0.1:8080  (see README: Airflow)")
    lines += [
        "  status:                volstream status",
        f"  logs:                  {layout.logs}/<component>.log",
        "  stop:                  Ctrl-C here, or `volstream down`",
        "",
    ]
    typer.echo("\n".join(lines))


def down() -> None:
    """Stop a running stack (every component, by process group) and wait until it is gone."""
    layout = Layout(get_settings().var_dir)
    pid = running_pid(layout)
    if pid is None:
        typer.echo("the stack is not running")
        return
    stop_pid(pid)
    typer.echo(f"stopped supervisord {pid} and its programs")


def status() -> None:
    """Which components are up, and each topic's end offsets per partition."""
    settings = get_settings()
    layout = Layout(settings.var_dir)
    if running_pid(layout):
        for info in Supervisor(layout).processes():
            typer.echo(
                f"{info['name']:<14} {info['statename']:<9} pid={info['pid'] or '-':<8}"
                f" {info['description']}"
            )
    else:
        typer.echo("supervisor: not running (start with `volstream up`)")
    host, _, port = settings.bootstrap_servers.split(",")[0].rpartition(":")
    if not port_open(host, int(port)):
        typer.echo(f"broker: not reachable at {settings.bootstrap_servers}")
        return
    offsets = asyncio.run(_end_offsets(settings))
    typer.echo(f"broker: {settings.bootstrap_servers}")
    for topic, parts in offsets.items():
        typer.echo(f"  {topic:<12} " + " ".join(f"p{p}={o}" for p, o in sorted(parts.items())))


async def _end_offsets(settings: Settings) -> dict[str, dict[int, int]]:
    from aiokafka.structs import TopicPartition

    from services.common import kafka

    consumer = kafka.make_consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        topics = sorted(t for t in await consumer.topics() if not t.startswith("__"))
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        ends = await consumer.end_offsets(tps)
        out: dict[str, dict[int, int]] = {}
        for tp, off in ends.items():
            out.setdefault(tp.topic, {})[tp.partition] = off
        return out
    finally:
        await consumer.stop()
