"""The configuration as shipped: `.env.example`, and the environment docker compose gives the
Dagster services, filled in only where a user must. Each loads both code locations and a real
partition in a process of its own with exactly that environment (the resources read their
`dg.EnvVar`s from the process environment), and every variable with a bad value stops the code
location from loading with one line naming it."""

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import duckdb
import psycopg
import pytest
import yaml
from dotenv import dotenv_values

from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import GREEN
from taxi_assets.variables import CODE, VARIABLES, any_text
from taxi_assets.warehouses.bigquery import BigQueryWarehouse
from taxi_assets_testkit.local_servers import PG
from taxi_assets_testkit.synthetic import write_month
from taxi_assets_tests.databases import admin_connection

ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = ROOT / ".env.example"
COMPOSE = ROOT / "docker-compose.yml"
# The repository's real month, in the release's layout (95,120 trips).
SAMPLE_SOURCE = ROOT / "sample_source"
SAMPLE_PARTITION = TaxiPartition("green", "2020-10")
SAMPLE_ROWS = 95_120
# What the user sets in the file before anything works (compose refuses to start without it).
USER_PASSWORD = PG["password"] or "a-password-of-the-users"
# What a process needs besides the configuration under test.
PROCESS_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")

# Variables no start-up check can judge (any host, role, password, project: the server judges
# them), or that another tool reads (dbt, Google's libraries, docker compose): the table says.
NOT_CHECKED = {v.name for v in VARIABLES if v.parse is any_text or v.read_by != CODE}
# Set by the compose file itself for Dagster's storage (docker/dagster.yaml).
COMPOSE_ONLY = {"DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD"}
SECRET_KEY = '{"type": "service_account", "private_key": "s3cr3t-key-material"'
# One bad value of each variable that can have one, and the warehouse that reads it.
BAD_VALUES = [
    ("TAXI_WAREHOUSE", "oracle", "postgres"),
    ("PGPORT", "abc", "postgres"),
    ("PGPORT", "0", "postgres"),
    ("PGPORT", "65536", "postgres"),
    ("TAXI_PG_DEAD_CONNECTION_SECONDS", "0", "postgres"),
    ("TAXI_PG_DEAD_CONNECTION_SECONDS", "99999999", "postgres"),
    ("TAXI_PG_SCHEMA", 'we"ird', "postgres"),
    ("TAXI_DBT_SCHEMA", 'we"ird', "postgres"),
    ("TAXI_DUCKDB_SCHEMA", 'we"ird', "duckdb"),
    ("TAXI_DUCKDB_PATH", "sample_source", "duckdb"),
    ("TAXI_DUCKDB_MEMORY_LIMIT", "lots", "duckdb"),
    ("TAXI_DOWNLOAD_MIN_RATE", "-1", "postgres"),
    ("TAXI_DOWNLOAD_MIN_RATE", "16k", "postgres"),
    ("TAXI_MAX_ROWS", "0", "postgres"),
    ("TAXI_MAX_ROWS", "1e6", "postgres"),
    ("TAXI_RETRY_DELAY_SECONDS", "soon", "postgres"),
    ("TAXI_RETRY_DELAY_SECONDS", "nan", "postgres"),
    ("TAXI_RETRY_DELAY_SECONDS", "inf", "postgres"),
    ("TAXI_RETRY_DELAY_SECONDS", "99999999", "postgres"),
    ("TAXI_RETRY_DELAY_SECONDS", "-1", "postgres"),
    ("TAXI_SCHEDULE_TIMEZONE", "Mars/Olympus_Mons", "postgres"),
    ("TAXI_SCHEDULE_MONTH", "next", "postgres"),
    ("TAXI_SOURCE_KIND", "parquet", "postgres"),
    ("TAXI_SOURCE_URL", "s3://nyc-tlc/trip data", "postgres"),
    ("TAXI_TLC_URL", "ftp://mirror.example/trip-data", "postgres"),
    ("PRODUCTS_URL", "ftp://mirror.example/products", "duckdb"),
    # A local source that is not there: not "not published" on every month later.
    ("TAXI_SOURCE_URL", "/no/such/mirror", "duckdb"),
    ("TAXI_TLC_URL", "file:///no/such/mirror", "duckdb"),
    ("PRODUCTS_URL", "/no/such/products.json", "duckdb"),
    ("GCP_CREDENTIALS_JSON", SECRET_KEY, "bigquery"),
    ("GCP_CREDENTIALS_JSON", '["s3cr3t-key-material"]', "bigquery"),
    ("GCP_DATASET", "my-dataset", "bigquery"),
    ("TAXI_DBT_SCHEMA", "taxi-models", "bigquery"),
    ("GCP_BUCKET_NAME", "My Bucket", "bigquery"),
    ("BIGQUERY_API_ENDPOINT", "localhost:9050", "bigquery"),
    ("GOOGLE_APPLICATION_CREDENTIALS", "/nowhere/key.json", "bigquery"),
]
SECRETS = ("PGPASSWORD", "GCP_CREDENTIALS_JSON", "DBT_BIGQUERY_TOKEN")
# Valid values other than the shipped ones, of every numeric variable.
OTHER_NUMBERS = {
    "PGPORT": str(PG["port"]),
    "TAXI_PG_DEAD_CONNECTION_SECONDS": "30",
    "TAXI_MAX_ROWS": "1000000",
    "TAXI_DOWNLOAD_MIN_RATE": "0",
    "TAXI_RETRY_DELAY_SECONDS": "0.5",
}

