#!/usr/bin/env bash
# First start of the PostgreSQL volume only (/docker-entrypoint-initdb.d): one role and one database
# each for the Prefect server and the MLflow tracking server. Names and passwords come from the
# container's environment (docker/.env); psql variables quote them, so no value is pasted into SQL.
# To re-run it, remove the volume: docker compose -f docker/compose.yaml down -v
set -euo pipefail

create_db() {  # role password database
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -v role="$1" -v password="$2" -v db="$3" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"role";
SQL
}

create_db "${PREFECT_DB_USER:?}" "${PREFECT_DB_PASSWORD:?}" "${PREFECT_DB_NAME:?}"
create_db "${MLFLOW_DB_USER:?}" "${MLFLOW_DB_PASSWORD:?}" "${MLFLOW_DB_NAME:?}"
