#!/usr/bin/env bash
# Local Airflow UI for volstream: `airflow standalone` (db migrate, scheduler, DAG processor,
# triggerer, API server and UI) on 127.0.0.1:${AIRFLOW_PORT:-8080}, state under $AIRFLOW_HOME.
#
# Run by `volstream up --airflow` (AIRFLOW_HOME=var/airflow), or by hand: `bash airflow/standalone.sh`.
# Login: user `admin`; Airflow's simple auth manager generates the password on first start and
# keeps it in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated (printed below).
# MLFLOW_TRACKING_URI, DATA_DIR and KAFKA_BOOTSTRAP_SERVERS pass through to the tasks.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

[[ -x .venv-airflow/bin/airflow ]] || bash airflow/setup.sh

export VOLSTREAM_HOME="$ROOT"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/var/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/airflow/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW_USERS:-admin:admin}"
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="${AIRFLOW_PORT:-8080}"
# New DAG files are picked up within 30 s; the DAG is paused until switched on in the UI.
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-30}"
mkdir -p "$AIRFLOW_HOME"

echo "airflow: UI http://127.0.0.1:${AIRFLOW__API__PORT} (user admin; password in" \
    "$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated once started)"
exec .venv-airflow/bin/airflow standalone
