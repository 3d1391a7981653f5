"""What the benchmarks share: the PostgreSQL database they work in (`PG`, PGDATABASE), big
generated months (written by DuckDB in seconds; `synthetic.py` writes small ones row by row, with
their ids known in advance), and the result table they print."""

import os
import sys
from pathlib import Path

import duckdb

from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import ColumnType, TripSchema
from taxi_assets_testkit import local_servers

PG = {**local_servers.PG, "dbname": os.environ.get("PGDATABASE", "postgres")}


def _random_value_sql(name: str, type_: ColumnType) -> str:
    """A DuckDB expression for one column of a random trip, 3% empty. Integers are written plain:
    the Kestra flow's COPY refuses `1.0`."""
    if name in ("PULocationID", "DOLocationID"):
        value = "CAST(1 + (random() * 264)::INT AS VARCHAR)"
    elif name == "store_and_fwd_flag":
        value = "CASE WHEN random() < 0.2 THEN 'Y' ELSE 'N' END"
    elif type_ is ColumnType.TEXT:
        value = "CAST([1, 2, 2, 5][1 + (random() * 3.999)::INT] AS VARCHAR)"
    elif type_ is ColumnType.INTEGER:
        value = "CAST(1 + (random() * 3)::INT AS VARCHAR)"
    else:
        value = "CAST(round(random() * 60, 2) AS VARCHAR)"
    return f"CASE WHEN random() < 0.03 THEN NULL ELSE {value} END"


def write_big_month(path: Path, schema: TripSchema, partition: TaxiPartition, rows: int) -> Path:
    """A month with the release's columns and file name, written by DuckDB in seconds: 1% of the
    pickups on the day before the month, 0.5% exact duplicate rows."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    start = f"TIMESTAMP '{partition.month_start} 00:00:00'"
    moments = {
        schema.pickup: f"{start} + to_seconds(pickup_s)",
        schema.dropoff: f"{start} + to_seconds(pickup_s + 30 + (random() * 3570)::INT)",
    }
    values = ", ".join(
        f"strftime({moments[c.name]}, '%Y-%m-%d %H:%M:%S') AS \"{c.name}\""
        if c.name in moments
        else f'{_random_value_sql(c.name, c.type)} AS "{c.name}"'
        for c in schema.columns
    )
    seconds = (partition.month_end - partition.month_start).days * 86_400
    pickup_s = (
        "CASE WHEN random() < 0.01 THEN -1 - (random() * 86399)::INT "
        f"ELSE (random() * {seconds - 1})::INT END"
    )
    unique = rows - rows // 200
    partial = path.with_suffix(".partial")
    with duckdb.connect() as connection:
        connection.execute("SELECT setseed(0.42)")
        connection.execute(
            f"COPY (WITH trips AS MATERIALIZED (SELECT i, {values} FROM "
            f"(SELECT i, {pickup_s} AS pickup_s FROM range({unique}) AS r(i))) "
            "SELECT * EXCLUDE (i) FROM (SELECT * FROM trips UNION ALL "
            f"(SELECT * FROM trips WHERE i % 199 = 7 LIMIT {rows - unique})) ORDER BY i) "
            f"TO '{partial}' (FORMAT csv, HEADER, COMPRESSION gzip)"
        )
    partial.rename(path)
    return path


class Table:
    """A benchmark's results, printed as a Markdown table at the end (each row also to stderr as
    it is measured)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def add(self, what: str, value: str, note: str = "") -> None:
        self.rows.append((what, value, note))
        print(f"  {what}: {value} {note}", file=sys.stderr, flush=True)

    def print(self) -> None:
        width = max(len(r[0]) for r in self.rows)
        print(f"\n| {'measured (same files, same servers, one run)':<{width}} | value | goal |")
        print(f"|{'-' * (width + 2)}|-------|------|")
        for what, value, note in self.rows:
            print(f"| {what:<{width}} | {value} | {note} |")
