"""Ids equal those of a table the Kestra flow loaded, on real TLC files, whatever the session's
DateStyle: the loader pins it."""

import collections

import pytest

from taxi_assets.partitions import TaxiPartition
from taxi_assets_tests.conftest import real_sample
from taxi_assets_tests.kestra_flow import kestra_ids

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
    theirs = kestra_ids(db, partition.taxi, published, partition.filename)
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
