"""One contract for every warehouse (`taxi_assets/trip_contract.py`): each case is one field of
line 4 of a small file; PostgreSQL and DuckDB either both store the same value or both refuse the
file with an error naming file, line and column (and the table is left as it was)."""

from datetime import datetime

import pytest

from taxi_assets.errors import SourceError
from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_contract import MAX_LINE_BYTES, NOT_A_NUMBER, NOT_A_TIMESTAMP
from taxi_assets.trip_csv import TripCsv
from taxi_assets.trip_schema import GREEN
from taxi_assets_testkit.synthetic import csv_lines, generate_rows, write_csv_gz
from taxi_assets_tests.helpers import fingerprint

pytestmark = pytest.mark.every_warehouse

JAN = TaxiPartition("green", "2019-01")
FILE = "green_tripdata_2019-01.csv.gz"
PICKUP = "lpep_pickup_datetime"
MARKER = ("DOLocationID", "999")  # the row under test, in the table

# (column, field as written in the file, the value stored, or the error's words)
ACCEPTED = [
    (PICKUP, "2019-01-05 10:00:00", datetime(2019, 1, 5, 10)),
    (PICKUP, '"2019-01-05 10:00:00"', datetime(2019, 1, 5, 10)),
    (PICKUP, "", None),
    ("fare_amount", "1.5", 1.5),
    ("fare_amount", ".79", 0.79),
    ("fare_amount", "-2.5", -2.5),
    ("fare_amount", "1e-05", 1e-05),  # how the Parquet conversion writes small numbers
    ("fare_amount", '"12.5"', 12.5),
    ("fare_amount", "", None),
    ("fare_amount", '""', None),
    ("passenger_count", "2", 2),
    ("passenger_count", "2.0", 2),
    ("passenger_count", '""', None),
    ("store_and_fwd_flag", "", None),
    ("store_and_fwd_flag", '""', None),
    ("store_and_fwd_flag", '"N,Y"', "N,Y"),
    ("store_and_fwd_flag", '"say ""N"""', 'say "N"'),
]
REFUSED = [
    (PICKUP, "2019-01-05", f'"2019-01-05" {NOT_A_TIMESTAMP}'),
    (PICKUP, "01/05/2019 10:00:00", f'"01/05/2019 10:00:00" {NOT_A_TIMESTAMP}'),
    (PICKUP, "2019-01-05 10:00:00.5", "2019-01-05 10:00:00.5"),
    (PICKUP, "2019-01-05 24:00:00", f'"2019-01-05 24:00:00" {NOT_A_TIMESTAMP}'),
    (PICKUP, "2019-01-05T10:00:00", "2019-01-05T10:00:00"),
    (PICKUP, "2019-01-05 10:00:60", "2019-01-05 10:00:60"),  # a leap second PostgreSQL rolls over
    (PICKUP, "2019-01-05 10:60:00", "2019-01-05 10:60:00"),
    (PICKUP, "2019-1-5 10:00:00", "2019-1-5 10:00:00"),
    (PICKUP, "2019-02-30 10:00:00", "2019-02-30 10:00:00"),
    (PICKUP, "infinity", "infinity"),
    ("fare_amount", "1e400", ""),  # out of range (PostgreSQL), inf (DuckDB): refused
    ("fare_amount", "inf", NOT_A_NUMBER),
    ("fare_amount", "NaN", NOT_A_NUMBER),
    ("fare_amount", "Infinity", NOT_A_NUMBER),
    ("fare_amount", "0x10", f'"0x10" {NOT_A_NUMBER}'),
    ("fare_amount", "1.5.", "1.5."),
    ("passenger_count", "1.5", "1.5 is not a whole number"),
    ("passenger_count", "inf", "inf"),
    ("store_and_fwd_flag", "N\0", "a NUL byte is not allowed in a trip file"),
]


def _load(warehouse, tmp_path, column: str, field: str, line_3: str | None = None):
    """Load a 5-line file whose line 3 has `field` in `column`; None or the error's text."""
    rows = list(generate_rows(GREEN, JAN, 5, seed=3))
    lines = list(csv_lines(GREEN, rows))
    fields = lines[3].split(",")  # file line 4 is data line 3
    fields[GREEN.header.index(MARKER[0])] = MARKER[1]
    fields[GREEN.header.index(column)] = field
    lines[3] = line_3 if line_3 is not None else ",".join(fields)
    path = write_csv_gz(tmp_path / FILE, iter(lines))
    try:
        with TripCsv(path, GREEN, FILE) as csv, warehouse.open_partition(GREEN, JAN) as load:
            load.stage(csv)
            load.merge()
    except SourceError as error:
        return str(error)
    return None


def _stored(db, column: str):
    return db.execute(
        f"SELECT {column.lower()} FROM green_tripdata WHERE {MARKER[0].lower()} = %s",
        [MARKER[1]],
    ).fetchone()[0]


@pytest.fixture
def loaded(warehouse, db, tmp_path):
    assert _load(warehouse, tmp_path, "fare_amount", "1") is None
    return fingerprint(db, "green_tripdata")


@pytest.mark.parametrize(("column", "field", "stored"), ACCEPTED, ids=[c[1] for c in ACCEPTED])
def test_a_field_of_the_contract_loads(warehouse, db, tmp_path, column, field, stored):
    assert _load(warehouse, tmp_path, column, field) is None
    assert _stored(db, column) == stored


@pytest.mark.parametrize(("column", "field", "words"), REFUSED, ids=[c[1] for c in REFUSED])
def test_a_field_outside_the_contract_is_refused(
    warehouse, db, tmp_path, loaded, column, field, words
):
    message = _load(warehouse, tmp_path, column, field)

    assert message is not None, f"{field!r} was loaded"
    assert f"{FILE} line 4, column {column.lower()}" in message
    assert words in message
    assert fingerprint(db, "green_tripdata") == loaded


def test_a_line_longer_than_the_limit_is_refused(warehouse, db, tmp_path, loaded):
    long_field = "N" * (10 * MAX_LINE_BYTES)
    message = _load(warehouse, tmp_path, "store_and_fwd_flag", long_field)

    assert message == (
        f"{FILE} line 4: longer than {MAX_LINE_BYTES:,} bytes (a trip's line has about 150)"
    )
    assert fingerprint(db, "green_tripdata") == loaded


def test_a_fully_quoted_file_loads_as_the_plain_one(warehouse, db, tmp_path):
    rows = list(generate_rows(GREEN, JAN, 50, seed=5))
    quoted = ['"' + line.replace(",", '","') + '"' for line in csv_lines(GREEN, rows)]
    path = write_csv_gz(tmp_path / FILE, iter(quoted))
    with TripCsv(path, GREEN, FILE) as csv, warehouse.open_partition(GREEN, JAN) as load:
        load.stage(csv)
        load.merge()
    quoted_table = fingerprint(db, "green_tripdata")

    write_csv_gz(tmp_path / FILE, csv_lines(GREEN, rows))
    with TripCsv(path, GREEN, FILE) as csv, warehouse.open_partition(GREEN, JAN) as load:
        load.stage(csv)
        load.merge()
    assert fingerprint(db, "green_tripdata") == quoted_table
