"""volstream_retrain: every six hours, snapshot the candle lake, gate it, version it, retrain.

    snapshot >> quality_gate >> build_dataset >> version_dataset >> train
             >> evaluate_and_promote >> notify

Orchestration only. Every task runs volstream's own code in the project venv (``.venv``):
``@task.external_python`` callables import ``trainer.*`` (their source is copied into the
project interpreter, so each imports what it needs and returns plain data for XCom), and bash
tasks call the ``volstream`` CLI, whose last stdout line (one JSON object) is the XCom. Airflow
itself lives in ``.venv-airflow``: it cannot share a venv with faust-streaming.

Configuration:
- params (UI "Trigger DAG w/ config", ``airflow dags test -c '{...}'``): ``symbol``;
  ``start``/``end`` (ISO time or unix seconds; empty ``end``: the run's data interval end, or
  the trigger time; empty ``start``: ``lookback_days`` before the end); the quality thresholds;
  ``train_env`` (trainer knobs for this run, e.g. ``{"TRAINER_XGB_MAX_DEPTH": 4}``).
- environment, read by volstream's settings inside each task: ``VOLSTREAM_HOME`` (the repo;
  default two levels above this file), ``DATA_DIR``, ``MLFLOW_TRACKING_URI``, ``MODEL_NAME``,
  ``KAFKA_BOOTSTRAP_SERVERS``, ``TRAINER_DATASETS_DIR``/``TRAINER_DVC_REMOTE``.

The quality gate raises on bad data, so nothing downstream runs (``upstream_failed``) and it is
not retried (bad data is not transient); other tasks retry with exponential backoff.
"""

from __future__ import annotations

import os
import re
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, task

HOME = Path(os.environ.get("VOLSTREAM_HOME") or Path(__file__).resolve().parents[2])
PYTHON = str(HOME / ".venv" / "bin" / "python")
VOLSTREAM = shlex.quote(str(HOME / ".venv" / "bin" / "volstream"))
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")

RETRIES = {
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}
PROJECT = {"python": PYTHON, "expect_airflow": False}
BASH = {"append_env": True, "cwd": str(HOME)}
#: The window end: the param, else the data interval end, else (manual runs) the trigger time.
RUN_END = "{{ params.end or (data_interval_end or dag_run.run_after).isoformat() }}"


@task.external_python(**PROJECT)
def snapshot(symbol: str, start: Any, end: Any, lookback_days: int) -> dict:
    """Freeze the lake window into one Parquet candle file under DATA_DIR/snapshots."""
    from trainer.snapshot import parse_time, run_snapshot

    end_s = parse_time(end)
    start_s = parse_time(start) if start not in ("", None) else end_s - lookback_days * 86400
    return run_snapshot(symbol, start_s, end_s)


@task.external_python(**PROJECT, retries=0)
def quality_gate(snap: dict, thresholds: dict, run_id: str) -> dict:
    """Check the snapshot; log report and data profile to MLflow; raise if it fails."""
    from trainer.quality import QualityThresholds
    from trainer.snapshot import run_gate

    th = QualityThresholds(
        max_null_fraction=float(thresholds["max_null_fraction"]),
        min_coverage=float(thresholds["min_coverage"]),
        max_staleness_s=60 * int(thresholds["max_staleness_minutes"]),
    )
    report = run_gate(snap, th, tags={"airflow.run_id": run_id})
    return {"passed": report["passed"], "gaps": len(report["gaps"]), "rows": report["rows"]}


@task.external_python(**PROJECT)
def build_dataset(snap: dict, report: dict) -> dict:
    """Origins, targets and features of the gated window, written under TRAINER_DATASETS_DIR."""
    from pathlib import Path

    from trainer.baselines import LAMBDA_GRID
    from trainer.dataset import build_dataset as build
    from trainer.settings import TrainerSettings
    from trainer.sources import read_candles
    from trainer.versioning import dataset_filename

    ts = TrainerSettings()
    ds = build(read_candles(Path(snap["path"])), ts, lambdas=LAMBDA_GRID)
    ts.datasets_dir.mkdir(parents=True, exist_ok=True)
    path = ts.datasets_dir / dataset_filename(ds, snap["symbol"])
    ds.frame.to_parquet(path, index=False)
    return {"path": str(path), "rows": len(ds.frame), "feature_version": ds.feature_version}


