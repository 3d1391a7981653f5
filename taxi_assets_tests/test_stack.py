"""The docker compose stack, run as the README tells a user to: a copy of the repository,
`cp .env.example .env` with the passwords set (and the host ports moved off this machine's own
5432), `docker compose up -d --build`, then the UI's GraphQL, a terminal backfill, the sensor,
restarts. The one change to what ships: an override file that mounts the repository's real month
(`sample_source/`) as the source, since the stack cannot download here.

The tests of this module run in order on one stack, as one user's session."""

import gzip
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from taxi_assets_testkit.local_servers import free_port
from taxi_assets_tests.compose_stack import (
    ROOT,
    ComposeStack,
    base_images,
    docker_config,
    docker_engine,
    filled_env_file,
    repository_copy,
    run,
)

pytestmark = pytest.mark.stack
IMAGE_LABEL = "org.opencontainers.image.title=taxi_assets"  # the Dockerfile's
MONTH = "2020-10|green"
SOURCE_FILE = ROOT / "sample_source" / "green" / "green_tripdata_2020-10.csv.gz"
OVERRIDE = """
services:
  dagster-webserver: &source
    volumes: ["./sample_source:/source:ro"]
    environment: {TAXI_SOURCE_URL: /source}
  dagster-daemon: *source
"""
FACTS_ROW_COUNT = """
{ assetNodeOrError(assetKey: {path: ["fact_trips"]}) { ... on AssetNode {
    assetMaterializations(limit: 1) { metadataEntries { label
      ... on IntMetadataEntry { intValue } } } } } }
"""

RUN_EVENTS = """
query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events { __typename } } } }
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The stack, up and healthy; taken down with its volumes afterwards."""
    work = tmp_path_factory.mktemp("stack")
    with docker_engine(work / "dockerd.log"):
        base_images(work / "images")
        stack = ComposeStack(repository_copy(work / "repo"), docker_config(work / "docker"))
        stack.ports = {"WAREHOUSE_PORT": free_port(), "DAGSTER_PORT": free_port()}
        example = (stack.project / ".env.example").read_text()
        (stack.project / ".env").write_text(
            filled_env_file(example, {"PGPASSWORD": stack.password,
                                      "PGADMIN_DEFAULT_PASSWORD": stack.password,
                                      **{name: str(port) for name, port in stack.ports.items()}})
        )  # fmt: skip
        (stack.project / "docker-compose.override.yml").write_text(OVERRIDE)
        try:
            stack.compose("up", "-d", "--build", "--wait", timeout=1500)
            yield stack
        finally:
            (ROOT / "test-artifacts").mkdir(exist_ok=True)
            (ROOT / "test-artifacts" / "stack.log").write_text(stack.logs())
            stack.compose("down", "--volumes", "--timeout", "20")
            # The images earlier builds left without a name (this project's only).
            run(["docker", "image", "prune", "--force", "--filter", f"label={IMAGE_LABEL}"])


def trip_rows(stack: ComposeStack) -> dict[str, int]:
    with stack.warehouse() as connection:
        rows = connection.execute("SELECT filename, count(*) FROM green_tripdata GROUP BY 1")
        return dict(rows.fetchall())


def data_lines() -> int:
    """The month's data lines, counted in the file the stack reads."""
    with gzip.open(SOURCE_FILE, "rt") as file:
        return sum(1 for _ in file) - 1


def terminal_backfill(stack: ComposeStack) -> subprocess.Popen:
    """The terminal backfill of the month (docs/operations.md), against the stack's UI."""
    month, taxi = MONTH.split("|")
    command = [sys.executable, "-m", "taxi_assets.backfill", month, month, "--taxi", taxi,
               "--url", stack.url]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def followed(backfill: subprocess.Popen, timeout: float = 600) -> str:
    output, _ = backfill.communicate(timeout=timeout)
    assert backfill.returncode == 0, output
    return output


def test_compose_refuses_to_start_until_the_passwords_are_set(tmp_path):
    project = repository_copy(tmp_path / "repo")
    (project / ".env").write_text((project / ".env.example").read_text())  # as shipped
    stack = ComposeStack(project, docker_config(tmp_path / "docker"))

    with pytest.raises(AssertionError, match=r"set PGPASSWORD in \.env"):
        stack.compose("config", "--quiet")


def test_both_code_locations_load(stack):
    entries = stack.wait_until_loaded()

    assert {entry["name"] for entry in entries} == {"taxi_assets", "taxi_dbt"}
    for entry in entries:
        assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry


def test_the_ui_and_the_warehouse_are_published_on_this_machine_only(stack):
    for service, port in (("dagster-webserver", "3000"), ("warehouse", "5432")):
        published = stack.compose("port", service, port).stdout.strip()
        assert published.rsplit(":", 1)[0] == "127.0.0.1", published


def test_the_pipelines_role_owns_its_databases_and_is_no_superuser(stack):
    """No `COPY … TO PROGRAM` for whoever has the pipeline's password, and the superuser is not
    reachable over the network at all (with that password or any)."""
    with stack.warehouse() as connection:
        superuser = connection.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("COPY (SELECT 1) TO PROGRAM 'true'")
    with stack.warehouse("dagster") as storage:
        owner = storage.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]

    assert superuser is False
    assert owner == "taxi"
    with pytest.raises(psycopg.OperationalError, match="rejects connection"):
        psycopg.connect(
            host="127.0.0.1", port=stack.ports["WAREHOUSE_PORT"], user="postgres",
            password=stack.password, dbname="postgres", connect_timeout=10,
        )  # fmt: skip


