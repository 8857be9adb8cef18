"""The retraining DAG under real Airflow (``.venv-airflow``): import, one good run, one refused.

Each test drives the Airflow CLI in a subprocess against a SQLite metadata DB under a temporary
``AIRFLOW_HOME`` (migrated once per module), with a candle lake built from a real slice of the
shared BTCUSDT file, the session's real MLflow server and a real embedded broker. Task states
are read back from Airflow itself (``airflow tasks states-for-dag-run``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from devstack.broker import EmbeddedBroker, free_port
from services.common import kafka
from services.common.lake import FILE_NAME, day_dir
from services.common.schemas import CANDLE_FIELDS, ModelEvent
from services.common.settings import REPO_ROOT, Settings
from services.common.topics import MODEL_EVENTS
from tests.tools import require_tool
from trainer.snapshot import seed_lake

pytestmark = pytest.mark.integration

AIRFLOW = REPO_ROOT / ".venv-airflow" / "bin" / "airflow"
TWO_YEAR_FILE = REPO_ROOT.parent / "shared" / "data" / "btcusdt_1m_2023-2024.parquet"
DAG_ID = "volstream_retrain"
TASKS = [
    "check_conf",
    "snapshot",
    "quality_gate",
    "build_dataset",
    "version_dataset",
    "train",
    "gate",
    "summarize",
]
#: 2024-01-27 .. 2024-03-08: six weeks of real candles (the March 2024 rally), as BTC: a week
#: of feature warm-up, three of training splits, the 14 held-out days for the gate.
START, END = "2024-01-27T00:00:00+00:00", "2024-03-08T00:00:00+00:00"
DAYS = 41
#: Logical dates of the runs (after the DAG's start_date, one per run, so states are per run).
GOOD_DATE, WORSE_DATE, BAD_DATE, CONF_DATE, ENV_DATE = (
    f"2025-01-0{d}T00:00:00+00:00" for d in (1, 2, 3, 4, 5)
)


def real_candles(start: str, end: str) -> pd.DataFrame:
    """Real 1-minute candles of ``[start, end)``, read in place from the shared file."""
    lo, hi = (int(pd.Timestamp(t).timestamp()) for t in (start, end))
    where = (ds.field("time") >= lo) & (ds.field("time") < hi)
    return ds.dataset(TWO_YEAR_FILE).to_table(filter=where).to_pandas().sort_values("time")


@dataclass
class RunResult:
    """One ``airflow dags test``: the process and the task states Airflow recorded."""

    proc: subprocess.CompletedProcess[str]
    states: dict[str, str]
    versions: list[str]  # the model's registered versions right after the run

    def tail(self) -> str:
        return (self.proc.stdout + self.proc.stderr)[-4000:]


@dataclass
class AirflowEnv:
    """A migrated Airflow home plus the environment the DAG's tasks see."""

    home: Path
    env: dict[str, str]

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``airflow ARGS``; its output is kept in ``home/cli.log`` for post-mortems."""
        proc = subprocess.run(
            [str(AIRFLOW), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.home,
        )
        with open(self.home / "cli.log", "a") as log:
            log.write(
                f"$ airflow {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}\n"
            )
        return proc

    def dags_test(self, logical_date: str, **conf: object) -> subprocess.CompletedProcess[str]:
        """``airflow dags test`` one run of the DAG with ``conf`` as params."""
        return self.cli("dags", "test", DAG_ID, logical_date, "-c", json.dumps(conf), timeout=840)

    def states(self, logical_date: str) -> dict[str, str]:
        """Task id -> state of the run at ``logical_date``, as Airflow recorded them."""
        proc = self.cli("tasks", "states-for-dag-run", DAG_ID, logical_date, "-o", "json")
        assert proc.returncode == 0, proc.stderr[-2000:]
        rows = json.loads(proc.stdout[proc.stdout.index("[") :])
        return {r["task_id"]: r["state"] for r in rows}


def dvc_repo(root: Path) -> tuple[Path, Path]:
    """A DVC repository (no git) for the datasets, and an empty local remote."""
    repo, remote = root / "dvc-repo", root / "dvc-remote"
    repo.mkdir()
    dvc = REPO_ROOT / ".venv" / "bin" / "dvc"
    subprocess.run([str(dvc), "init", "--no-scm", "-q"], cwd=repo, check=True, timeout=120)
    return repo / "datasets", remote


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory, mlflow_server) -> Iterator[AirflowEnv]:
    """A fresh Airflow home (SQLite, migrated), a real lake, DVC, a broker, the session MLflow."""
    require_tool("airflow", AIRFLOW)
    root = tmp_path_factory.mktemp("airflow")
    data = root / "data"
    seed_lake(real_candles(START, END), data, "BTC")
    datasets, remote = dvc_repo(root)
    broker = EmbeddedBroker(port=free_port(), log_path=root / "broker.log")
    broker.start()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(root / "home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "airflow" / "dags"),
        "VOLSTREAM_HOME": str(REPO_ROOT),
        "DATA_DIR": str(data),
        "TRAINER_DATASETS_DIR": str(datasets),
        "TRAINER_DVC_REMOTE": str(remote),
        "MLFLOW_TRACKING_URI": mlflow_server.uri,
        "MODEL_NAME": f"volstream-airflow-{uuid.uuid4().hex[:8]}",
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "PYTHONUNBUFFERED": "1",
    }
    af = AirflowEnv(root, env)
    try:
        migrated = af.cli("db", "migrate")
        assert migrated.returncode == 0, migrated.stderr[-3000:]
        yield af
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def mlflow_client(airflow_env: AirflowEnv) -> MlflowClient:
    uri = airflow_env.env["MLFLOW_TRACKING_URI"]
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def good_run(airflow_env: AirflowEnv, mlflow_client: MlflowClient) -> RunResult:
    """One real DAG run over four good weeks (shared by the tests that need a trained model)."""
    proc = airflow_env.dags_test(GOOD_DATE, start=START, end=END)
    found = mlflow_client.search_model_versions(f"name='{airflow_env.env['MODEL_NAME']}'")
    return RunResult(proc, airflow_env.states(GOOD_DATE), [v.version for v in found])


def model_events(bootstrap: str) -> list[ModelEvent]:
    """Every ModelEvent on the (single-partition, compacted) ``model.events`` topic."""

    async def read() -> list[ModelEvent]:
        settings = Settings(kafka_bootstrap_servers=bootstrap)
        consumer = kafka.make_consumer(MODEL_EVENTS, group_id=None, settings=settings)
        await consumer.start()
        got: list[ModelEvent] = []
        try:
            for _ in range(30):  # until a quiet poll after the first records (or ~60 s)
                batch = await consumer.getmany(timeout_ms=2000)
                if not batch and got:
                    break
                got += [ModelEvent.from_bytes(r.value) for rs in batch.values() for r in rs]
        finally:
            await consumer.stop()
        return got

    return asyncio.run(read())


def test_dagbag_imports_cleanly_with_the_six_hourly_schedule(airflow_env: AirflowEnv) -> None:
    probe = (
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag()\n"
        "dag = bag.dags['volstream_retrain']\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()},\n"
        "  'schedule': [dag.schedule, dag.timetable.expression], 'catchup': dag.catchup,\n"
        "  'max_active_runs': dag.max_active_runs,\n"
        "  'tasks': [t.task_id for t in dag.topological_sort()],\n"
        "  'retries': {t.task_id: t.retries for t in dag.tasks},\n"
        "  'backoff': all(t.retry_exponential_backoff for t in dag.tasks)}))\n"
    )
    python = AIRFLOW.with_name("python")
    proc = subprocess.run(
        [str(python), "-c", probe], env=airflow_env.env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["errors"] == {}
    assert got["schedule"] == ["0 */6 * * *", "0 */6 * * *"]
    assert got["catchup"] is False and got["max_active_runs"] == 1
    assert got["tasks"] == TASKS
    assert got["backoff"] and got["retries"]["train"] >= 1
    assert got["retries"]["quality_gate"] == 0  # bad data is not transient


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_good_window_runs_end_to_end_and_registers_a_model(
    airflow_env: AirflowEnv, good_run: RunResult, mlflow_client: MlflowClient
) -> None:
    assert good_run.proc.returncode == 0, good_run.tail()
    decided = good_run.states.pop("gate")
    assert good_run.states == dict.fromkeys(set(TASKS) - {"gate"}, "success")
    assert decided in {"success", "skipped"}  # promoted, or refused (exit 3)
    name = airflow_env.env["MODEL_NAME"]
    assert len(good_run.versions) == 1
    mv = mlflow_client.get_model_version(name, good_run.versions[0])
    assert mv.tags["gate.decision"] == ("promoted" if decided == "success" else "refused")
    # the run summary landed on the training run, the data profile on a data-quality run
    summary = json.loads(
        Path(
            mlflow_client.download_artifacts(
                mv.run_id, "airflow/run_summary.json", str(airflow_env.home)
            )
        ).read_text()
    )
    assert summary["model"]["version"] == mv.version
    assert summary["decision"]["decision"] == mv.tags["gate.decision"]
    assert summary["window"]["rows"] == DAYS * 1440 and summary["quality"]["passed"]
    # the dataset is DVC-tracked and pushed: its md5 is an object in the remote
    md5 = summary["dataset"]["md5"]
    assert summary["dataset"]["dvc"] is True
    assert (
        Path(airflow_env.env["TRAINER_DVC_REMOTE"]) / "files" / "md5" / md5[:2] / md5[2:]
    ).is_file()
    assert mlflow_client.get_run(mv.run_id).data.tags["data.md5"] == md5
    profiles = mlflow_client.search_runs(
        [mlflow_client.get_run(mv.run_id).info.experiment_id],
        f"tags.`airflow.run_id` = '{summary['airflow_run_id']}'",
    )
    assert len(profiles) == 1 and "quality/data_profile.html" in {
        a.path for a in mlflow_client.list_artifacts(profiles[0].info.run_id, "quality")
    }
    # the gate published its decision once; the DAG itself publishes nothing
    events = [
        e.event
        for e in model_events(airflow_env.env["KAFKA_BOOTSTRAP_SERVERS"])
        if e.version == mv.version
    ]
    assert events == ["registered", mv.tags["gate.decision"]]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_worse_challenger_leaves_the_champion_alone(
    airflow_env: AirflowEnv, good_run: RunResult, mlflow_client: MlflowClient
) -> None:
    name = airflow_env.env["MODEL_NAME"]
    (first,) = good_run.versions
    if not _is_champion(mlflow_client, name, first):
        # the first model did not beat HAR: make it champion, as `volstream promote --force` would
        mlflow_client.set_registered_model_alias(name, "champion", first)
    crippled = {
        "TRAINER_XGB_ROUNDS": 1,
        "TRAINER_XGB_MAX_DEPTH": 1,
    }  # one stump: far worse than the champion
    proc = airflow_env.dags_test(WORSE_DATE, start=START, end=END, train_env=crippled)
    assert proc.returncode == 0, proc.stdout[-3000:]
    states = airflow_env.states(WORSE_DATE)
    assert states.pop("gate") == "skipped"  # refused: exit 3
    assert states == dict.fromkeys(set(TASKS) - {"gate"}, "success")
    second = mlflow_client.get_model_version_by_alias(name, "challenger")
    assert second.version != first
    assert second.tags["gate.decision"] == "refused"
    assert "does not beat champion" in second.tags["gate.reason"]
    assert mlflow_client.get_model_version_by_alias(name, "champion").version == first


def _is_champion(client: MlflowClient, name: str, version: str) -> bool:
    try:
        return client.get_model_version_by_alias(name, "champion").version == version
    except MlflowException:
        return False


def write_raw_lake(candles: pd.DataFrame, data_dir: Path, symbol: str) -> None:
    """Day files written straight into the lake layout, bypassing Candle validation (as a
    corrupted backfill or a foreign writer would): the archiver itself never stores NaN."""
    days = pd.to_datetime(candles["time"], unit="s", utc=True).dt.strftime("%Y-%m-%d")
    for day, part in candles.groupby(days):
        path = day_dir(data_dir, symbol, str(day)) / FILE_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        part[list(CANDLE_FIELDS)].to_parquet(path, index=False)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_corrupted_window_stops_at_the_quality_gate(airflow_env: AirflowEnv) -> None:
    candles = real_candles("2023-06-01", "2023-06-15").reset_index(drop=True)
    candles.loc[candles.sample(frac=0.05, random_state=3).index, "close"] = float("nan")
    candles.loc[:199, "high"] = candles.loc[:199, "low"] - 1.0  # and 200 broken OHLC rows
    write_raw_lake(candles, Path(airflow_env.env["DATA_DIR"]), "BTC")
    end = "2023-06-15T00:00:00+00:00"
    proc = airflow_env.dags_test(BAD_DATE, start="2023-06-01", end=end)
    states = airflow_env.states(BAD_DATE)
    assert proc.returncode != 0
    assert states["snapshot"] == "success"
    assert states["quality_gate"] == "failed", proc.stdout[-3000:]
    assert {states[t] for t in TASKS[3:]} == {"upstream_failed"}
    out = proc.stdout + proc.stderr
    assert "quality gate failed: nulls: worst column close: 5.00% null" in out
    assert "ohlc_consistency: 200 rows" in out


def test_a_config_outside_the_allow_list_fails_before_any_work(airflow_env: AirflowEnv) -> None:
    # a train_env name outside the allow-list: the run is refused when it is triggered
    proc = airflow_env.dags_test(
        ENV_DATE, train_env={"PYTHONPATH": "/tmp/x", "TRAINER_XGB_ETA": 0.1}
    )
    assert proc.returncode != 0
    assert "PYTHONPATH" in proc.stdout + proc.stderr
    # a key that is not a param: check_conf fails the run, nothing else starts
    proc = airflow_env.dags_test(CONF_DATE, start=START, end=END, LD_PRELOAD="/tmp/x.so", bogus=1)
    assert proc.returncode != 0
    states = airflow_env.states(CONF_DATE)
    assert states["check_conf"] == "failed"
    assert {states[t] for t in TASKS[1:]} <= {"upstream_failed", None}
    assert "unknown params ['LD_PRELOAD', 'bogus']" in proc.stdout + proc.stderr
