"""Benchmark: one generated yellow month loaded every way, side by side, in one run.

    make bench
    python benchmarks/load_benchmark.py [--rows 2000000] [--months 12] [--month-rows 250000]

Every number comes from this run, on the same generated files and the same servers:
reference runs (a raw COPY, the Kestra flow's SQL verbatim, DuckDB's raw CSV reader) beside this
project's `dagster asset materialize` on PostgreSQL and DuckDB (its load step and each check, read
from the run's event log), a re-load, the same month from a TLC Parquet file, month 1 against
month N of a growing table, the CLI's fixed cost on a 20-row month, peak RSS and the import time
of the definitions. It prints a table with each goal's ratio; it asserts nothing. Needs
PostgreSQL (PG* variables); files are cached in `--cache`.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import psycopg

from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import YELLOW, id_columns
from taxi_assets_testkit.benchmarking import PG, Table, write_big_month
from taxi_assets_testkit.kestra_flow import (
    KESTRA_MERGE,
    UNIQUE_ROW_ID,
    YELLOW_COLUMNS,
    column_names,
    copy_in,
)

ROOT = Path(__file__).resolve().parent.parent
DAGSTER = str(Path(sys.executable).with_name("dagster"))
MONTH = TaxiPartition("yellow", "2019-01")
CHECKS = (
    "rows_match_source",
    "filename_not_null",
    "ids_in_other_files",
    "rows_against_previous_load",
)
CHECKS_STEP = "taxi_trip_checks"


def parquet_copy(csv_gz: Path, path: Path) -> Path:
    """The month's rows as the TLC publishes them: Parquet, with typed columns."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with duckdb.connect() as connection:
            connection.execute(
                f"COPY (SELECT * FROM read_csv('{csv_gz}')) TO '{path}' (FORMAT parquet)"
            )
    return path


# -- reference runs --------------------------------------------------------------------------


def pg_connection() -> psycopg.Connection:
    return psycopg.connect(autocommit=True, **PG)


def checkpoint() -> None:
    """Every timed run starts with nothing left to flush: without this, the run after the Kestra
    recipe (which writes each row three times) pays for writing its pages to disk."""
    with pg_connection() as connection:
        connection.execute("CHECKPOINT")


def raw_copy(path: Path, schema_name: str) -> float:
    """COPY of the file into an unlogged table of the Kestra types: the floor of any load."""
    checkpoint()
    with pg_connection() as connection:
        connection.execute(f"CREATE UNLOGGED TABLE {schema_name}.raw ({YELLOW_COLUMNS})")
        started = time.monotonic()
        copy_in(connection, f"{schema_name}.raw", column_names(YELLOW_COLUMNS), path)
        return time.monotonic() - started


def kestra_recipe(path: Path, schema_name: str) -> float:
    """The Kestra flow's tasks for one yellow month, its SQL verbatim (tables in `schema_name`)."""
    table, staging = f"{schema_name}.yellow_tripdata", f"{schema_name}.yellow_tripdata_staging"
    ddl = f"(unique_row_id text, filename text, {YELLOW_COLUMNS})"
    checkpoint()
    with pg_connection() as connection:
        started = time.monotonic()
        connection.execute(f"CREATE TABLE IF NOT EXISTS {table} {ddl}")
        connection.execute(f"CREATE TABLE IF NOT EXISTS {staging} {ddl}")
        connection.execute(f"TRUNCATE TABLE {staging}")
        copy_in(connection, staging, column_names(YELLOW_COLUMNS), path)
        connection.execute(UNIQUE_ROW_ID.format(staging=staging, p="tpep", file=MONTH.filename))
        connection.execute(KESTRA_MERGE.format(table=table, staging=staging, p="tpep"))
        return time.monotonic() - started


def duckdb_raw_reader(path: Path) -> float:
    """DuckDB's own reader: CREATE TABLE AS SELECT md5(seven columns), * FROM read_csv(file)."""
    parts = " || ".join(
        f"COALESCE(CAST(\"{c.name.lower()}\" AS VARCHAR), '')" for c in id_columns(YELLOW)
    )
    with (
        tempfile.TemporaryDirectory() as directory,
        duckdb.connect(f"{directory}/raw.duckdb") as db,
    ):
        started = time.monotonic()
        db.execute(
            f"CREATE TABLE raw AS SELECT md5({parts}) AS unique_row_id, * FROM read_csv(?)",
            [str(path)],
        )
        return time.monotonic() - started


# -- this project, as a user runs it ---------------------------------------------------------