def test_a_terminal_backfill_loads_the_month(stack):
    output = followed(terminal_backfill(stack))

    assert "completed: 1 of 1 partitions loaded" in output
    assert trip_rows(stack) == {"green_tripdata_2020-10.csv": data_lines()}


def test_the_sensor_builds_the_months_facts_with_their_row_counts(stack):
    runs = stack.wait_for_run("taxi_dbt_job", count=1, timeout=600)

    assert [run["status"] for run in runs] == ["SUCCESS"]
    assert {(tag["key"], tag["value"]) for tag in runs[0]["tags"]} >= {
        ("dagster/sensor_name", "taxi_dbt_after_loads")
    }
    with stack.warehouse() as connection:
        facts = connection.execute(
            "SELECT count(*) FROM taxi_models.fact_trips "
            "WHERE pickup_datetime >= '2020-10-01' AND pickup_datetime < '2020-11-01'"
        ).fetchone()[0]
        every_fact = connection.execute("SELECT count(*) FROM taxi_models.fact_trips").fetchone()
    assert facts > 0
    [materialization] = stack.graphql(FACTS_ROW_COUNT)["assetNodeOrError"]["assetMaterializations"]
    metadata = {e["label"]: e.get("intValue") for e in materialization["metadataEntries"]}
    assert metadata["dagster/row_count"] == every_fact[0]


def test_the_stacks_logs_hold_no_traceback(stack):
    logs = stack.logs()

    assert "Traceback" not in logs, logs[logs.index("Traceback") - 2000 :][:6000]
    assert "cross-database references" not in logs


def test_a_restart_keeps_runs_and_rows(stack):
    runs, rows = {run["runId"] for run in stack.runs()}, trip_rows(stack)

    stack.compose("restart", timeout=300)
    stack.wait_until_loaded()

    assert {run["runId"] for run in stack.runs()} == runs
    assert trip_rows(stack) == rows


def test_down_and_up_keep_runs_and_rows(stack):
    runs, rows = {run["runId"] for run in stack.runs()}, trip_rows(stack)

    stack.compose("down", timeout=300)
    stack.compose("up", "-d", "--wait", timeout=600)
    stack.wait_until_loaded()

    assert {run["runId"] for run in stack.runs()} == runs
    assert trip_rows(stack) == rows


def test_a_warehouse_restarted_in_the_middle_of_a_load_leaves_the_month_whole(stack):
    """The reload stages the month, then waits for the table this test holds locked; the
    warehouse restarts under it; the step's retry loads the month again, whole."""
    with a_load_waiting_for_its_table(stack) as backfill:
        stack.compose("restart", "warehouse")  # ends the test's session too: the table is free
    output = followed(backfill)

    assert "completed: 1 of 1 partitions loaded" in output
    assert trip_rows(stack) == {"green_tripdata_2020-10.csv": data_lines()}
    loads = month_loads(stack)
    assert "ExecutionStepUpForRetryEvent" in event_types(stack, loads[0]["runId"])  # the newest


def test_a_daemon_restarted_in_the_middle_of_a_load_strands_no_run(stack):
    """The load waits for the table this test holds; the daemon's container restarts, and the
    run's process with it. Run monitoring finds the run gone and fails it: no run is left
    STARTED holding a pool slot, and the backfill ends by itself."""
    with a_load_waiting_for_its_table(stack) as backfill:
        stack.compose("restart", "dagster-daemon")
    # Whether the retry or the backfill's verdict comes first is Dagster's race: either way the
    # backfill ends, and the month is whole or as it was.
    output, _ = backfill.communicate(timeout=600)

    assert "backfill" in output and "completed" in output, output
    assert trip_rows(stack) == {"green_tripdata_2020-10.csv": data_lines()}
    # None of the month's loads is left holding a pool slot.
    assert {run["status"] for run in month_loads(stack)} <= {"SUCCESS", "FAILURE"}
    assert "Detected run worker status NOT_FOUND: 'its code server is gone'" in stack.logs()


@contextmanager
def a_load_waiting_for_its_table(stack: ComposeStack) -> Iterator[subprocess.Popen]:
    """A terminal backfill of the month whose load waits for the table this test holds locked,
    until the block ends (or the warehouse restarts in it)."""
    holder = stack.warehouse()
    try:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE green_tripdata IN ACCESS EXCLUSIVE MODE")
        backfill = terminal_backfill(stack)
        waiting_for_the_lock(stack)
        yield backfill
    finally:
        holder.close()  # (a rollback, unless the restart ended the session already)


def month_loads(stack: ComposeStack) -> list[dict]:
    """The runs that loaded the month, the newest first."""
    tag = {"key": "dagster/partition", "value": MONTH}
    return [run for run in stack.runs() if tag in run["tags"]]


def event_types(stack: ComposeStack, run_id: str) -> set[str]:
    events = stack.graphql(RUN_EVENTS, {"id": run_id})["logsForRun"]["events"]
    return {event["__typename"] for event in events}


def waiting_for_the_lock(stack: ComposeStack, timeout: float = 300) -> None:
    """Until a session of the stack waits for a table lock (the load's swap)."""
    deadline = time.monotonic() + timeout
    with stack.warehouse() as watcher:
        while True:
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'relation'"
            ).fetchone()[0]
            if waiting:
                return
            assert time.monotonic() < deadline, "no load waited for the locked table"
            time.sleep(0.2)
