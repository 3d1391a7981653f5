"""Transient failures are retried by the step's retry policy; permanent ones are not."""

import gzip
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from taxi_assets.assets import MAX_RETRIES
from taxi_assets.partitions import TaxiPartition
from taxi_assets.resources import TaxiSource
from taxi_assets.trip_schema import GREEN
from taxi_assets_testkit.local_servers import QuietHandler, serve_directory
from taxi_assets_testkit.synthetic import write_month
from taxi_assets_tests.helpers import failure_message, rows_per_file
from taxi_assets_tests.runs import materialize_load

JAN = TaxiPartition("green", "2019-01")
ROOT = Path(__file__).resolve().parent.parent


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
    assert message.strip().endswith(
        "TAXI_SOURCE_URL can name a local mirror, such as the month this project ships: "
        f"{ROOT / 'sample_source'}"
    )
    assert "\n" not in message.strip()
    assert _retries(result) == 0


class _CountingHandler(QuietHandler):
    """Counts the requests it gets (a fresh subclass per server: `served(...)`)."""

    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        self.answer()

    def answer(self) -> None:
        raise NotImplementedError


class _NeverAnswers(_CountingHandler):
    """Accepts the request and sends nothing until the test ends."""

    released = threading.Event()

    def answer(self) -> None:
        self.released.wait(60)
        self.close_connection = True


class _Always503(_CountingHandler):
    def answer(self) -> None:
        self.send_error(503)


@pytest.fixture
def served(tmp_path):
    """`served(handler)`: a real HTTP server with a fresh subclass of `handler`, and the class."""
    servers = []

    def _serve(handler: type[_CountingHandler]) -> tuple[str, type[_CountingHandler]]:
        fresh = type(handler.__name__, (handler,), {"requests": 0, "released": threading.Event()})
        server, url = serve_directory(tmp_path, fresh)
        servers.append((server, fresh))
        return url, fresh

    yield _serve
    for server, handler in servers:
        handler.released.set()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("handler", [_NeverAnswers, _Always503])
def test_a_server_that_never_answers_fails_after_one_attempt_per_try(served, warehouse, handler):
    """One retry layer (the step's policy, docs/operations.md "Retries"): the server sees exactly
    1 + max_retries requests, and the run ends in about that many read timeouts."""
    url, counting = served(handler)
    source = TaxiSource(base_url=url, timeout_seconds=0.5)
    started = time.monotonic()

    result = materialize_load("2019-01|green", source, warehouse, raise_on_error=False)

    assert not result.success
    assert _retries(result) == MAX_RETRIES
    assert counting.requests == 1 + MAX_RETRIES
    # 4 read timeouts of 0.5 s and delays of 0.2 ± 0.2, 0.6 ± 0.2, 1.4 ± 0.2 s.
    assert time.monotonic() - started < 4 * 0.5 + 2.8 + 10