LOAD = """
import sys, dagster as dg
import taxi_assets.definitions as loads, taxi_assets.dbt_definitions as models
for defs in (loads.defs, models.defs):
    dg.Definitions.validate_loadable(defs)
for job in sys.argv[1:]:
    name, _, key = job.partition(":")
    result = loads.defs.resolve_job_def(name).execute_in_process(partition_key=key or None)
    assert result.success, name
print("loaded")
"""
RESOLVED = """
import json, dagster as dg
import taxi_assets.definitions as loads, taxi_assets.dbt_definitions as models
from taxi_assets.resources import operator_settings
for defs in (loads.defs, models.defs):
    dg.Definitions.validate_loadable(defs)
bound = {name: loads.defs.resources[name] for name in ("warehouse", "source")}
with dg.build_resources(bound) as built:
    print(json.dumps({
        "PGPORT": built.warehouse.port,
        "TAXI_PG_DEAD_CONNECTION_SECONDS": built.warehouse.dead_connection_seconds,
        "TAXI_MAX_ROWS": built.source.max_rows,
        "TAXI_DOWNLOAD_MIN_RATE": built.source.min_bytes_per_second,
        "bound_to": operator_settings(bound["warehouse"])["port"]["env"],
    }))
"""


def env_example() -> dict[str, str]:
    """`.env.example` as shipped, as dotenv reads it in a shell that exports none of its
    variables (each line is `NAME=${NAME:-value}`)."""
    shipped = dotenv_values(ENV_EXAMPLE, interpolate=False)
    return {name: interpolated(value or "", {}) for name, value in shipped.items()}


def compose_environment() -> dict[str, str]:
    """The `environment:` block of the Dagster services (`x-dagster`), not interpolated."""
    block = yaml.safe_load(COMPOSE.read_text())["x-dagster"]["environment"]
    return {name: str(value) for name, value in block.items()}


def interpolated(value: str, dotenv: Mapping[str, str]) -> str:
    """`${VAR:-default}` and `${VAR:?message}` as docker compose reads them from `.env`."""

    def one(match: re.Match) -> str:
        name, operator, argument = match.groups()
        if dotenv.get(name):
            return dotenv[name]
        if operator == ":?":
            raise ValueError(f"docker compose refuses to start: {argument}")
        return argument or ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def filled_in(database: str) -> dict[str, str]:
    """`.env.example` with what a user must fill in, its server the tests'."""
    return env_example() | {
        "PGPASSWORD": USER_PASSWORD,
        "PGHOST": PG["host"],
        "PGPORT": str(PG["port"]),
        "PGUSER": PG["user"],
        "PGDATABASE": database,
    }


def run_python(
    code: str, env: Mapping[str, str], cwd: Path, *args: str
) -> subprocess.CompletedProcess:
    """`code` in a process of its own with exactly `env` (and what any process needs)."""
    basics = {name: os.environ[name] for name in PROCESS_VARIABLES if name in os.environ}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**basics, **env}, cwd=cwd, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def load_and_run(env: Mapping[str, str], cwd: Path, *jobs: str) -> None:
    """Both code locations load, then each job runs (`name` or `name:partition`), and succeeds."""
    ran = run_python(LOAD, env, cwd, *jobs)
    assert ran.returncode == 0, ran.stderr[-4000:]
    assert ran.stdout.strip().splitlines()[-1] == "loaded"


def postgres_rows(database: str, table: str) -> int:
    with psycopg.connect(dbname=database, **PG) as connection:
        return connection.execute(f"SELECT count(*) FROM public.{table}").fetchone()[0]


@pytest.fixture
def database(test_database: str) -> Iterator[str]:
    """A database of the test's own on the tests' server, so that the shipped schema (public)
    is the test's alone; dropped afterwards."""
    name = f"taxi_shipped_{uuid.uuid4().hex[:8]}"
    with admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    with admin_connection() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_env_example_loads_the_real_month_into_postgres(database, tmp_path):
    env = filled_in(database) | {
        "TAXI_WAREHOUSE": "postgres",
        "TAXI_SOURCE_URL": str(SAMPLE_SOURCE),
        "TAXI_DUCKDB_PATH": str(tmp_path / "taxi.duckdb"),
    }

    load_and_run(env, tmp_path, f"taxi_trips_job:{SAMPLE_PARTITION.key}")

    assert postgres_rows(database, "green_tripdata") == SAMPLE_ROWS


