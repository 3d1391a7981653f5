"""Ids equal those of a table the Kestra flow loaded, on real TLC files, whatever the session's
DateStyle: the loader pins it."""

import collections
import math
import random

import pytest

from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import GREEN
from taxi_assets.warehouses.float_text import postgres_float_text
from taxi_assets_testkit.kestra_flow import kestra_ids
from taxi_assets_testkit.synthetic import (
    csv_lines,
    generate_rows,
    write_csv_gz,
)
from taxi_assets_tests.databases import Db
from taxi_assets_tests.runs import materialize_load
from taxi_assets_tests.samples import real_sample

REAL_FILES = [
    ("2020-10|green", "green_tripdata_2020-10.csv.gz", 95_120),
    ("2019-10|green", "green_tripdata_2019-10_head1308.csv", 1_308),
    ("2021-01|yellow", "yellow_tripdata_2021-01_head22792.csv", 22_792),
    ("2020-01|yellow", "yellow_tripdata_2020-01_sample999.csv", 999),
    ("2019-01|yellow", "yellow_tripdata_2019-01_head1k.csv", 8),
    ("2019-01|green", "green_tripdata_2019-01_head1k.csv", 8),
]


@pytest.mark.parametrize(("key", "sample", "rows"), REAL_FILES, ids=[f[0] for f in REAL_FILES])
def test_ids_equal_the_kestra_flow_ids_on_real_files(mirror, load, db, key, sample, rows):
    partition = TaxiPartition.from_key(key)
    path = real_sample(sample)
    published = (
        mirror.put_gz(partition, path)
        if sample.endswith(".gz")
        else mirror.put_csv(partition, path)
    )

    assert load(key).success

    ours = [r[0] for r in db.execute(f"SELECT unique_row_id FROM {partition.taxi}_tripdata")]
    theirs = kestra_ids(db.postgres, partition.taxi, published, partition.filename)
    assert len(ours) == rows
    assert collections.Counter(ours) == collections.Counter(theirs)


def test_ids_do_not_depend_on_the_server_datestyle(mirror, load, db, warehouse):
    partition = TaxiPartition("green", "2019-10")
    mirror.put_csv(partition, real_sample("green_tripdata_2019-10_head1308.csv"))
    load("2019-10|green")
    expected = sorted(r[0] for r in db.execute("SELECT unique_row_id FROM green_tripdata"))
    db.execute(
        f"ALTER DATABASE \"{warehouse.database}\" SET DateStyle = 'SQL, DMY'"
    )  # every new session of the loader now starts with another DateStyle
    try:
        db.execute("DROP TABLE green_tripdata")
        load("2019-10|green")
    finally:
        db.execute(f'ALTER DATABASE "{warehouse.database}" RESET DateStyle')

    assert sorted(r[0] for r in db.execute("SELECT unique_row_id FROM green_tripdata")) == expected


@pytest.mark.parametrize(("key", "sample", "rows"), REAL_FILES, ids=[f[0] for f in REAL_FILES])
def test_duckdb_and_postgres_give_the_same_ids(
    mirror, postgres_warehouse, duckdb_warehouse, key, sample, rows
):
    partition = TaxiPartition.from_key(key)
    path = real_sample(sample)
    mirror.put_gz(partition, path) if sample.endswith(".gz") else mirror.put_csv(partition, path)
    ids = {}
    for warehouse in (postgres_warehouse, duckdb_warehouse):
        assert materialize_load(key, mirror.source(), warehouse).success
        query = f"SELECT unique_row_id FROM {partition.taxi}_tripdata"
        ids[warehouse.kind] = collections.Counter(r[0] for r in Db(warehouse).execute(query))

    assert sum(ids["duckdb"].values()) == rows
    assert ids["duckdb"] == ids["postgres"]


def test_unusual_numbers_hash_alike_in_both_warehouses(
    mirror, postgres_warehouse, duckdb_warehouse
):
    """Fares and distances PostgreSQL prints in exponent form, or as `-0`, or with 15+ digits."""
    partition = TaxiPartition("green", "2019-01")
    rows = list(generate_rows(GREEN, partition, 40, seed=3))
    odd = ["1e15", "1234567890123456", "0.00001", "-0.0", "-0.00012", "123456789012.25", "7.0",
           "1e-300", "3.14159265358979", "0"]  # fmt: skip
    for row, value in zip(rows, odd, strict=False):
        row["fare_amount"] = value
        row["trip_distance"] = value
    for row in rows:  # integers as the Kestra flow's COPY takes them (it refuses `1.0`)
        for name in ("passenger_count", "payment_type", "trip_type"):
            row[name] = row[name].removesuffix(".0")
    path = write_csv_gz(mirror.path(partition), csv_lines(GREEN, rows))
    ids = {}
    for warehouse in (postgres_warehouse, duckdb_warehouse):
        assert materialize_load(partition, mirror.source(), warehouse).success
        found = Db(warehouse).execute("SELECT unique_row_id FROM green_tripdata")
        ids[warehouse.kind] = collections.Counter(r[0] for r in found)

    kestra = kestra_ids(Db(postgres_warehouse).postgres, "green", path, partition.filename)
    assert ids["duckdb"] == ids["postgres"] == collections.Counter(kestra)


def test_float_text_matches_postgres(db):
    """`postgres_float_text` against the server itself, on edge cases and random doubles."""
    rng = random.Random(11)
    values = [0.0, -0.0, 1e15, 9.99e14, 1e-4, 9.9e-5, 5e-324, 1.7976931348623157e308, 0.1 + 0.2]
    values += [rng.uniform(-1e3, 1e3) for _ in range(300)]
    values += [math.ldexp(rng.random(), rng.randint(-1070, 1020)) for _ in range(300)]
    server = db.execute("SELECT v::text FROM unnest(%s::float8[]) AS v", (values,)).fetchall()

    assert [postgres_float_text(v) for v in values] == [row[0] for row in server]
