#!/bin/sh
# First start of the warehouse container: a database of its own for Dagster's storage.
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "CREATE DATABASE \"${DAGSTER_PG_DB:-dagster}\""
