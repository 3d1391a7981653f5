"""Partitions and schedules: the keys, the file names a key stands for, the schemas' headers
against the real files, the month a schedule's tick loads."""

import gzip
from datetime import date, datetime

import pytest

from taxi_assets.partitions import TaxiPartition, taxi_month_partitions
from taxi_assets.schedules import month_for_tick
from taxi_assets.trip_schema import GREEN, TRIP_SCHEMAS, YELLOW
from taxi_assets_tests.runs import taxi_schedules
from taxi_assets_tests.samples import real_sample

pytestmark = pytest.mark.unit


def test_partition_keys_read_month_then_colour_and_reach_the_current_month():
    keys = taxi_month_partitions.get_partition_keys()
    this_month = date.today().strftime("%Y-%m")
    assert keys[:2] == ["2019-01|yellow", "2019-01|green"]
    assert {f"{this_month}|green", f"{this_month}|yellow"} <= set(keys)
    assert "2021-07|green" in keys


def test_partition_names():
    december = TaxiPartition.from_key("2020-12|yellow")
    assert december.filename == "yellow_tripdata_2020-12.csv"
    assert december.source_filename == "yellow_tripdata_2020-12.csv.gz"
    assert (december.month_start, december.month_end) == (date(2020, 12, 1), date(2021, 1, 1))
    assert str(december.key) == "2020-12|yellow"


@pytest.mark.parametrize(
    ("schema", "sample", "columns"),
    [
        (YELLOW, "yellow_tripdata_2021-01_head22792.csv", 18),
        (GREEN, "green_tripdata_2020-10.csv.gz", 20),
    ],
)
def test_schemas_match_the_real_headers(schema, sample, columns):
    opener = gzip.open if sample.endswith(".gz") else open
    with opener(real_sample(sample), "rt") as file:
        header = file.readline().strip().split(",")
    assert list(schema.header) == header
    assert len(header) == columns
    assert TRIP_SCHEMAS[schema.taxi] is schema


def test_the_two_schedules_fire_on_the_first_at_nine_and_ten():
    by_name = {schedule.name: schedule for schedule in taxi_schedules}
    assert by_name["green_taxi_monthly"].cron_schedule == "0 9 1 * *"
    assert by_name["yellow_taxi_monthly"].cron_schedule == "0 10 1 * *"
    assert {s.execution_timezone for s in taxi_schedules} == {"UTC"}
    assert {s.job_name for s in taxi_schedules} == {"taxi_trips_job"}


@pytest.mark.parametrize(
    ("which", "tick", "month"),
    [
        ("previous", datetime(2021, 3, 1, 9), "2021-02"),
        ("previous", datetime(2021, 1, 1, 9), "2020-12"),
        ("current", datetime(2021, 3, 1, 9), "2021-03"),
    ],
)
def test_month_for_tick(which, tick, month):
    assert month_for_tick(tick, which) == month
