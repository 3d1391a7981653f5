"""Real parts: a PostgreSQL database per test session (a schema per test) and a local HTTP
server that serves trip files laid out as the DataTalksClub release is."""

import collections
import gzip
import http.server
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import dagster as dg
import psycopg
import pytest

from taxi_assets.checks import taxi_trip_checks
from taxi_assets.partitions import TaxiPartition
from taxi_assets.resources import TaxiSource
from taxi_assets.warehouses.base import TaxiWarehouse
from taxi_assets.warehouses.duckdb import DuckDBWarehouse
from taxi_assets.warehouses.postgres import PostgresWarehouse
from taxi_assets_testkit.local_servers import PG, serve_directory
from taxi_assets_tests.runs import load_taxi_trips

pytest_plugins = ["taxi_assets_tests.gcp_emulators"]

REAL_DATA = Path(__file__).parent / "data" / "real"
SAMPLE_SOURCE = Path(__file__).parent.parent / "sample_source"


def real_sample(name: str) -> Path:
    """A real TLC file: the shipped full month, or one of the samples in `data/real`."""
    shipped = SAMPLE_SOURCE / name.split("_")[0] / name
    return shipped if shipped.exists() else REAL_DATA / name


def postgres_env(database: str, schema: str) -> dict[str, str]:
    """The environment that points a subprocess (the CLI, dagster dev) at a test schema."""
    return {
        "TAXI_WAREHOUSE": "postgres",
        "PGHOST": PG["host"],
        "PGPORT": str(PG["port"]),
        "PGUSER": PG["user"],
        "PGDATABASE": database,
        "TAXI_PG_SCHEMA": schema,
        "TAXI_DBT_SCHEMA": dbt_schema(schema),
    }


def dbt_schema(schema: str) -> str:
    """The schema a test's dbt models go into, beside its trip tables' schema (dropped too)."""
    return f"{schema}_dbt"


def under_ci() -> bool:
    """Whether CI is set to anything but a "no" (`true`, `1`, `yes`): there nothing may skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _admin_connection() -> psycopg.Connection:
    return psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=5, **PG)


@pytest.fixture(scope="session")
def test_database() -> Iterator[str]:
    """A database of its own for this test session, dropped afterwards."""
    try:
        admin = _admin_connection()
    except psycopg.OperationalError as error:
        if under_ci():
            pytest.fail(f"PostgreSQL is required under CI=true and is not reachable: {error}")
        pytest.skip(f"PostgreSQL is not reachable: {error}")
    name = f"taxi_assets_test_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    with _admin_connection() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_warehouse(test_database: str) -> Iterator[PostgresWarehouse]:
    """The PostgreSQL warehouse resource on a fresh schema, dropped after the test."""
    schema_name = f"t_{uuid.uuid4().hex[:10]}"
    yield PostgresWarehouse(
        host=PG["host"],
        port=PG["port"],
        user=PG["user"],
        password=PG["password"],
        database=test_database,
        sql_schema=schema_name,
    )
    with psycopg.connect(dbname=test_database, autocommit=True, **PG) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
        connection.execute(f'DROP SCHEMA IF EXISTS "{dbt_schema(schema_name)}" CASCADE')


@pytest.fixture
def duckdb_warehouse(tmp_path: Path) -> DuckDBWarehouse:
    """The DuckDB warehouse resource on a file of the test's own."""
    return DuckDBWarehouse(path=str(tmp_path / "warehouse" / "taxi.duckdb"))


@pytest.fixture
def warehouse(postgres_warehouse: PostgresWarehouse) -> PostgresWarehouse:
    """PostgreSQL; test modules that hold for every warehouse override this (see `WAREHOUSES`)."""
    return postgres_warehouse


def any_warehouse(request: pytest.FixtureRequest) -> TaxiWarehouse:
    """For `@pytest.fixture(params=WAREHOUSES)`: the warehouse the parameter names."""
    return request.getfixturevalue(f"{request.param}_warehouse")