@dataclass
class CliRun:
    wall: float
    peak_rss_mib: float
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def load(self) -> float:
        return self.steps["load_taxi_trips"]

    @property
    def checks(self) -> float:
        """The checks' step (all of them)."""
        return self.steps.get(CHECKS_STEP, 0.0)


def materialize(partition: TaxiPartition, env: dict[str, str], home: Path) -> CliRun:
    """`dagster asset materialize` of one partition in a process of its own, as docs/operations.md
    runs it; step times from the run's event log, peak RSS from GNU time (a child forked from this
    big process would report this process's size as its own peak)."""
    command = [DAGSTER, "asset", "materialize", "-m", "taxi_assets.definitions", "--select",
               "taxi_trips_staging,taxi_trips", "--partition", str(partition.key)]  # fmt: skip
    checkpoint()
    with tempfile.NamedTemporaryFile("r") as rss:
        started = time.monotonic()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *command], cwd=ROOT,
            env={**os.environ, **env, "DAGSTER_HOME": str(home)},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wall = time.monotonic() - started
        if done.returncode != 0:
            sys.exit(f"dagster asset materialize failed:\n{done.stderr[-3000:]}")
        peak_kib = int(rss.read().split()[-1])
    return CliRun(wall=wall, peak_rss_mib=peak_kib / 1024, steps=step_seconds(home))


