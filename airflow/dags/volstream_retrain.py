"""volstream_retrain: every six hours, snapshot the candle lake, gate it, version it, retrain.

    check_conf >> snapshot >> quality_gate >> build_dataset >> version_dataset >> train
               >> gate >> summarize

Orchestration only. Every task runs volstream's own code in the project venv (``.venv``):
``@task.external_python`` callables import ``trainer.*`` (their source is copied into the
project interpreter, so each imports what it needs and returns plain data for XCom), and bash
tasks call the ``volstream`` CLI, whose last stdout line (one JSON object) is the XCom. Airflow
itself lives in ``.venv-airflow``: it cannot share a venv with faust-streaming.

Configuration:
- params (UI "Trigger DAG w/ config", ``airflow dags test -c '{...}'``): ``symbol``;
  ``start``/``end`` (ISO time or unix seconds; empty ``end``: the run's data interval end, or
  the trigger time; empty ``start``: ``lookback_days`` before the end); the quality thresholds;
  ``train_env`` (trainer knobs for this run, e.g. ``{"TRAINER_XGB_MAX_DEPTH": 4}``). Both are
  explicit allow-lists: a ``train_env`` name outside :data:`TRAIN_ENV` is rejected when the run is
  triggered (the param's schema), and ``check_conf`` fails the run before any work starts when
  the config holds a key that is not a param, naming the offenders. Gate margins are not among
  them: a trigger cannot loosen the gate.
- environment, read by volstream's settings inside each task: ``VOLSTREAM_HOME`` (the repo;
  default two levels above this file), ``DATA_DIR``, ``MLFLOW_TRACKING_URI``, ``MODEL_NAME``,
  ``KAFKA_BOOTSTRAP_SERVERS``, ``TRAINER_DATASETS_DIR``/``TRAINER_DVC_REMOTE``.

The quality gate raises on bad data, so nothing downstream runs (``upstream_failed``) and it is
not retried (bad data is not transient); other tasks retry with exponential backoff. ``gate``
only calls ``volstream gate``: promoted is success, refused (exit 3) is *skipped*, anything else
fails; it is not retried (each run of the gate is one recorded decision). The gate publishes its
ModelEvent itself; ``summarize`` reads the decision back from the version's tags and logs the run
summary, it publishes nothing.
"""

from __future__ import annotations

import os
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, task

HOME = Path(os.environ.get("VOLSTREAM_HOME") or Path(__file__).resolve().parents[2])
PYTHON = str(HOME / ".venv" / "bin" / "python")
VOLSTREAM = shlex.quote(str(HOME / ".venv" / "bin" / "volstream"))
#: The trainer knobs a trigger may set for one run (nothing that changes how code is loaded,
#: like PYTHONPATH or LD_PRELOAD, and nothing of the gate).
TRAIN_ENV = (
    "TRAINER_XGB_MAX_DEPTH",
    "TRAINER_XGB_ETA",
    "TRAINER_XGB_ROUNDS",
    "TRAINER_XGB_EARLY_STOPPING",
    "TRAINER_XGB_MIN_CHILD_WEIGHT",
    "TRAINER_XGB_SUBSAMPLE",
    "TRAINER_XGB_COLSAMPLE",
    "TRAINER_TRAIN_STEP_MINUTES",
    "TRAINER_REFIT_ON_VALID",
    "TRAINER_SEED",
)
EXIT_REFUSED = 3

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


@task(retries=0)
def check_conf(allowed: list[str], dag_run: Any = None) -> None:
    """Fail the run before any work when the trigger's config has keys that are not params."""
    conf = dict(getattr(dag_run, "conf", None) or {})
    unknown = sorted(set(conf) - set(allowed))
    env = conf.get("train_env") or {}
    bad_env = sorted(str(k) for k in env if k not in TRAIN_ENV) if isinstance(env, dict) else []
    if unknown or bad_env:
        raise ValueError(
            f"run config refused: unknown params {unknown}, train_env names not allowed "
            f"{bad_env} (allowed params: {sorted(allowed)}; train_env: {list(TRAIN_ENV)})"
        )


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
    from trainer.holdout import training_part
    from trainer.settings import TrainerSettings
    from trainer.sources import read_candles
    from trainer.versioning import dataset_filename

    ts = TrainerSettings()
    # the rows `volstream train` fits on: the held-out days are left to the gate
    ds = build(training_part(read_candles(Path(snap["path"])), ts.holdout_days), ts, LAMBDA_GRID)
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
    bad = sorted(str(k) for k in overrides if k not in TRAIN_ENV)
    if bad:  # check_conf and the param schema refuse these first; never reach a shell
        raise ValueError(f"train_env names not allowed: {bad}")
    env = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in overrides.items())
    data, symbol = shlex.quote(snap["path"]), shlex.quote(snap["symbol"])
    return f"{env} {VOLSTREAM} train --data {data} --symbol {symbol} --no-promote --json"


@task.bash(**BASH, retries=0, skip_on_exit_code=EXIT_REFUSED)
def gate(snap: dict, trained: str) -> str:
    """``volstream gate``: promoted -> success, refused (exit 3) -> skipped, error -> failed."""
    data, symbol = shlex.quote(snap["path"]), shlex.quote(snap["symbol"])
    return f"{VOLSTREAM} gate --data {data} --symbol {symbol} --json"


@task.external_python(**PROJECT, trigger_rule="none_failed")
def summarize(snap: dict, report: dict, version: dict, trained: str, run_id: str) -> dict:
    """Log the run summary (window, quality, dataset, the gate's recorded decision) to the
    training run. The gate already published the decision: nothing is published here."""
    import json

    from services.common import registry
    from services.common.settings import get_settings

    settings, train_doc = get_settings(), json.loads(trained)
    tags = registry.client(settings).get_model_version(settings.model_name, train_doc["version"])
    gate_tags = {k.removeprefix("gate."): v for k, v in tags.tags.items() if k.startswith("gate.")}
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
        "decision": gate_tags,
        "champion": registry.alias_version(registry.CHAMPION, settings),
    }
    registry.client(settings).log_dict(train_doc["run_id"], summary, "airflow/run_summary.json")
    print(json.dumps(summary, indent=1, default=str))
    return summary


PARAMS = {
    "symbol": Param("BTC", type="string", pattern=r"^[A-Z0-9]{1,15}$"),
    "start": Param("", type=["string", "integer"], description="empty: end - lookback"),
    "end": Param("", type=["string", "integer"], description="empty: data interval end"),
    "lookback_days": Param(90, type="integer", minimum=8),
    "max_null_fraction": Param(0.01, type="number", minimum=0, maximum=1),
    "min_coverage": Param(0.95, type="number", minimum=0, maximum=1),
    "max_staleness_minutes": Param(60, type="integer", minimum=1),
    "train_env": Param(
        {},
        type="object",
        propertyNames={"enum": list(TRAIN_ENV)},
        description="trainer env knobs for this run (allow-list: TRAIN_ENV)",
    ),
}


@dag(
    dag_id="volstream_retrain",
    schedule="0 */6 * * *",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=RETRIES,
    render_template_as_native_obj=True,
    tags=["volstream", "training"],
    params=PARAMS,
    doc_md=__doc__,
)
def volstream_retrain() -> None:
    checked = check_conf(allowed=list(PARAMS))
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
    checked >> snap
    trained = train(snap, version)
    (
        trained
        >> gate(snap, trained)
        >> summarize(snap, report, version, trained, run_id="{{ run_id }}")
    )


volstream_retrain()
