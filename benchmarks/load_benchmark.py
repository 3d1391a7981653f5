"""Benchmark: load generated green months of growing size into PostgreSQL; print the numbers.

    python benchmarks/load_benchmark.py [--rows 250000 1000000] [--repeat 2]

Each size runs in a fresh process (so peak RSS is that load's own), as a real `dg.materialize`
of one partition: download from a local HTTP server, COPY, ids, merge, checks. Times come from
the run's own metadata (stage / merge) and the wall clock. Nothing here asserts a speed.
"""

import argparse
import functools
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def serve_directory(directory: Path) -> str:
    """A local HTTP server for `directory`, in a daemon thread; its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def one_load(rows: int, source_dir: Path, base_url: str, repeat: int) -> dict:
    """Runs in a child process: generate (cached), then materialise `repeat` times."""
    import resource

    import dagster as dg

    from taxi_assets.assets import STAGING, TRIPS, load_taxi_trips
    from taxi_assets.checks import taxi_trip_checks
    from taxi_assets.partitions import TaxiPartition
    from taxi_assets.postgres import PostgresWarehouse
    from taxi_assets.resources import TaxiSource
    from taxi_assets.trip_schema import GREEN
    from taxi_assets_tests.synthetic import csv_lines, generate_rows, write_csv_gz

    month = TaxiPartition("green", "2020-01")
    mirror = source_dir / f"rows_{rows}"
    path = mirror / "green" / month.source_filename
    if not path.exists():
        started = time.monotonic()
        write_csv_gz(path, csv_lines(GREEN, generate_rows(GREEN, month, rows)))
        print(f"  generated {rows:,} rows in {time.monotonic() - started:.1f}s", file=sys.stderr)
    schema_name = f"bench_{uuid.uuid4().hex[:8]}"
    warehouse = PostgresWarehouse(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=int(os.environ.get("PGPORT", "5432")),
        user=os.environ.get("PGUSER", "postgres"),
        password=os.environ.get("PGPASSWORD") or None,
        database=os.environ.get("PGDATABASE", "postgres"),
        target_schema=schema_name,
    )
    runs = []
    try:
        for attempt in range(repeat):
            started = time.monotonic()
            result = dg.materialize(
                [load_taxi_trips, *taxi_trip_checks],
                partition_key=str(month.key),
                resources={
                    "source": TaxiSource(base_url=f"{base_url}/rows_{rows}"),
                    "warehouse": warehouse,
                },
            )
            wall = time.monotonic() - started
            meta = {}
            for event in result.get_asset_materialization_events():
                materialization = event.event_specific_data.materialization
                meta[materialization.asset_key] = {
                    k: v.value for k, v in materialization.metadata.items()
                }
            runs.append(
                {
                    "attempt": attempt + 1,
                    "wall_s": round(wall, 2),
                    "stage_s": meta[STAGING]["stage_seconds"],
                    "merge_s": meta[TRIPS]["merge_seconds"],
                    "load_s": meta[TRIPS]["duration_seconds"],
                    "replaced_rows": meta[TRIPS]["replaced_rows"],
                }
            )
    finally:
        with psycopg.connect(
            host=warehouse.host, port=warehouse.port, user=warehouse.user,
            password=warehouse.password, dbname=warehouse.database, autocommit=True,
        ) as connection:  # fmt: skip
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
    return {
        "rows": rows,
        "gz_bytes": path.stat().st_size,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[250_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=2, help="loads per size (2nd = re-run)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "taxi_bench")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_load(args.child, args.cache, args.url, args.repeat)))
        return
    args.cache.mkdir(parents=True, exist_ok=True)
    base_url = serve_directory(args.cache)
    print(f"{'rows':>10} {'gz MiB':>7} {'run':>4} {'wall s':>7} {'stage s':>8} {'merge s':>8} "
          f"{'rows/s':>9} {'peak RSS MiB':>13}")  # fmt: skip
    for rows in args.rows:
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(rows), "--url", base_url,
             "--cache", str(args.cache), "--repeat", str(args.repeat)],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )  # fmt: skip
        report = json.loads(child.stdout.strip().splitlines()[-1])
        for run in report["runs"]:
            print(
                f"{rows:>10,} {report['gz_bytes'] / 2**20:>7.1f} {run['attempt']:>4} "
                f"{run['wall_s']:>7.2f} {run['stage_s']:>8.2f} {run['merge_s']:>8.2f} "
                f"{rows / run['load_s']:>9,.0f} {report['peak_rss_mib']:>13.1f}"
            )


if __name__ == "__main__":
    main()