def test_env_example_loads_the_real_month_into_duckdb(database, tmp_path):
    duckdb_file = tmp_path / "taxi_rides_ny.duckdb"
    env = filled_in(database) | {
        "TAXI_WAREHOUSE": "duckdb",
        "TAXI_SOURCE_URL": str(SAMPLE_SOURCE),
        "TAXI_DUCKDB_PATH": str(duckdb_file),
    }

    load_and_run(env, tmp_path, f"taxi_trips_job:{SAMPLE_PARTITION.key}")

    schema = env_example()["TAXI_DUCKDB_SCHEMA"]
    with duckdb.connect(str(duckdb_file), read_only=True) as connection:
        rows = connection.execute(f"SELECT count(*) FROM {schema}.green_tripdata").fetchone()[0]
    assert rows == SAMPLE_ROWS


@pytest.mark.emulators
def test_env_example_loads_a_month_into_bigquery_on_the_emulators(
    database, tmp_path, bqemu_endpoint, gcs_emulator
):
    """The values the file's comments ask for on an emulator; a small month (the emulator is
    slow), the setup job first."""
    name = uuid.uuid4().hex[:8]
    write_month(tmp_path / "source", GREEN, SAMPLE_PARTITION, 300)
    env = filled_in(database) | {
        "TAXI_WAREHOUSE": "bigquery",
        "GCP_PROJECT_ID": "test-project",
        "GCP_BUCKET_NAME": f"taxi-shipped-{name}",
        "GCP_DATASET": f"zoomcamp_{name}",
        "BIGQUERY_API_ENDPOINT": bqemu_endpoint.rest_url,
        "STORAGE_EMULATOR_HOST": gcs_emulator["url"],
        "DBT_BIGQUERY_METHOD": "oauth-secrets",
        "DBT_BIGQUERY_TOKEN": "dummy-token",
        "TAXI_SOURCE_URL": str(tmp_path / "source"),
        "TAXI_DUCKDB_PATH": str(tmp_path / "taxi.duckdb"),
    }

    load_and_run(env, tmp_path, "gcp_setup_job", f"taxi_trips_job:{SAMPLE_PARTITION.key}")

    warehouse = BigQueryWarehouse(
        project=env["GCP_PROJECT_ID"], dataset=env["GCP_DATASET"],
        bucket=env["GCP_BUCKET_NAME"], api_endpoint=env["BIGQUERY_API_ENDPOINT"],
    )  # fmt: skip
    with warehouse.clients() as (bq, _):
        table = warehouse.table_id("green_tripdata")
        rows = list(bq.query(f"SELECT COUNT(*) AS n FROM {table}").result())
    assert rows[0]["n"] == 300


def test_compose_environment_loads_the_real_month_into_postgres(database, tmp_path):
    """Interpolated from the filled-in `.env` as compose does; only the server's address (the
    compose service `warehouse`) is the tests'."""
    dotenv = filled_in(database) | {"TAXI_SOURCE_URL": str(SAMPLE_SOURCE)}
    env = {name: interpolated(value, dotenv) for name, value in compose_environment().items()}
    assert (env["PGHOST"], env["PGPORT"]) == ("warehouse", "5432")
    env |= {"PGHOST": PG["host"], "PGPORT": str(PG["port"])}

    load_and_run(env, tmp_path, f"taxi_trips_job:{SAMPLE_PARTITION.key}")

    assert postgres_rows(database, "green_tripdata") == SAMPLE_ROWS


def test_other_valid_numbers_load_and_reach_the_resources(database, tmp_path):
    """Each numeric variable at a value other than its default: the code locations load with
    TAXI_WAREHOUSE=postgres, and the resources, bound to the variables by name, read them."""
    env = filled_in(database) | {"TAXI_WAREHOUSE": "postgres", **OTHER_NUMBERS}

    ran = run_python(RESOLVED, env, tmp_path)

    assert ran.returncode == 0, ran.stderr[-4000:]
    resolved = json.loads(ran.stdout.strip().splitlines()[-1])
    assert resolved.pop("bound_to") == "PGPORT"
    assert resolved == {name: int(OTHER_NUMBERS[name]) for name in resolved}


@pytest.mark.parametrize(("name", "value", "warehouse"), BAD_VALUES)
def test_a_bad_value_stops_the_code_location_with_one_line_naming_it(
    tmp_path, name, value, warehouse
):
    env = filled_in(env_example()["PGDATABASE"]) | {"TAXI_WAREHOUSE": warehouse, name: value}
    if name == "GCP_CREDENTIALS_JSON":
        env["DBT_BIGQUERY_TOKEN"] = "dummy-s3cr3t-token"

    ran = run_python(LOAD, env, tmp_path)

    assert ran.returncode != 0
    [line] = ran.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"{name}=")
    output = ran.stdout + ran.stderr
    for secret in SECRETS:
        if env.get(secret):
            assert env[secret] not in output, f"{secret}'s value is shown"
    if name in SECRETS:
        assert "s3cr3t-key-material" not in output


def test_every_variable_a_user_sets_has_a_bad_value_tried_or_a_reason_not_to():
    """A new variable in `.env.example` or compose's environment must be considered here."""
    shipped = set(env_example()) | set(compose_environment())
    tried = {name for name, _, _ in BAD_VALUES}
    considered = tried | NOT_CHECKED | COMPOSE_ONLY

    assert shipped - considered == set()
    assert tried & NOT_CHECKED == set()  # a bad value of a variable nothing checks
