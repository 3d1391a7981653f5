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
from taxi_assets.trip_schema import ColumnType, TripSchema

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


# The Kestra flow's md5 input, written out here from its SQL (not taken from the product's
# trip_schema.py, so that a column dropped there is caught): seven columns, in this order.
KESTRA_ID_COLUMNS = {
    "green": ("VendorID", "lpep_pickup_datetime", "lpep_dropoff_datetime", "PULocationID",
              "DOLocationID", "fare_amount", "trip_distance"),
    "yellow": ("VendorID", "tpep_pickup_datetime", "tpep_dropoff_datetime", "PULocationID",
               "DOLocationID", "fare_amount", "trip_distance"),
}  # fmt: skip
FLOAT_ID_COLUMNS = {"fare_amount", "trip_distance"}


def kestra_float_text(value: str) -> str:
    """PostgreSQL's `CAST(x AS text)` of a float the generator writes (0, or 1e-4 ≤ x < 1e15):
    there both print the shortest digits that read back as the number, PostgreSQL without a
    trailing `.0`. (Other numbers: `test_kestra_ids` checks them against the server.)"""
    number = float(value)
    assert number == 0 or 1e-4 <= abs(number) < 1e15, f"{value} is outside the oracle's range"
    text = repr(number)
    return text.removesuffix(".0")


def expected_unique_row_id(schema: TripSchema, row: Row) -> str:
    """The Kestra flow's md5, computed here without a database, from the CSV fields."""
    parts = []
    for name in KESTRA_ID_COLUMNS[schema.taxi]:
        value = row[name]
        if value and name in FLOAT_ID_COLUMNS:
            value = kestra_float_text(value)
        parts.append(value)
    return hashlib.md5("".join(parts).encode()).hexdigest()
