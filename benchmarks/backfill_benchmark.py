"""Benchmark: a 24-partition backfill (12 months x 2 colours) on a real `dagster dev`, launched
as the UI launches it, serial (pool limit 1) vs pool limit 2: the wall time against the sum of
its load steps plus the first run's start (the goal: at most 1.5x), and how much of each run is
Dagster rather than the database.

    python benchmarks/backfill_benchmark.py [--rows 100000] [--limits 1 2]

Needs PostgreSQL (PG* variables). Prints a table; asserts nothing about speed.
"""

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg
import psycopg

from taxi_assets.assets import TRIPS
from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import TRIP_SCHEMAS
from taxi_assets_testkit.benchmarking import PG
from taxi_assets_testkit.dagster_dev import DagsterDev, load_step_windows
from taxi_assets_testkit.local_servers import serve_directory
from taxi_assets_testkit.synthetic import csv_lines, generate_rows, write_csv_gz

MONTHS = [
    TaxiPartition(taxi, f"2019-{m:02d}") for taxi in ("green", "yellow") for m in range(1, 13)
]


def _months(directory: Path, rows: int) -> None:
    for partition in MONTHS:
        path = directory / partition.taxi / partition.source_filename
        if not path.exists():
            schema = TRIP_SCHEMAS[partition.taxi]
            write_csv_gz(path, csv_lines(schema, generate_rows(schema, partition, rows)))


def _backfill(server: DagsterDev, limit: int, db: psycopg.Connection) -> dict:
    db.execute("DROP TABLE IF EXISTS green_tripdata, yellow_tripdata CASCADE")
    server.set_pool_limit("taxi_postgres", limit)
    launched = time.time()
    backfill_id = server.launch_backfill(
        [str(p.key) for p in MONTHS], ["taxi_trips_staging", "taxi_trips"]
    )
    server.wait_for_backfill(backfill_id)
    runs = server.wait_for_runs(backfill_id, count=len(MONTHS))
    instance = server.instance()
    records = instance.get_run_records(filters=dg.RunsFilter(run_ids=[r.run_id for r in runs]))
    load_seconds = {}
    for record in instance.fetch_materializations(TRIPS, limit=len(MONTHS) * 4).records:
        if record.run_id in {r.run_id for r in runs}:
            load_seconds[record.run_id] = record.asset_materialization.metadata[
                "duration_seconds"
            ].value
    steps = load_step_windows(instance, [r.run_id for r in runs])
    run_seconds = [r.end_time - r.start_time for r in records]
    overhead = [r.end_time - r.start_time - load_seconds[r.dagster_run.run_id] for r in records]
    return {
        "limit": limit,
        "wall": max(r.end_time for r in records) - launched,
        "first_start": min(r.start_time for r in records) - launched,
        "load_steps": sum(end - start for start, end in steps),
        "run": statistics.mean(run_seconds),
        "load": statistics.mean(load_seconds.values()),
        "overhead": statistics.mean(overhead),
        "queued": statistics.mean(r.start_time - r.create_timestamp.timestamp() for r in records),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows per generated month")
    parser.add_argument("--limits", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    cache = Path(tempfile.gettempdir()) / f"taxi_backfill_bench_{args.rows}"
    _months(cache, args.rows)
    schema_name = f"bench_{uuid.uuid4().hex[:8]}"
    env = {"TAXI_SOURCE_URL": serve_directory(cache)[1], "TAXI_WAREHOUSE": "postgres",
           "TAXI_PG_SCHEMA": schema_name,
           "PGHOST": PG["host"], "PGPORT": str(PG["port"]), "PGUSER": PG["user"],
           "PGDATABASE": PG["dbname"]}  # fmt: skip
    home = Path(tempfile.mkdtemp(prefix="taxi_bench_home_"))
    with psycopg.connect(autocommit=True, **PG) as db:
        db.execute(f'CREATE SCHEMA "{schema_name}"')
        db.execute(f'SET search_path = "{schema_name}"')
        try:
            with DagsterDev(home, env, home / "dagster_dev.log") as server:
                results = [_backfill(server, limit, db) for limit in args.limits]
        finally:
            db.execute(f'DROP SCHEMA "{schema_name}" CASCADE')
    print(
        f"{len(MONTHS)} partitions (12 months x 2 colours) x {args.rows:,} rows, backfill "
        "launched over GraphQL on dagster dev"
    )
    print(f"{'pool limit':>10} {'wall s':>8} {'1st run starts s':>17} {'load steps s':>13} "
          f"{'goal ratio':>11} {'run s':>7} {'load s':>7} {'Dagster s/run':>14} "
          f"{'queued s/run':>13}")  # fmt: skip
    for r in results:
        ratio = r["wall"] / (r["load_steps"] + r["first_start"])
        print(f"{r['limit']:>10} {r['wall']:>8.1f} {r['first_start']:>17.1f} "
              f"{r['load_steps']:>13.1f} {ratio:>10.2f}x {r['run']:>7.2f} {r['load']:>7.2f} "
              f"{r['overhead']:>14.2f} {r['queued']:>13.1f}")  # fmt: skip
    print("goal ratio: wall / (sum of the load steps + the first run's start); goal <= 1.5")


if __name__ == "__main__":
    main()
