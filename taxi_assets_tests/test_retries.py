"""Transient failures are retried by the step's retry policy; permanent ones are not."""

import gzip

import dagster as dg

from taxi_assets.partitions import TaxiPartition
from taxi_assets.resources import TaxiSource
from taxi_assets.trip_schema import GREEN
from taxi_assets_testkit.synthetic import write_month
from taxi_assets_tests.helpers import failure_message, rows_per_file
from taxi_assets_tests.runs import materialize_load

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


def test_a_host_that_does_not_resolve_fails_at_once_in_one_line(warehouse):
    """Offline, or a typo in TAXI_SOURCE_URL: retrying cannot help, so nothing is retried."""
    source = TaxiSource(base_url="https://taxi-files.invalid/release")
    result = materialize_load("2019-01|green", source, warehouse, raise_on_error=False)

    message = failure_message(result).removeprefix("dagster._core.definitions.events.Failure: ")
    assert message.startswith(
        "cannot download https://taxi-files.invalid/release/green/green_tripdata_2019-01.csv.gz: "
        "the host 'taxi-files.invalid' cannot be resolved"
    )
    assert "TAXI_SOURCE_URL can name a local mirror" in message
    assert "\n" not in message.strip()
    assert _retries(result) == 0
