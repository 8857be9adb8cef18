#!/usr/bin/env bash
# Postgres first start (docker-entrypoint-initdb.d): one database and one owner per tenant,
# MLflow's backend store and Airflow's metadata. Passwords come from the environment (.env).
set -euo pipefail

create() {  # create ROLE PASSWORD DATABASE
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -v role="$1" -v pass="$2" -v db="$3" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'pass';
CREATE DATABASE :"db" OWNER :"role";
SQL
}

create mlflow "${MLFLOW_DB_PASSWORD:?}" mlflow
create airflow "${AIRFLOW_DB_PASSWORD:?}" airflow