WAREHOUSES = ["postgres", "duckdb"]


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


@pytest.fixture
def db(warehouse: TaxiWarehouse) -> Iterator[Db]:
    reader = Db(warehouse)
    yield reader
    reader.close()


class _SourceHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files; counts requests per path; can break off a transfer to order."""

    hits: ClassVar[collections.Counter] = collections.Counter()
    drops: ClassVar[collections.Counter] = collections.Counter()  # path -> transfers to break off
    delays: ClassVar[dict[str, float]] = {}  # path prefix -> seconds to wait before answering

    def do_GET(self) -> None:
        self.hits[self.path] += 1
        for prefix, seconds in self.delays.items():
            if self.path.startswith(prefix):
                time.sleep(seconds)
        if self.drops[self.path] > 0:
            self.drops[self.path] -= 1
            self._send_half()
            return
        super().do_GET()

    def _send_half(self) -> None:
        data = Path(self.translate_path(self.path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving a temporary directory."""
    root = tmp_path_factory.mktemp("http_root")
    server, url = serve_directory(root, _SourceHandler)
    yield root, url
    server.shutdown()
    server.server_close()


class Mirror:
    """A test's own corner of the HTTP server: `{url}/{taxi}/{taxi}_tripdata_{YYYY-MM}.csv.gz`."""

    def __init__(self, directory: Path, url: str):
        self.directory = directory
        self.url = url

    def path(self, partition: TaxiPartition) -> Path:
        path = self.directory / partition.taxi / partition.source_filename
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def put_bytes(self, partition: TaxiPartition, data: bytes) -> Path:
        path = self.path(partition)
        path.write_bytes(data)
        return path

    def put_csv(self, partition: TaxiPartition, csv_path: Path) -> Path:
        """Publish a plain CSV (a real sample) gzipped, as the release does."""
        with csv_path.open("rb") as source, gzip.open(self.path(partition), "wb") as target:
            shutil.copyfileobj(source, target)
        return self.path(partition)

    def put_gz(self, partition: TaxiPartition, gz_path: Path) -> Path:
        shutil.copyfile(gz_path, self.path(partition))
        return self.path(partition)

    def url_path(self, partition: TaxiPartition) -> str:
        """The request path the server sees for the partition's file."""
        return f"/{self.directory.name}/{partition.taxi}/{partition.source_filename}"

    def hits(self, partition: TaxiPartition) -> int:
        return _SourceHandler.hits[self.url_path(partition)]

    def break_off(self, partition: TaxiPartition, transfers: int) -> None:
        """The next `transfers` downloads of the file stop halfway (a dropped connection)."""
        _SourceHandler.drops[self.url_path(partition)] = transfers

    def slow_down(self, seconds: float) -> None:
        """Every download from this mirror takes at least `seconds` (0: back to full speed)."""
        _SourceHandler.delays[f"/{self.directory.name}/"] = seconds

    def source(self) -> TaxiSource:
        """The release's CSVs and the TLC's Parquet files (flat: `{url}/{file}.parquet`), both
        from this mirror: no test asks the internet."""
        return TaxiSource(base_url=self.url, tlc_url=self.url, retries=1, timeout_seconds=10)


@pytest.fixture
def mirror(http_root: tuple[Path, str]) -> Mirror:
    root, url = http_root
    name = uuid.uuid4().hex[:10]
    (root / name).mkdir()
    return Mirror(root / name, f"{url}/{name}")


@pytest.fixture
def load(mirror: Mirror, warehouse: PostgresWarehouse):
    """Materialise one partition the way a run does (assets + checks), in this process."""

    def _load(key: str, *, raise_on_error: bool = True, **kwargs) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [load_taxi_trips, *taxi_trip_checks],
            partition_key=key,
            resources={"source": mirror.source(), "warehouse": warehouse},
            raise_on_error=raise_on_error,
            **kwargs,
        )

    return _load
