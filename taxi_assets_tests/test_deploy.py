"""The docker compose stack, checked as far as this machine allows (it has no Docker engine):
its dagster.yaml runs a real partition on a real DagsterInstance with PostgreSQL storage, and
the compose file, Dockerfile and .env.example agree with each other and with the code."""

import re
import uuid
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml

from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import GREEN
from taxi_assets.variables import BY_NAME, READ_BY_CODE, VARIABLES
from taxi_assets_testkit.local_servers import PG
from taxi_assets_testkit.synthetic import write_month
from taxi_assets_tests.helpers import rows_per_file

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
ENV_EXAMPLE = {
    line.split("=", 1)[0]
    for line in (ROOT / ".env.example").read_text().splitlines()
    if line and not line.startswith("#")
}


@pytest.fixture
def storage_database(test_database):
    """A database for Dagster's own storage, as the stack's warehouse server holds one."""
    name = f"dagster_storage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_stack_instance_runs_a_partition_on_postgres_storage(
    storage_database, monkeypatch, tmp_path, mirror, load, db
):
    for name, value in {
        "DAGSTER_PG_HOST": PG["host"],
        "DAGSTER_PG_PORT": str(PG["port"]),
        "DAGSTER_PG_USER": PG["user"],
        "DAGSTER_PG_PASSWORD": PG["password"] or "unused-with-trust-auth",
        "DAGSTER_PG_DB": storage_database,
    }.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "dagster.yaml").write_text((ROOT / "docker" / "dagster.yaml").read_text())
    write_month(mirror.directory, GREEN, TaxiPartition("green", "2019-01"), 321)

    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        result = load("2019-01|green", instance=instance)
        storage = type(instance.run_storage).__name__
        pools = instance.get_concurrency_config().pool_config

    assert result.success
    assert storage == "PostgresRunStorage"
    assert (pools.default_pool_limit, pools.pool_granularity.value) == (2, "run")
    with psycopg.connect(dbname=storage_database, **PG) as storage_db:
        run = storage_db.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,))
        assert run.fetchone() == ("SUCCESS",)
    assert rows_per_file(db, "green_tripdata") == {"green_tripdata_2019-01.csv": 321}


def test_the_stack_and_dagster_dev_share_their_settings():
    dev = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    stack = yaml.safe_load((ROOT / "docker" / "dagster.yaml").read_text())
    for section in ("run_coordinator", "concurrency", "run_retries", "telemetry", "python_logs",
                    "run_launcher", "run_monitoring"):  # fmt: skip
        assert stack[section] == dev[section], section
    assert "storage" not in dev  # dagster dev keeps its own SQLite storage in DAGSTER_HOME


def test_compose_services_ports_healthchecks_and_order():
    services = COMPOSE["services"]
    assert set(services) == {"warehouse", "dagster-webserver", "dagster-daemon", "pgadmin"}
    assert services["pgadmin"]["profiles"] == ["pgadmin"]
    local = "${PUBLISH_ADDRESS:-127.0.0.1}"  # this machine only, unless the user says otherwise
    assert f"{local}:${{DAGSTER_PORT:-3000}}:3000" in services["dagster-webserver"]["ports"]
    assert f"{local}:${{WAREHOUSE_PORT:-5432}}:5432" in services["warehouse"]["ports"]
    assert f"{local}:${{PGADMIN_PORT:-8085}}:80" in services["pgadmin"]["ports"]
    for name in ("warehouse", "dagster-webserver"):
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    for name in ("dagster-webserver", "dagster-daemon", "pgadmin"):
        assert services[name]["depends_on"] == {"warehouse": {"condition": "service_healthy"}}
    assert services["dagster-webserver"]["command"][0] == "dagster-webserver"
    assert services["dagster-daemon"]["command"][:2] == ["dagster-daemon", "run"]
    named_volumes = set(COMPOSE["volumes"])
    assert "warehouse-data:/var/lib/postgresql/data" in services["warehouse"]["volumes"]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in named_volumes or (ROOT / source).exists(), volume


def test_compose_and_code_variables_are_all_in_env_example():
    compose_text = (ROOT / "docker-compose.yml").read_text()
    in_compose = set(re.findall(r"(?<!\$)\$\{(\w+)", compose_text))  # not $${container vars}
    code = "\n".join(p.read_text() for p in (ROOT / "taxi_assets").rglob("*.py"))
    in_code = set(re.findall(r'settings\.bound\("(\w+)"', code))
    dbt = (ROOT / "dbt_project" / "profiles.yml").read_text()
    in_dbt = set(re.findall(r"env_var\('(\w+)'", dbt))
    assert in_compose and in_dbt
    assert in_code and in_code <= set(
        READ_BY_CODE
    )  # the resources' variables are among the settings'
    assert (in_compose | set(READ_BY_CODE) | in_dbt) - ENV_EXAMPLE == set()


def test_dockerfile_copies_what_exists_and_the_stack_uses_its_dagster_yaml():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), line
    assert 'COPY docker/dagster.yaml "$DAGSTER_HOME/dagster.yaml"' in dockerfile
    assert COMPOSE["x-dagster"]["build"] == "."
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["python_module"]["module_name"] == "taxi_assets.definitions"


def test_compose_passes_every_variable_of_a_postgres_stack_with_the_tables_defaults():
    """The Dagster services get every variable the code reads but DuckDB's and BigQuery's (the
    stack's warehouse is PostgreSQL), each defaulting as the table does, but where the stack
    has its own (its role, its database, its server)."""
    environment = COMPOSE["x-dagster"]["environment"]
    not_in_the_stack = {
        v.name for v in VARIABLES if v.name.startswith("TAXI_DUCKDB_") or v.only_for == "bigquery"
    }
    stacks_own = {"TAXI_WAREHOUSE", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"}

    assert set(READ_BY_CODE) - not_in_the_stack <= set(environment)
    for name in set(READ_BY_CODE) - not_in_the_stack - stacks_own:
        assert environment[name] == f"${{{name}:-{BY_NAME[name].default}}}", name
