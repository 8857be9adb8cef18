"""volstream_retrain: every six hours, snapshot the candle lake, gate it, version it, retrain.

Orchestration only. Every task runs volstream's own code in the project venv (``.venv``), either
as ``@task.external_python`` callables that import ``trainer.*`` (their source is copied into the
project interpreter, so each one imports what it needs) or as bash tasks calling ``volstream``.
Airflow lives in ``.venv-airflow`` (it cannot share a venv with faust-streaming).

Configuration:
- params (UI "Trigger DAG w/ config", ``airflow dags test -c``): ``symbol``; ``start``/``end``
  (ISO dates or unix seconds; empty: the ``lookback_days`` before the run's data interval end);
  the quality thresholds.
- environment: ``VOLSTREAM_HOME`` (repo root; default: two levels above this file),
  ``DATA_DIR``, ``MLFLOW_TRACKING_URI``, ``KAFKA_BOOTSTRAP_SERVERS``, ``MODEL_NAME``: read by
  volstream's settings inside each task.

The quality gate raises on bad data, so nothing downstream of it runs (upstream_failed).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import Param, dag, task

HOME = Path(os.environ.get("VOLSTREAM_HOME") or Path(__file__).resolve().parents[2])
PYTHON = str(HOME / ".venv" / "bin" / "python")

RETRIES = {
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}
#: The run's window end: the data interval end, or (manual runs without one) the trigger time.
RUN_END = "{{ params.end or (data_interval_end or dag_run.run_after).isoformat() }}"


@task.external_python(python=PYTHON, expect_airflow=False)
def snapshot(symbol: str, start: str, end: str, lookback_days: int) -> dict:
    """Freeze the lake window into a Parquet candle file under DATA_DIR/snapshots."""
    from trainer.snapshot import parse_time, run_snapshot

    end_s = parse_time(end)
    start_s = parse_time(start) if start else end_s - int(lookback_days) * 86400
    return run_snapshot(symbol, start_s, end_s)


@task.external_python(python=PYTHON, expect_airflow=False, retries=0)
def quality_gate(
    snap: dict, max_null_fraction: str, min_coverage: str, max_stale: str, run_id: str
):
    """Check the snapshot; log the report and a data profile to MLflow; raise if it fails."""
    from trainer.quality import QualityThresholds
    from trainer.snapshot import run_gate

    th = QualityThresholds(
        max_null_fraction=float(max_null_fraction),
        min_coverage=float(min_coverage),
        max_staleness_s=int(max_stale) * 60,
    )
    return run_gate(snap, th, tags={"airflow.run_id": run_id})


@dag(
    dag_id="volstream_retrain",
    schedule="0 */6 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=RETRIES,
    tags=["volstream", "training"],
    params={
        "symbol": Param("BTC", type="string", pattern=r"^[A-Z0-9]{1,15}$"),
        "start": Param("", type="string", description="window start; empty: end - lookback"),
        "end": Param("", type="string", description="window end; empty: the data interval end"),
        "lookback_days": Param(90, type="integer", minimum=8),
        "max_null_fraction": Param(0.01, type="number", minimum=0, maximum=1),
        "min_coverage": Param(0.95, type="number", minimum=0, maximum=1),
        "max_staleness_minutes": Param(60, type="integer", minimum=1),
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
    quality_gate(
        snap,
        max_null_fraction="{{ params.max_null_fraction }}",
        min_coverage="{{ params.min_coverage }}",
        max_stale="{{ params.max_staleness_minutes }}",
        run_id="{{ run_id }}",
    )


volstream_retrain()
