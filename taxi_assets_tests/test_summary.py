"""The summary `make demo` prints: top pickup zones by revenue, checked against the file."""

import collections
import csv
import gzip
import os
import subprocess
import sys
from pathlib import Path

from taxi_assets.partitions import TaxiPartition
from taxi_assets.summary import top_pickup_zones
from taxi_assets.trip_schema import GREEN
from taxi_assets_testkit.synthetic import write_month
from taxi_assets_tests.databases import warehouse_env
from taxi_assets_tests.samples import real_sample


def test_top_pickup_zones_of_the_real_month(mirror, load, warehouse):
    partition = TaxiPartition("green", "2020-10")
    path = mirror.put_gz(partition, real_sample("green_tripdata_2020-10.csv.gz"))
    load("2020-10|green")

    with warehouse.reading() as trips:
        top = top_pickup_zones(trips, partition, limit=3)

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


def _summary(key: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "taxi_assets.summary", key],
        env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_summary_command_says_what_is_wrong_and_exits_non_zero(
    tmp_path, mirror, warehouse, load
):
    """As `make demo` runs it: a loaded month prints its summary; a month not loaded, a reversed
    key, a malformed one or an unusable setting each get one line and a non-zero status."""
    write_month(mirror.directory, GREEN, TaxiPartition("green", "2019-01"), 50)
    env = warehouse_env(warehouse)
    load("2019-01|green")

    # The warehouse chosen in `.env`, as `make demo` and the dagster commands read it.
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text("".join(f"{name}={value}\n" for name, value in env.items()))
    loaded = _summary("2019-01|green", {}, cwd=project)
    not_loaded = _summary("2019-02|green", env)
    reversed_key = _summary("green|2019-01", env)
    malformed = _summary("foo", env)

    assert loaded.returncode == 0 and "green_tripdata_2019-01.csv: 50 trips in" in loaded.stdout
    assert not_loaded.returncode == 1
    assert not_loaded.stdout.strip() == (
        f"2019-02|green is not loaded: no rows of green_tripdata_2019-02.csv in "
        f"{warehouse.database}.{warehouse.sql_schema}.green_tripdata"
    )
    assert reversed_key.returncode == 2
    assert reversed_key.stderr.strip() == (
        "'green|2019-01' is not a partition key: month first, then colour (2019-01|green)"
    )
    bad_port = _summary("2019-01|green", {**env, "PGPORT": "five"})
    assert bad_port.returncode == 2
    assert bad_port.stderr.strip() == "PGPORT='five': a TCP port number, at least 1"
    assert malformed.returncode == 2
    assert malformed.stderr.strip() == (
        "'foo' is not a partition key: MONTH|COLOUR, e.g. 2019-01|green"
    )
