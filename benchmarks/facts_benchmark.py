"""Benchmark: the month-built facts. With N months loaded, one month's rebuild against all of them.

    make bench-facts
    python benchmarks/facts_benchmark.py [--months 12] [--month-rows 250000]

On PostgreSQL and DuckDB, in one run on the same generated files: N yellow months (and one small
green month) are loaded by this project's load asset; then `dbt build --select tag:monthly` (the
facts `fact_trips` and `dm_monthly_zone_revenue` with their tests) runs three ways:
- every month, as `--full-refresh` rebuilds them;
- one month in the middle, as a Dagster partition run of the facts (dbt vars `from_month`,
  `to_month`) after its file is loaded again;
- a month with no trips: what any dbt run costs (start, parse) before it touches a row.
It prints a table with the ratios; it asserts nothing. Needs PostgreSQL (PG* variables).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg
import psycopg

from taxi_assets.assets import build_load_taxi_trips
from taxi_assets.partitions import TaxiPartition
from taxi_assets.resources import TaxiSource
from taxi_assets.settings import Settings
from taxi_assets.trip_schema import GREEN, YELLOW
from taxi_assets.warehouses.base import TaxiWarehouse
from taxi_assets.warehouses.duckdb import DuckDBWarehouse
from taxi_assets.warehouses.postgres import PostgresWarehouse
from taxi_assets_testkit.benchmarking import PG, Table, write_big_month

ROOT = Path(__file__).resolve().parent.parent
DBT = str(Path(sys.executable).with_name("dbt"))
DBT_DIR = ROOT / "dbt_project"
LOAD = build_load_taxi_trips(Settings())  # the load step with the default settings


def load(partitions: list[TaxiPartition], source: Path, warehouse: TaxiWarehouse) -> None:
    for partition in partitions:
        loaded = dg.materialize(
            [LOAD],
            partition_key=str(partition.key),
            resources={"source": TaxiSource(base_url=str(source)), "warehouse": warehouse},
        )
        assert loaded.success, partition


def dbt_build(env: dict[str, str], target_path: Path, *args: str) -> float:
    """Seconds of one `dbt build` of the facts, as a process of its own, parsing the project
    each time (a partition run's new vars make dbt parse it again anyway). A failing dbt test is
    fine here (the generated months leave any column empty now and then); a failing model not."""
    command = [DBT, "build", "--select", "tag:monthly", "--project-dir", str(DBT_DIR),
               "--profiles-dir", str(DBT_DIR), "--target-path", str(target_path),
               "--no-partial-parse", *args]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode != 0 and ("ERROR creating" in done.stdout or "Done." not in done.stdout):
        sys.exit(f"dbt build failed:\n{done.stdout[-3000:]}")
    seconds = time.monotonic() - started
    results = json.loads((target_path / "run_results.json").read_text())["results"]
    slowest = sorted(results, key=lambda r: -r["execution_time"])[:4]
    nodes = ", ".join(
        f"{r['unique_id'].split('.')[-1][:40]} {r['execution_time']:.1f}" for r in slowest
    )
    print(f"    {' '.join(args)}: {seconds:.1f} s; slowest nodes (s): {nodes}", file=sys.stderr)
    return seconds


def window(month: str) -> str:
    """The dbt vars of a partition run of `month`."""
    end = TaxiPartition("yellow", month).month_end
    return json.dumps({"from_month": month, "to_month": end.strftime("%Y-%m")})


def measure(
    name: str,
    warehouse: TaxiWarehouse,
    env: dict[str, str],
    months: list[TaxiPartition],
    source: Path,
    table: Table,
) -> None:
    green = TaxiPartition("green", months[0].month)
    load([*months, green], source, warehouse)
    with tempfile.TemporaryDirectory() as target:
        target_path = Path(target)
        setup = [DBT, "build", "--exclude", "tag:monthly", "--project-dir", str(DBT_DIR),
                 "--profiles-dir", str(DBT_DIR), "--target-path", str(target_path)]  # fmt: skip
        subprocess.run(setup, env={**os.environ, **env}, check=True, capture_output=True)
        full = dbt_build(env, target_path, "--full-refresh")
        middle = months[len(months) // 2]
        load([middle], source, warehouse)
        one = dbt_build(env, target_path, "--vars", window(middle.month))
        empty = dbt_build(env, target_path, "--vars", window("2030-01"))
    table.add(f"{name}: facts of all {len(months)} months (--full-refresh)", f"{full:.2f} s")
    table.add(f"{name}: facts of one month ({middle.month}) after its re-load", f"{one:.2f} s")
    table.add(f"{name}: a month without trips (dbt's fixed cost)", f"{empty:.2f} s")
    net_month, net_all = one - empty, full - empty
    table.add(
        f"{name}: one month's rebuild, net of the fixed cost, against all months'",
        f"{net_month:.2f} s / {net_all:.2f} s = {net_month / net_all:.2f}",
        f"about 1/{len(months)} = {1 / len(months):.2f}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=12, help="months loaded")
    parser.add_argument("--month-rows", type=int, default=250_000, help="rows of each")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "taxi_bench")
    args = parser.parse_args()

    months = [
        TaxiPartition("yellow", f"{2019 + m // 12}-{m % 12 + 1:02d}") for m in range(args.months)
    ]
    source = args.cache / f"rows_{args.month_rows}"
    for partition in months:
        write_big_month(source / "yellow" / partition.source_filename, YELLOW, partition,
                       args.month_rows)  # fmt: skip
    green = TaxiPartition("green", months[0].month)
    write_big_month(source / "green" / green.source_filename, GREEN, green, 1_000)

    table = Table()
    schema = f"bench_facts_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(autocommit=True, **PG) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        postgres = PostgresWarehouse(
            host=PG["host"], port=PG["port"], user=PG["user"], password=PG["password"],
            database=PG["dbname"], sql_schema=schema,
        )  # fmt: skip
        env = {
            "TAXI_WAREHOUSE": "postgres",
            "TAXI_PG_SCHEMA": schema,
            "TAXI_DBT_SCHEMA": f"{schema}_dbt",
            "PGHOST": PG["host"],
            "PGPORT": str(PG["port"]),
            "PGUSER": PG["user"],
            "PGDATABASE": PG["dbname"],
        }
        measure("PostgreSQL", postgres, env, months, source, table)
    finally:
        with psycopg.connect(autocommit=True, **PG) as connection:
            for name in (schema, f"{schema}_dbt"):
                connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "taxi_rides_ny.duckdb"
        env = {"TAXI_WAREHOUSE": "duckdb", "TAXI_DUCKDB_PATH": str(path)}
        measure("DuckDB", DuckDBWarehouse(path=str(path)), env, months, source, table)
    print(f"{args.months} yellow months of {args.month_rows:,} rows; 2 cores")
    table.print()


if __name__ == "__main__":
    main()