def step_seconds(home: Path) -> dict[str, float]:
    """Each step's duration in the newest run of the instance at `home`."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_runs(limit=1)[0]
        started, last_event, seconds = {}, {}, {}
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type_value == "STEP_START":
                started[event.step_key] = last_event[event.step_key] = entry.timestamp
            elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
                seconds[event.step_key] = entry.timestamp - started[event.step_key]
            elif event.event_type_value == "ASSET_CHECK_EVALUATION":
                # The checks share a step: each one's time runs from the event before it.
                name = event.event_specific_data.check_name
                seconds[f"check {name}"] = entry.timestamp - last_event[event.step_key]
                last_event[event.step_key] = entry.timestamp
        return seconds


def import_seconds() -> float:
    """Fastest of three imports of the definitions in a fresh interpreter."""
    times = []
    for _ in range(3):
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-c", "import taxi_assets.definitions"], cwd=ROOT, check=True
        )
        times.append(time.monotonic() - started)
    return min(times)


# -- the report ------------------------------------------------------------------------------


def ratio(value: float, goal: str) -> str:
    return f"{value:.2f}× ({goal})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the big month")
    parser.add_argument("--months", type=int, default=12, help="months of the growing table")
    parser.add_argument("--month-rows", type=int, default=250_000, help="rows of each of them")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "taxi_bench")
    args = parser.parse_args()

    big = args.cache / f"rows_{args.rows}"
    write_big_month(big / "yellow" / MONTH.source_filename, YELLOW, MONTH, args.rows)
    tiny = args.cache / "rows_20"
    write_big_month(tiny / "yellow" / MONTH.source_filename, YELLOW, MONTH, 20)
    months = [
        TaxiPartition("yellow", f"{2019 + m // 12}-{m % 12 + 1:02d}") for m in range(args.months)
    ]
    growing = args.cache / f"rows_{args.month_rows}"
    for partition in months:
        write_big_month(
            growing / "yellow" / partition.source_filename, YELLOW, partition, args.month_rows
        )

    run_id = uuid.uuid4().hex[:8]
    schemas = {name: f"bench_{run_id}_{name}" for name in ("ref", "kestra", "ours", "tiny", "grow")}
    table = Table()
    with pg_connection() as connection:
        for name in schemas.values():
            connection.execute(f"CREATE SCHEMA {name}")
    try:
        with tempfile.TemporaryDirectory() as scratch:
            home = Path(scratch) / "dagster_home"
            home.mkdir()
            (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

            def pg_env(schema_name: str, source: Path) -> dict[str, str]:
                return {
                    "TAXI_WAREHOUSE": "postgres",
                    "TAXI_PG_SCHEMA": schema_name,
                    "TAXI_SOURCE_URL": str(source),
                    "PGHOST": PG["host"],
                    "PGPORT": str(PG["port"]),
                    "PGUSER": PG["user"],
                    "PGDATABASE": PG["dbname"],
                }

            path = big / "yellow" / MONTH.source_filename
            print(
                f"{args.rows:,} rows, {path.stat().st_size / 2**20:.0f} MiB gzip", file=sys.stderr
            )
            copy_s = raw_copy(path, schemas["ref"])
            table.add("PostgreSQL: raw COPY into an unlogged table", f"{copy_s:.2f} s")
            kestra_s = kestra_recipe(path, schemas["kestra"])
            table.add(
                "PostgreSQL: the Kestra flow's SQL (CREATE, TRUNCATE, COPY, UPDATE, MERGE)",
                f"{kestra_s:.2f} s",
            )

            # The second run of the 20-row month: as a user's runs meet a Dagster home that
            # exists (the first one creates its storage).
            materialize(MONTH, pg_env(schemas["tiny"], tiny), home)
            fixed = materialize(MONTH, pg_env(schemas["tiny"], tiny), home)
            table.add(
                "CLI: whole `dagster asset materialize` of a 20-row month",
                f"{fixed.wall:.2f} s",
                "goal ≤ 4 s",
            )
            first = materialize(MONTH, pg_env(schemas["ours"], big), home)
            table.add(
                "taxi_assets on PostgreSQL: load step",
                f"{first.load:.2f} s",
                "Kestra ÷ load = " + ratio(kestra_s / first.load, "goal ≥ 2.5"),
            )
            for name in CHECKS:
                table.add(f"  check {name}", f"{first.steps.get(f'check {name}', 0):.2f} s")
            table.add("  all checks ÷ load step", ratio(first.checks / first.load, "goal ≤ 0.10"))
            net = first.wall - fixed.wall
            table.add(
                "  whole CLI run net of the fixed cost",
                f"{net:.2f} s",
                "Kestra ÷ net = " + ratio(kestra_s / net, "goal ≥ 2"),
            )
            table.add(
                "  peak RSS of the run process",
                f"{first.peak_rss_mib:.0f} MiB",
                f"(20-row month: {fixed.peak_rss_mib:.0f} MiB; goal: flat)",
            )
            again = materialize(MONTH, pg_env(schemas["ours"], big), home)
            table.add(
                "  re-load of the same month: load step",
                f"{again.load:.2f} s",
                "re-load ÷ first = " + ratio(again.load / first.load, "goal ≤ 1.1"),
            )
            table.add("  re-load: checks", f"{again.checks:.2f} s")
            parquet = parquet_copy(path, big / "tlc" / MONTH.tlc_filename)
            tlc_env = {"TAXI_SOURCE_KIND": "tlc", "TAXI_TLC_URL": str(parquet.parent)}
            tlc = materialize(MONTH, {**pg_env(schemas["ours"], big), **tlc_env}, home)
            table.add(
                "  the same month as a TLC Parquet file: load step",
                f"{tlc.load:.2f} s",
                f"Parquet ÷ CSV = {tlc.load / again.load:.2f}× (converted to CSV first)",
            )

            raw_duck = duckdb_raw_reader(path)
            table.add(
                "DuckDB: CREATE TABLE AS SELECT md5(…), * FROM read_csv(file)", f"{raw_duck:.2f} s"
            )
            duck_env = {
                "TAXI_WAREHOUSE": "duckdb",
                "TAXI_DUCKDB_PATH": f"{scratch}/bench.duckdb",
                "TAXI_SOURCE_URL": str(big),
            }
            duck = materialize(MONTH, duck_env, home)
            table.add(
                "taxi_assets on DuckDB: load step",
                f"{duck.load:.2f} s",
                "load ÷ raw reader = " + ratio(duck.load / raw_duck, "goal ≤ 1.5"),
            )
            table.add("  DuckDB checks", f"{duck.checks:.2f} s")

            runs = [materialize(p, pg_env(schemas["grow"], growing), home) for p in months]
            n = len(runs)
            table.add(
                f"PostgreSQL, {args.month_rows:,}-row months: month 1 load step",
                f"{runs[0].load:.2f} s",
            )
            table.add(
                f"  month {n} load step ({n - 1} months loaded)",
                f"{runs[-1].load:.2f} s",
                "month N ÷ month 1 = " + ratio(runs[-1].load / runs[0].load, "goal ≤ 1.2"),
            )
            for name in CHECKS:
                key = f"check {name}"
                table.add(
                    f"  check {name}: month 1 → month {n}",
                    f"{runs[0].steps.get(key, 0):.2f} s → {runs[-1].steps.get(key, 0):.2f} s",
                )
            table.add(
                f"  month {n}: all checks ÷ load step",
                ratio(runs[-1].checks / runs[-1].load, "goal ≤ 0.10"),
            )

            table.add("import taxi_assets.definitions", f"{import_seconds():.2f} s")
    finally:
        with pg_connection() as connection:
            for name in schemas.values():
                connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    table.print()


if __name__ == "__main__":
    main()
