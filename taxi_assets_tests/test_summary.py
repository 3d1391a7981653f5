"""The summary `make demo` prints: top pickup zones by revenue, checked against the file."""

import collections
import csv
import gzip

from taxi_assets.partitions import TaxiPartition
from taxi_assets.summary import top_pickup_zones
from taxi_assets_tests.conftest import real_sample


def test_top_pickup_zones_of_the_real_month(mirror, load, warehouse):
    partition = TaxiPartition("green", "2020-10")
    path = mirror.put_gz(partition, real_sample("green_tripdata_2020-10.csv.gz"))
    load("2020-10|green")

    top = top_pickup_zones(warehouse, partition, limit=3)

    revenue, trips = collections.Counter(), collections.Counter()
    with gzip.open(path, "rt", newline="") as file:
        for row in csv.DictReader(file):
            revenue[row["PULocationID"]] += float(row["total_amount"] or 0)
            trips[row["PULocationID"]] += 1
    expected = revenue.most_common(3)
    assert list(top["trips"]) == [trips[location] for location, _ in expected]
    assert [round(v, 2) for v in top["revenue"]] == [round(v, 2) for _, v in expected]
    with (real_sample("README.md").parent / "taxi+_zone_lookup.csv").open(newline="") as file:
        zones = {row["LocationID"]: row["Zone"] for row in csv.DictReader(file)}
    assert list(top["zone"]) == [zones[location] for location, _ in expected]
