"""The terminal path: `dagster asset materialize` as the README shows it, in a subprocess,
and a `kill -9` of that process in the middle of a load."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import GREEN
from taxi_assets_tests.conftest import PG
from taxi_assets_tests.helpers import fingerprint, rows_per_file
from taxi_assets_tests.synthetic import csv_lines, generate_rows, write_csv_gz, write_month

JAN = TaxiPartition("green", "2019-01")
DAGSTER = Path(sys.executable).parent / "dagster"
# The README's command, with the partition as the only variable part.
MATERIALIZE = [
    str(DAGSTER), "asset", "materialize", "-m", "taxi_assets.definitions",
    "--select", "taxi_trips_staging,taxi_trips", "--partition",
]  # fmt: skip


def _env(warehouse, mirror, dagster_home: Path) -> dict[str, str]:
    dagster_home.mkdir(exist_ok=True)
    return {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "TAXI_SOURCE_URL": mirror.url,
        "TAXI_WAREHOUSE": "postgres",
        "PGHOST": PG["host"],
        "PGPORT": str(PG["port"]),
        "PGUSER": PG["user"],
        "PGDATABASE": warehouse.database,
        "TAXI_PG_SCHEMA": warehouse.target_schema,
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
        long_reader.execute(f'SELECT count(*) FROM "{warehouse.target_schema}".green_tripdata')
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
    while _backend_query(db, warehouse.database) is not None:  # the server notices and rolls back
        time.sleep(0.05)

    assert fingerprint(db, "green_tripdata") == before
    # Nothing is stuck: the next run gets the partition lock and loads the new file whole.
    subprocess.run([*MATERIALIZE, "2019-01|green"], env=env, check=True, capture_output=True)
    assert rows_per_file(db, "green_tripdata") == {"green_tripdata_2019-01.csv": 40_000 * copies}
