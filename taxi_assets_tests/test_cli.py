"""The terminal path: `dagster asset materialize` as docs/operations.md shows it, in a subprocess,
and a `kill -9` of that process in the middle of a load."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from taxi_assets.assets import TRIPS
from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import GREEN
from taxi_assets_testkit.dagster_dev import ROOT, DagsterDev
from taxi_assets_testkit.local_servers import PG
from taxi_assets_testkit.synthetic import csv_lines, generate_rows, write_csv_gz, write_month
from taxi_assets_tests.databases import Db, warehouse_env
from taxi_assets_tests.helpers import fingerprint, rows_per_file

JAN = TaxiPartition("green", "2019-01")
DAGSTER = Path(sys.executable).parent / "dagster"
DG = Path(sys.executable).parent / "dg"
# The command of docs/operations.md, with the partition as the only variable part.
MATERIALIZE = [
    str(DAGSTER), "asset", "materialize", "-m", "taxi_assets.definitions",
    "--select", "taxi_trips_staging,taxi_trips", "--partition",
]  # fmt: skip


def _env(warehouse, mirror, dagster_home: Path) -> dict[str, str]:
    """What that command runs with: the warehouse's variables, the test's mirror, a
    Dagster home of its own."""
    dagster_home.mkdir(exist_ok=True)
    return {
        **os.environ,
        **warehouse_env(warehouse),
        "DAGSTER_HOME": str(dagster_home),
        "TAXI_SOURCE_URL": mirror.url,
    }


def test_readme_cli_command_loads_a_partition(mirror, warehouse, db, tmp_path):
    write_month(mirror.directory, GREEN, JAN, 1_234)

    done = subprocess.run(
        [*MATERIALIZE, "2019-01|green"],
        env=_env(warehouse, mirror, tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert "RUN_SUCCESS" in done.stderr
    assert rows_per_file(db, "green_tripdata") == {"green_tripdata_2019-01.csv": 1_234}


def _backend_query(db: psycopg.Connection, database: str) -> str | None:
    row = db.execute(
        "SELECT query FROM pg_stat_activity WHERE datname = %s "
        "AND application_name = 'taxi_assets' AND state = 'active'",
        (database,),
    ).fetchone()
    return row[0] if row else None


@pytest.mark.parametrize("kill_during", ["COPY", "INSERT", "ALTER TABLE"])
def test_kill_9_mid_load_leaves_no_partial_partition(mirror, warehouse, db, tmp_path, kill_during):
    """Killed while copying, while building the month's new partition, and in the swap (held
    there by a long reader, so the swap is caught waiting for the table)."""
    env = _env(warehouse, mirror, tmp_path / "home")
    write_month(mirror.directory, GREEN, JAN, 500, seed=1)
    subprocess.run([*MATERIALIZE, "2019-01|green"], env=env, check=True, capture_output=True)
    before = fingerprint(db, "green_tripdata")
    # A much bigger new version of the file: 40,000 distinct rows written 12 times over (the
    # swap waits for the reader whatever the size: there, once is enough).
    copies = 1 if kill_during == "ALTER TABLE" else 12
    rows = list(generate_rows(GREEN, JAN, 40_000, seed=2))
    write_csv_gz(mirror.path(JAN), csv_lines(GREEN, rows * copies))

    long_reader = psycopg.connect(dbname=warehouse.database, **PG)
    if kill_during == "ALTER TABLE":
        long_reader.execute(f'SELECT count(*) FROM "{warehouse.sql_schema}".green_tripdata')
    run = subprocess.Popen(
        [*MATERIALIZE, "2019-01|green"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while (query := _backend_query(db, warehouse.database)) is None or not query.startswith(
        kill_during
    ):
        assert run.poll() is None, f"the run ended before it reached {kill_during}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    long_reader.close()
    deadline = time.monotonic() + 60
    while _backend_query(db, warehouse.database) is not None:  # the server notices and rolls back
        assert time.monotonic() < deadline, "the killed run's session is still active after 60 s"
        time.sleep(0.05)

    assert fingerprint(db, "green_tripdata") == before
    # Nothing is stuck: the next run gets the partition lock and loads the new file whole.
    subprocess.run([*MATERIALIZE, "2019-01|green"], env=env, check=True, capture_output=True)
    assert rows_per_file(db, "green_tripdata") == {"green_tripdata_2019-01.csv": 40_000 * copies}


def test_kill_9_mid_load_leaves_the_duckdb_file_as_it_was(mirror, duckdb_warehouse, tmp_path):
    """DuckDB replaces the file's rows in one open transaction: killed while it inserts them,
    the file comes back as it was, and the next run loads the new file whole."""
    env = _env(duckdb_warehouse, mirror, tmp_path)
    db = Db(duckdb_warehouse)
    write_month(mirror.directory, GREEN, JAN, 500, seed=1)
    subprocess.run([*MATERIALIZE, "2019-01|green"], env=env, check=True, capture_output=True)
    before = fingerprint(db, "green_tripdata")
    rows = list(generate_rows(GREEN, JAN, 40_000, seed=2))
    write_csv_gz(mirror.path(JAN), csv_lines(GREEN, rows * 24))

    run = subprocess.Popen(
        [*MATERIALIZE, "2019-01|green"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for line in run.stderr:  # the run's log
        if "download done" in line:
            break
    time.sleep(0.5)  # into the insert of 960,000 rows (~3 s here)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert "stage done" not in run.stderr.read(), "killed too late: after the insert"
    run.stderr.close()

    assert fingerprint(db, "green_tripdata") == before
    subprocess.run([*MATERIALIZE, "2019-01|green"], env=env, check=True, capture_output=True)
    assert rows_per_file(db, "green_tripdata") == {"green_tripdata_2019-01.csv": 960_000}


@pytest.mark.parametrize("interrupt", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_stops_the_run_and_is_not_retried(mirror, warehouse, db, tmp_path, interrupt):
    """Ctrl-C or a SIGTERM (what the UI's Terminate sends the run process) in the middle of a
    load ends the run at once: no retry of the step (Dagster's retry policy would otherwise take
    the interrupt for a failure), nothing loaded."""
    write_month(mirror.directory, GREEN, JAN, 500)
    mirror.slow_down(60)  # the run waits in its download
    run = subprocess.Popen(
        [*MATERIALIZE, "2019-01|green"], env=_env(warehouse, mirror, tmp_path / "home"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for line in run.stderr:
        if 'Started execution of step "load_taxi_trips"' in line:
            break
    time.sleep(1.0)

    run.send_signal(interrupt)
    try:
        returncode = run.wait(timeout=30)
    finally:
        run.kill()
        mirror.slow_down(0)
    output = run.stderr.read()
    run.stderr.close()

    assert returncode != 0
    assert "interrupted" in output
    assert "STEP_UP_FOR_RETRY" not in output and "STEP_RESTARTED" not in output
    assert not db.table_exists("green_tripdata") or rows_per_file(db, "green_tripdata") == {}


def _project_with_its_home(tmp_path: Path) -> Path:
    """A copy of the project's top-level files after `make home`, as a new user's clone has
    them after any `make` command."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Makefile", "dagster.yaml", "pyproject.toml"):
        shutil.copyfile(ROOT / name, project / name)
    env = {name: value for name, value in os.environ.items() if name != "DAGSTER_HOME"}
    subprocess.run(["make", "home"], cwd=project, env=env, check=True, capture_output=True)
    return project


