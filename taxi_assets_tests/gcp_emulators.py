"""Local GCS and BigQuery emulators for the cloud-path tests (pytest plugin, loaded by conftest).

`gcp-storage-emulator` serves GCS; `bqemulator` (BigQuery on DuckDB) serves BigQuery and reads
what was uploaded to GCS through BQEMU_GCS_LOCAL_ROOT. Two shims patch the emulator, here in test
setup only, never in the product code path:
1. its DuckDB `spatial` extension is downloaded at start-up: made optional (offline);
2. it accepts CREATE EXTERNAL TABLE but leaves the table empty: the shim fills it from the
   gs:// files right after the DDL (a snapshot, not a live view).
"""

import contextlib
import re
import uuid
from pathlib import Path

import pytest
import sqlglot
from bqemulator.api.routes import jobs as _routes
from bqemulator.jobs import executor as _executor
from bqemulator.storage import engine as _engine
from bqemulator.storage.sql_identifiers import quoted_table_ref
from sqlglot import exp

from taxi_assets.warehouses.bigquery import BigQueryWarehouse
from taxi_assets_testkit.local_servers import free_port

_load_spatial = _engine.DuckDBEngine._load_spatial


def _spatial_optional(self) -> None:
    with contextlib.suppress(Exception):  # offline: only GEOGRAPHY / ST_* functions are lost
        _load_spatial(self)


_engine.DuckDBEngine._load_spatial = _spatial_optional

_EXTERNAL = re.compile(r"^\s*CREATE\s+(OR\s+REPLACE\s+)?EXTERNAL\s+TABLE", re.IGNORECASE)
_execute_query_job = _routes.execute_query_job


async def _fill_external_tables(project_id, job_id, bq_sql, query_params, ctx, **kwargs):
    meta = await _execute_query_job(project_id, job_id, bq_sql, query_params, ctx, **kwargs)
    if _EXTERNAL.match(bq_sql):
        node = sqlglot.parse_one(bq_sql, read="bigquery")
        table = node.find(exp.Table)
        properties = node.find_all(exp.Property)
        options = {p.name.lower(): p.args.get("value") for p in properties if p.name}
        skip = int(options["skip_leading_rows"].name) if "skip_leading_rows" in options else 0
        ref = quoted_table_ref(table.catalog or project_id, table.db, table.name)
        async with ctx.engine.write_lock():
            ctx.engine.execute(f"DELETE FROM {ref}")
            for uri in (e.name for e in options["uris"].expressions):
                ctx.engine.execute(
                    f"INSERT INTO {ref} SELECT * FROM read_csv(?, skip={skip}, header=false, "
                    "all_varchar=true)",
                    [_executor._resolve_uri(uri, ctx)],
                )
    return meta


_routes.execute_query_job = _fill_external_tables


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    from gcp_storage_emulator.server import create_server

    data_dir, port = tmp_path_factory.mktemp("gcs"), free_port()
    server = create_server("127.0.0.1", port, in_memory=False, data_dir=str(data_dir))
    server.start()
    patch = pytest.MonkeyPatch()
    patch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    yield {"url": f"http://127.0.0.1:{port}", "root": Path(data_dir) / ".cloudstorage"}
    patch.undo()
    server.stop()


@pytest.fixture(scope="session")
def bqemu_settings(gcs_emulator):
    """Overrides bqemulator's plugin fixture: in-process, ephemeral, reading the GCS emulator."""
    from bqemulator.config import PersistenceMode, Settings

    return Settings(
        persistence_mode=PersistenceMode.EPHEMERAL,
        rest_host="127.0.0.1",
        rest_port=0,
        grpc_host="127.0.0.1",
        grpc_port=0,
        gcs_local_root=gcs_emulator["root"],
        enable_format_extensions=False,
    )


@pytest.fixture
def bigquery_warehouse(bqemu_endpoint, gcs_emulator) -> BigQueryWarehouse:
    """A dataset and a bucket of the test's own (created by the setup job in the tests)."""
    name = uuid.uuid4().hex[:8]
    return BigQueryWarehouse(
        project="test-project",
        dataset=f"taxi_{name}",
        bucket=f"taxi-{name}",
        api_endpoint=bqemu_endpoint.rest_url,
    )
