"""The tests' warehouses: a PostgreSQL schema or a DuckDB file of a test's own, the environment
that points a process of its own at one (`warehouse_env`), and plain SQL against either (`Db`)."""

from typing import TypeVar

import psycopg
import pytest

from taxi_assets.warehouses.base import TaxiWarehouse
from taxi_assets.warehouses.postgres import PostgresWarehouse
from taxi_assets_testkit.local_servers import PG
from taxi_assets_tests.runs import SETTINGS

# The warehouses every test marked `every_warehouse` runs on, one test each (the `warehouse`
# fixture; BigQuery has tests of its own, on the emulators).
EVERY_WAREHOUSE = ["postgres", "duckdb"]


def dbt_schema(schema: str) -> str:
    """The schema a test's dbt models go into, beside its trip tables' schema (dropped too)."""
    return f"{schema}_dbt"


def postgres_warehouse_at(database: str, sql_schema: str) -> PostgresWarehouse:
    """The PostgreSQL warehouse resource on the tests' server, in `database`.`sql_schema`."""
    return PostgresWarehouse(
        host=PG["host"],
        port=PG["port"],
        user=PG["user"],
        password=PG["password"],
        database=database,
        sql_schema=sql_schema,
    )


Warehouse = TypeVar("Warehouse", bound=TaxiWarehouse)


def replaced(warehouse: Warehouse, **fields: object) -> Warehouse:
    """The warehouse resource with some fields changed. (Not `model_copy(update=…)`: a run uses
    the configuration a resource was built with, so the change would never reach it.)"""
    return type(warehouse)(**{**warehouse.model_dump(), **fields})


def admin_connection(database: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(dbname=database, autocommit=True, connect_timeout=5, **PG)


def warehouse_env(warehouse: TaxiWarehouse) -> dict[str, str]:
    """The variables that point a process of its own (the CLI, `dagster dev`, dbt, the summary)
    at the test's warehouse, as a user's `.env` would; with the tests' short retry delay."""
    env = {
        "TAXI_WAREHOUSE": warehouse.kind,
        "TAXI_RETRY_DELAY_SECONDS": str(SETTINGS.retry_delay_seconds),
    }
    if warehouse.kind == "postgres":
        return env | {
            "PGHOST": warehouse.host,
            "PGPORT": str(warehouse.port),
            "PGUSER": warehouse.user,
            **({"PGPASSWORD": warehouse.password} if warehouse.password else {}),
            "PGDATABASE": warehouse.database,
            "TAXI_PG_SCHEMA": warehouse.sql_schema,
            "TAXI_DBT_SCHEMA": dbt_schema(warehouse.sql_schema),
        }
    if warehouse.kind == "duckdb":
        return env | {
            "TAXI_DUCKDB_PATH": str(warehouse.database_file),
            "TAXI_DUCKDB_SCHEMA": warehouse.sql_schema,
        }
    return env | {  # BigQuery, on the emulators
        "GCP_PROJECT_ID": warehouse.project,
        "GCP_DATASET": warehouse.dataset,
        "GCP_BUCKET_NAME": warehouse.bucket,
        "TAXI_DBT_SCHEMA": dbt_schema(warehouse.dataset),  # the models' own dataset
        "BIGQUERY_API_ENDPOINT": warehouse.api_endpoint,
        "DBT_BIGQUERY_METHOD": "oauth-secrets",  # a dummy token the emulator does not check
        "DBT_BIGQUERY_TOKEN": "dummy-token",
    }


def set_warehouse_env(monkeypatch: pytest.MonkeyPatch, warehouse: TaxiWarehouse) -> None:
    """`warehouse_env` in this process's environment, for the test (dbt reads it from there)."""
    for name, value in warehouse_env(warehouse).items():
        monkeypatch.setenv(name, value)


class Rows(list):
    def fetchone(self):
        return self[0] if self else None

    def fetchall(self):
        return list(self)


class Db:
    """Plain SQL against the test's warehouse, written once for both (`%s` parameters)."""

    def __init__(self, warehouse: TaxiWarehouse):
        self.warehouse = warehouse
        self._postgres: psycopg.Connection | None = None
        if isinstance(warehouse, PostgresWarehouse):
            self._postgres = psycopg.connect(dbname=warehouse.database, autocommit=True, **PG)
            self._postgres.execute(
                f'SET search_path = "{warehouse.sql_schema}", '
                f'"{dbt_schema(warehouse.sql_schema)}", public'
            )

    def execute(self, query: str, params: tuple | list = ()) -> Rows:
        if self._postgres is not None:
            cursor = self._postgres.execute(query, params)
            return Rows(cursor.fetchall() if cursor.description else [])
        with self.warehouse.connect() as connection:
            # The trip tables' schema, then the dbt models' (TAXI_DBT_SCHEMA's default), where
            # they exist (DuckDB refuses a search path with a missing schema).
            schemas = [self.warehouse.sql_schema, "taxi_models"]
            found = connection.execute(
                "SELECT schema_name FROM duckdb_schemas() WHERE schema_name IN (?, ?)", schemas
            ).fetchall()
            path = ",".join(name for name in schemas if (name,) in found) or "main"
            connection.execute(f"SET search_path = '{path}'")
            result = connection.execute(query.replace("%s", "?"), list(params))
            return Rows(result.fetchall() if result.description else [])

    @property
    def postgres(self) -> psycopg.Connection:
        """The raw connection, for what only PostgreSQL has (COPY, say)."""
        assert self._postgres is not None, "a PostgreSQL-only test"
        return self._postgres

    def table_exists(self, table: str) -> bool:
        return (
            self.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = %s AND table_name = %s",
                (self.warehouse.sql_schema, table),
            ).fetchone()[0]
            > 0
        )

    def close(self) -> None:
        if self._postgres is not None:
            self._postgres.close()