@pytest.mark.dagster_dev
def test_make_demo_the_cli_and_make_dev_share_the_project_home(mirror, warehouse, tmp_path):
    """Loads from the documented terminal commands show in the UI that `make dev` starts, with no
    DAGSTER_HOME exported; an exported DAGSTER_HOME still wins."""
    project = _project_with_its_home(tmp_path)
    home = project / ".dagster_home"
    write_month(mirror.directory, GREEN, JAN, 1_234)
    write_month(mirror.directory, GREEN, TaxiPartition("green", "2019-02"), 321)
    env = {
        **{name: value for name, value in os.environ.items() if name != "DAGSTER_HOME"},
        **warehouse_env(warehouse),
        "TAXI_SOURCE_URL": mirror.url,
    }

    launched = subprocess.run(
        [str(DG), "launch", "--job", "taxi_trips_job", "--partition", "2019-01|green"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    materialized = subprocess.run(
        [*MATERIALIZE, "2019-02|green"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert launched.returncode == 0, launched.stderr[-3000:]
    assert materialized.returncode == 0, materialized.stderr[-3000:]
    instance = dg.DagsterInstance.from_config(str(home))
    assert instance.get_materialized_partitions(TRIPS) == {"2019-01|green", "2019-02|green"}
    assert {run.job_name for run in instance.get_runs()} == {"taxi_trips_job", "__ASSET_JOB"}
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 2  # dagster.yaml
    # A terminal run says what it does in a few lines: no warnings, no engine events.
    output = launched.stdout + launched.stderr
    assert "Warning" not in output and " - DEBUG - " not in output, output
    for line in ("download done in", "stage done in", "merge done in", "1,234 rows in"):
        assert line in output, line

    with DagsterDev(home, env, tmp_path / "dev.log", project, home_from_env_file=True) as server:
        assert server.materialized_partitions("taxi_trips") == 2

    other_home = tmp_path / "other_home"
    other_home.mkdir()
    subprocess.run(
        [*MATERIALIZE, "2019-01|green"],
        cwd=project, env={**env, "DAGSTER_HOME": str(other_home)}, check=True, capture_output=True,
    )  # fmt: skip
    assert len(dg.DagsterInstance.from_config(str(other_home)).get_runs()) == 1
    # (the UI's daemon may have started a dbt run after the loads: `taxi_dbt_after_loads`)
    assert len([run for run in instance.get_runs() if run.job_name != "taxi_dbt_job"]) == 2


def test_dg_lists_and_checks_the_definitions_from_the_project_folder(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    listed = subprocess.run(
        [str(DG), "list", "defs", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    checked = subprocess.run(
        [str(DG), "check", "defs"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )

    assert listed.returncode == 0, listed.stderr[-3000:]
    definitions = json.loads(listed.stdout)
    jobs = {job["name"] for job in definitions["jobs"]}
    assert jobs == {"taxi_trips_job", "getting_started_job"}  # dbt: a location of its own
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    assert "Warning" not in checked.stdout + checked.stderr


def test_make_dev_takes_a_port():
    dry_run = subprocess.run(
        ["make", "-n", "dev", "PORT=3001"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    # (Under `make test`, make also prints the directories it enters: find the command.)
    commands = [line for line in dry_run.stdout.splitlines() if "dagster dev" in line]
    assert len(commands) == 1
    assert commands[0].endswith("bin/dagster dev -w workspace.yaml -p 3001")


def test_make_home_adds_one_line_to_env_and_keeps_the_users_lines(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copyfile(ROOT / "Makefile", project / "Makefile")
    shutil.copyfile(ROOT / "dagster.yaml", project / "dagster.yaml")
    (project / ".env").write_text("PGPASSWORD=s3cret")  # no line break at the end
    env = {name: value for name, value in os.environ.items() if name != "DAGSTER_HOME"}

    for _ in range(2):
        subprocess.run(["make", "home"], cwd=project, env=env, check=True, capture_output=True)

    lines = (project / ".env").read_text().splitlines()
    assert lines[0] == "PGPASSWORD=s3cret"
    assert [line for line in lines if "DAGSTER_HOME=" in line] == [
        f"DAGSTER_HOME=${{DAGSTER_HOME:-{project}/.dagster_home}}"
    ]
    assert (project / ".dagster_home" / "dagster.yaml").read_text() == (
        ROOT / "dagster.yaml"
    ).read_text()
    (project / ".env").write_text("export DAGSTER_HOME=/elsewhere\n")  # the user's own choice
    subprocess.run(["make", "home"], cwd=project, env=env, check=True, capture_output=True)
    assert (project / ".env").read_text() == "export DAGSTER_HOME=/elsewhere\n"
