"""Generated trip months in the release files' format, for tests and the benchmark.

The rows look like the real ones where it matters to a loader: CRLF line endings, empty fields
for NULLs, `.79`-style decimals, integers written `1.0`, some pickups outside the month, some
exact duplicate rows. Generation is deterministic for a given seed.
"""

import gzip
import hashlib
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from taxi_assets.partitions import TaxiPartition
from taxi_assets.pg_text import pg_float8_text
from taxi_assets.trip_schema import ColumnType, TripSchema, id_columns

Row = dict[str, str]


def _decimal(value: float) -> str:
    text = f"{value:.2f}"
    return text[1:] if text.startswith("0.") else text  # `.79`, as the TLC files write it


def _random_row(schema: TripSchema, partition: TaxiPartition, rng: random.Random) -> Row:
    start = datetime.combine(partition.month_start, datetime.min.time())
    seconds = int(
        (datetime.combine(partition.month_end, datetime.min.time()) - start).total_seconds()
    )
    pickup = start + timedelta(seconds=rng.randrange(seconds))
    if rng.random() < 0.01:
        pickup = start - timedelta(seconds=rng.randrange(1, 86_400))  # outside the month
    dropoff = pickup + timedelta(seconds=rng.randrange(30, 3_600))
    row: Row = {}
    for column in schema.columns:
        row[column.name] = _random_value(column.name, column.type, rng)
    row[schema.pickup] = pickup.strftime("%Y-%m-%d %H:%M:%S")
    row[schema.dropoff] = dropoff.strftime("%Y-%m-%d %H:%M:%S")
    return row


# Columns the real files leave empty now and then (the month-end rows leave them all empty).
SOMETIMES_EMPTY = {"VendorID", "passenger_count", "RatecodeID", "store_and_fwd_flag",
                   "payment_type", "trip_type", "congestion_surcharge"}  # fmt: skip


def _random_value(name: str, type_: ColumnType, rng: random.Random) -> str:
    if name == "ehail_fee" or (name in SOMETIMES_EMPTY and rng.random() < 0.03):
        return ""
    if name in ("PULocationID", "DOLocationID"):
        return str(rng.randint(1, 265))
    if name == "store_and_fwd_flag":
        return rng.choice("NNNNY")
    if type_ is ColumnType.TEXT:  # VendorID, RatecodeID
        return str(rng.choice((1, 2, 2, 5)))
    if type_ is ColumnType.INTEGER:
        value = rng.randint(1, 4)
        return f"{value}.0" if rng.random() < 0.1 else str(value)
    return _decimal(rng.uniform(0, 60))


def generate_rows(
    schema: TripSchema, partition: TaxiPartition, rows: int, seed: int = 0
) -> Iterator[Row]:
    """`rows` rows; about 0.5% repeat the row before them exactly."""
    rng = random.Random(f"{schema.taxi}-{partition.month}-{seed}")
    previous: Row | None = None
    for _ in range(rows):
        if previous is not None and rng.random() < 0.005:
            row = previous
        else:
            row = _random_row(schema, partition, rng)
        previous = row
        yield row


def csv_lines(schema: TripSchema, rows: Iterator[Row] | list[Row]) -> Iterator[str]:
    yield ",".join(schema.header)
    for row in rows:
        yield ",".join(row[name] for name in schema.header)


def write_csv_gz(path: Path, lines: Iterator[str], *, line_ending: str = "\r\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="ascii", newline="", compresslevel=1) as out:
        for line in lines:
            out.write(line + line_ending)
    return path


def write_month(
    directory: Path, schema: TripSchema, partition: TaxiPartition, rows: int, seed: int = 0
) -> list[Row]:
    """Write `{directory}/{taxi}/{file}.csv.gz` as the source lays it out; return its rows."""
    generated = list(generate_rows(schema, partition, rows, seed))
    write_csv_gz(
        directory / partition.taxi / partition.source_filename, csv_lines(schema, generated)
    )
    return generated


def expected_unique_row_id(schema: TripSchema, row: Row) -> str:
    """The seed flow's md5, computed here without a database, from the CSV fields."""
    parts = []
    for column in id_columns(schema):
        value = row[column.name]
        if value and column.type is ColumnType.FLOAT:
            value = pg_float8_text(float(value))  # checked against the server elsewhere
        parts.append(value)
    return hashlib.md5("".join(parts).encode()).hexdigest()
