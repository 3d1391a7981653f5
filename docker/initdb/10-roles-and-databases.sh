#!/bin/sh
# First start of the warehouse container: the pipeline's role, which owns the trip tables'
# database and Dagster's storage database and nothing more (no superuser: no COPY … TO PROGRAM),
# and the superuser reachable only from inside the container (`docker compose exec warehouse
# psql -U postgres`), never over the network.
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v role="$TAXI_ROLE" -v password="$TAXI_ROLE_PASSWORD" \
  -v database="$TAXI_DATABASE" -v storage="${DAGSTER_PG_DB:-dagster}" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"database" OWNER :"role";
CREATE DATABASE :"storage" OWNER :"role";
SQL
sed -i "1i host all $POSTGRES_USER all reject" "$PGDATA/pg_hba.conf"