@task.external_python(**PROJECT)
def version_dataset(dataset: dict) -> dict:
    """``dvc add`` + ``dvc push`` the dataset; its md5 (what DVC records) goes to XCom."""
    from pathlib import Path

    from trainer.settings import TrainerSettings
    from trainer.versioning import md5, track

    path = Path(dataset["path"])
    return {"path": str(path), "md5": md5(path), "dvc": track(path, TrainerSettings())}


@task.bash(**BASH)
def train(snap: dict, version: dict, params: dict | None = None) -> str:
    """``volstream train --no-promote``: fit, log to MLflow, register the challenger."""
    overrides = (params or {}).get("train_env") or {}
    bad = [k for k in overrides if not ENV_NAME.match(str(k))]
    if bad:
        raise ValueError(f"train_env: not environment variable names: {bad}")
    env = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in overrides.items())
    data, symbol = shlex.quote(snap["path"]), shlex.quote(snap["symbol"])
    return f"{env} {VOLSTREAM} train --data {data} --symbol {symbol} --no-promote --json"


@task.bash(**BASH)
def evaluate_and_promote(trained: str) -> str:
    """The trainer's gate on the new challenger: promoted only if it beats champion and HAR."""
    return f"{VOLSTREAM} promote --json"


@task.external_python(**PROJECT)
def notify(snap: dict, report: dict, version: dict, trained: str, decided: str, run_id: str):
    """Publish the decision as a ModelEvent; log the run summary to the training run."""
    import json

    from services.common import registry
    from services.common.schemas import ModelEvent
    from services.common.settings import get_settings

    settings, train_doc, decision = get_settings(), json.loads(trained), json.loads(decided)
    summary = {
        "airflow_run_id": run_id,
        "window": {k: snap[k] for k in ("symbol", "start", "end", "rows", "path")},
        "quality": report,
        "dataset": version,
        "model": {"name": settings.model_name, "version": train_doc["version"]},
        "training_run_id": train_doc["run_id"],
        "test_qlike": {
            k: v["qlike"]
            for k, v in train_doc["report"].items()
            if isinstance(v, dict) and "qlike" in v
        },
        "decision": decision,
        "champion": registry.alias_version(registry.CHAMPION, settings),
    }
    event = ModelEvent(
        event="promoted" if decision["promoted"] else "refused",
        model_name=settings.model_name,
        version=train_doc["version"],
        alias=registry.CHAMPION if decision["promoted"] else registry.CHALLENGER,
        run_id=train_doc["run_id"],
        reason=f"volstream_retrain {run_id}: {decision['reason']}",
        metrics={k: float(v) for k, v in decision.items() if k.endswith("_qlike") and v},
    )
    summary["published"] = registry.publish_event(event, settings)
    registry.client(settings).log_dict(train_doc["run_id"], summary, "airflow/run_summary.json")
    print(json.dumps(summary, indent=1, default=str))
    return summary


@dag(
    dag_id="volstream_retrain",
    schedule="0 */6 * * *",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=RETRIES,
    render_template_as_native_obj=True,
    tags=["volstream", "training"],
    params={
        "symbol": Param("BTC", type="string", pattern=r"^[A-Z0-9]{1,15}$"),
        "start": Param("", type=["string", "integer"], description="empty: end - lookback"),
        "end": Param("", type=["string", "integer"], description="empty: data interval end"),
        "lookback_days": Param(90, type="integer", minimum=8),
        "max_null_fraction": Param(0.01, type="number", minimum=0, maximum=1),
        "min_coverage": Param(0.95, type="number", minimum=0, maximum=1),
        "max_staleness_minutes": Param(60, type="integer", minimum=1),
        "train_env": Param({}, type="object", description="trainer env knobs for this run"),
    },
    doc_md=__doc__,
)
def volstream_retrain() -> None:
    snap = snapshot(
        symbol="{{ params.symbol }}",
        start="{{ params.start }}",
        end=RUN_END,
        lookback_days="{{ params.lookback_days }}",
    )
    thresholds = {
        "max_null_fraction": "{{ params.max_null_fraction }}",
        "min_coverage": "{{ params.min_coverage }}",
        "max_staleness_minutes": "{{ params.max_staleness_minutes }}",
    }
    report = quality_gate(snap, thresholds, run_id="{{ run_id }}")
    version = version_dataset(build_dataset(snap, report))
    trained = train(snap, version)
    decided = evaluate_and_promote(trained)
    notify(snap, report, version, trained, decided, run_id="{{ run_id }}")


volstream_retrain()
