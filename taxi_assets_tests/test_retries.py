"""Transient failures are retried by the step's retry policy; permanent ones are not."""

import gzip

import dagster as dg

from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import GREEN
from taxi_assets_tests.helpers import failure_message, rows_per_file
from taxi_assets_tests.synthetic import write_month

JAN = TaxiPartition("green", "2019-01")


def _retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(
        event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for event in result.all_events
    )


def test_a_dropped_download_is_retried_and_the_run_succeeds(mirror, load, db):
    write_month(mirror.directory, GREEN, JAN, 3_000)
    mirror.break_off(JAN, transfers=1)

    result = load("2019-01|green")

    assert result.success
    assert _retries(result) == 1
    assert mirror.hits(JAN) == 2
    assert rows_per_file(db, "green_tripdata") == {"green_tripdata_2019-01.csv": 3_000}


def test_a_month_not_published_is_not_retried(mirror, load):
    result = load("2019-01|green", raise_on_error=False)

    assert not result.success
    assert "is not published" in failure_message(result)
    assert _retries(result) == 0
    assert mirror.hits(JAN) == 1


def test_a_bad_header_is_not_retried(mirror, load):
    mirror.put_bytes(JAN, gzip.compress(b"a,b,c\r\n1,2,3\r\n"))

    result = load("2019-01|green", raise_on_error=False)

    assert "the header does not match" in failure_message(result)
    assert _retries(result) == 0
    assert mirror.hits(JAN) == 1
