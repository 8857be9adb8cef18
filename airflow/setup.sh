#!/usr/bin/env bash
# Build .venv-airflow: Apache Airflow in its own venv (it conflicts with faust-streaming in .venv).
#
# Idempotent: a stamp holding the lock file's hash skips the install when nothing changed.
# Pinned: airflow/requirements.lock is `uv pip compile airflow/requirements.in` (every version fixed);
# regenerate it with `uv pip compile airflow/requirements.in --python-version 3.11 \
#   -o airflow/requirements.lock` after editing requirements.in.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-airflow
LOCK=airflow/requirements.lock
STAMP="$VENV/.volstream-lock.sha256"
UV=$(command -v uv 2>/dev/null || echo "python3 -m uv")

want=$(sha256sum "$LOCK" | cut -d' ' -f1)
if [[ -x "$VENV/bin/airflow" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    echo "airflow-setup: $VENV is up to date"
    exit 0
fi

echo "airflow-setup: building $VENV from $LOCK"
[[ -x "$VENV/bin/python" ]] || $UV venv "$VENV" --python 3.11 --quiet
$UV pip install --quiet --python "$VENV/bin/python" -r "$LOCK"
"$VENV/bin/airflow" version
echo "$want" >"$STAMP"
