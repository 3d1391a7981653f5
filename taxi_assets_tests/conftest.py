"""The fixtures: real parts. A PostgreSQL database per test session (a schema per test), a DuckDB
file per test, and a local HTTP server that serves trip files laid out as the DataTalksClub
release is. What the tests import lives in modules of its own (`databases.py`, `mirror.py`,
`runs.py`, `samples.py`, `helpers.py`, and `taxi_assets_testkit/`, shared with the benchmarks).

`warehouse` is PostgreSQL; in a test marked `every_warehouse` (or a module with that
`pytestmark`) it is each of `EVERY_WAREHOUSE`, one test each."""

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from taxi_assets.warehouses.base import TaxiWarehouse
from taxi_assets.warehouses.duckdb import DuckDBWarehouse
from taxi_assets.warehouses.postgres import PostgresWarehouse
from taxi_assets_testkit.local_servers import serve_directory
from taxi_assets_tests.databases import (
    EVERY_WAREHOUSE,
    Db,
    admin_connection,
    dbt_schema,
    postgres_warehouse_at,
)
from taxi_assets_tests.helpers import under_ci
from taxi_assets_tests.mirror import Mirror, SourceHandler
from taxi_assets_tests.runs import materialize_load

pytest_plugins = ["taxi_assets_tests.gcp_emulators"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "warehouse" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "every_warehouse"
    ):
        metafunc.parametrize("warehouse", EVERY_WAREHOUSE, indirect=True)


@pytest.fixture(scope="session")
def test_database() -> Iterator[str]:
    """A database of its own for this test session, dropped afterwards."""
    try:
        admin = admin_connection()
    except psycopg.OperationalError as error:
        if under_ci():
            pytest.fail(f"PostgreSQL is required under CI=true and is not reachable: {error}")
        pytest.skip(f"PostgreSQL is not reachable: {error}")
    name = f"taxi_assets_test_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    with admin_connection() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_warehouse(test_database: str) -> Iterator[PostgresWarehouse]:
    """The PostgreSQL warehouse resource on a fresh schema, dropped after the test."""
    warehouse = postgres_warehouse_at(test_database, f"t_{uuid.uuid4().hex[:10]}")
    yield warehouse
    with admin_connection(test_database) as connection:
        for schema in (warehouse.sql_schema, dbt_schema(warehouse.sql_schema)):
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def duckdb_warehouse(tmp_path: Path) -> DuckDBWarehouse:
    """The DuckDB warehouse resource on a file of the test's own."""
    return DuckDBWarehouse(path=str(tmp_path / "warehouse" / "taxi.duckdb"))


@pytest.fixture
def warehouse(request: pytest.FixtureRequest) -> TaxiWarehouse:
    """PostgreSQL, or each warehouse in turn where the test is marked `every_warehouse`."""
    return request.getfixturevalue(f"{getattr(request, 'param', 'postgres')}_warehouse")


@pytest.fixture
def db(warehouse: TaxiWarehouse) -> Iterator[Db]:
    reader = Db(warehouse)
    yield reader
    reader.close()


@pytest.fixture(scope="session")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving a temporary directory: its root and URL."""
    root = tmp_path_factory.mktemp("http_root")
    server, url = serve_directory(root, SourceHandler)
    yield root, url
    server.shutdown()
    server.server_close()


@pytest.fixture
def mirror(http_root: tuple[Path, str]) -> Mirror:
    return Mirror.on(http_root)


@pytest.fixture
def load(mirror: Mirror, warehouse: TaxiWarehouse) -> Callable[..., dg.ExecuteInProcessResult]:
    """Materialise one partition from the test's mirror into its warehouse, the way a run does
    (assets + checks), in this process: `load("2019-01|green", raise_on_error=False, …)`."""

    def _load(key: str, **kwargs) -> dg.ExecuteInProcessResult:
        return materialize_load(key, mirror.source(), warehouse, **kwargs)

    return _load
