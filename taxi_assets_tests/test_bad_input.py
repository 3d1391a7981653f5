"""Bad input fails the run with a message that says what and where, and loses nothing: each
test loads a good month first, then a bad file for the same partition."""

import gzip
import os
import pwd
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from taxi_assets.partitions import TaxiPartition
from taxi_assets.resources import source_resource
from taxi_assets.settings import Settings
from taxi_assets.trip_schema import GREEN, YELLOW
from taxi_assets.warehouses.duckdb import DuckDBWarehouse
from taxi_assets.warehouses.postgres import PostgresWarehouse
from taxi_assets_testkit.local_servers import PG, free_port
from taxi_assets_testkit.synthetic import csv_lines, generate_rows, write_csv_gz, write_month
from taxi_assets_tests.databases import Db, replaced
from taxi_assets_tests.helpers import failure_message, fingerprint, table_exists, under_ci
from taxi_assets_tests.runs import materialize_load

JAN = TaxiPartition("green", "2019-01")
FILE = "green_tripdata_2019-01.csv.gz"


pytestmark = pytest.mark.every_warehouse  # every test here holds for PostgreSQL and DuckDB alike


@pytest.fixture
def loaded(mirror, load, db):
    """January loaded from a good file; returns the table's fingerprint."""
    write_month(mirror.directory, GREEN, JAN, 300)
    assert load("2019-01|green").success
    return fingerprint(db, "green_tripdata")


def _fails_and_keeps_table(load, db, before) -> str:
    result = load("2019-01|green", raise_on_error=False)
    assert not result.success
    assert fingerprint(db, "green_tripdata") == before
    return failure_message(result)


def _good_lines(count: int = 20) -> list[str]:
    return list(csv_lines(GREEN, list(generate_rows(GREEN, JAN, count, seed=7))))


# What each reader says, kept in the message.
UNREADABLE = {
    "unterminated-quote": (
        '"3,4',
        {
            "duckdb": "Value with unterminated quote found",
            "postgres": "unterminated CSV quoted field",
        },
    ),
    "invalid-utf8": (
        "\udcff\udcfe,1",
        {
            "duckdb": "This file is not utf-8 encoded",
            "postgres": 'invalid byte sequence for encoding "UTF8"',
        },
    ),
}


@pytest.mark.parametrize("case", UNREADABLE, ids=list(UNREADABLE))
def test_an_unreadable_line_keeps_the_readers_reason(mirror, load, db, loaded, case):
    bad_line, reasons = UNREADABLE[case]
    lines = _good_lines()
    data = "\r\n".join([*lines[:3], bad_line, *lines[3:]]) + "\r\n"
    mirror.put_bytes(JAN, gzip.compress(data.encode("utf-8", errors="surrogateescape")))

    message = _fails_and_keeps_table(load, db, loaded)
    # (PostgreSQL finds an unterminated quote at the file's end: the line where it begins)
    assert f"{FILE} line 4" in message and reasons[db.warehouse.kind] in message


def test_cr_only_line_endings_are_named(mirror, load, db, loaded):
    mirror.put_bytes(JAN, gzip.compress(("\r".join(_good_lines()) + "\r").encode()))

    message = _fails_and_keeps_table(load, db, loaded)
    assert f"{FILE}: its lines end in a bare CR (\\r), not in LF or CRLF" in message


def test_month_not_published(mirror, load, db):
    result = load("2019-03|green", raise_on_error=False)

    message = failure_message(result)
    assert "green_tripdata_2019-03.csv.gz is not published" in message
    assert f"HTTP 404 for {mirror.url}/green/green_tripdata_2019-03.csv.gz" in message
    assert not table_exists(db, "green_tripdata")


def test_truncated_gzip(mirror, load, db, loaded):
    good = gzip.compress("\r\n".join(_good_lines(2_000)).encode())
    mirror.put_bytes(JAN, good[: len(good) // 2])

    message = _fails_and_keeps_table(load, db, loaded)
    assert f"{FILE} is truncated" in message


def test_html_page_instead_of_gzip(mirror, load, db, loaded):
    mirror.put_bytes(JAN, b"<!DOCTYPE html>\n<html><body>Sign in to continue</body></html>\n")

    message = _fails_and_keeps_table(load, db, loaded)
    assert f"{FILE} is an HTML page, not a gzip file" in message


@pytest.mark.parametrize("content", [b"", gzip.compress(b"")], ids=["zero-bytes", "empty-gzip"])
def test_empty_file(mirror, load, db, loaded, content):
    mirror.put_bytes(JAN, content)

    message = _fails_and_keeps_table(load, db, loaded)
    assert f"{FILE} is empty: no header line" in message


def test_header_of_the_other_colour(mirror, load, db, loaded):
    yellow = TaxiPartition("yellow", "2019-01")
    write_csv_gz(mirror.path(JAN), csv_lines(YELLOW, list(generate_rows(YELLOW, yellow, 10))))

    message = _fails_and_keeps_table(load, db, loaded)
    assert f"{FILE}: the header does not match the green trip schema" in message
    assert "missing lpep_pickup_datetime, lpep_dropoff_datetime" in message
    assert "unexpected tpep_pickup_datetime, tpep_dropoff_datetime" in message
    assert "It is a yellow trip file." in message


def test_unparseable_timestamp_names_file_line_and_column(mirror, load, db, loaded):
    lines = _good_lines()
    fields = lines[4].split(",")  # file line 5
    fields[1] = "2019-01-32 10:00:00"
    lines[4] = ",".join(fields)
    write_csv_gz(mirror.path(JAN), iter(lines))

    message = _fails_and_keeps_table(load, db, loaded)
    assert f"{FILE} line 5, column lpep_pickup_datetime:" in message
    assert "2019-01-32 10:00:00" in message


def test_row_with_missing_fields(mirror, load, db, loaded):
    lines = _good_lines()
    lines[9] = ",".join(lines[9].split(",")[:12])  # file line 10
    write_csv_gz(mirror.path(JAN), iter(lines))

    message = _fails_and_keeps_table(load, db, loaded)
    assert f"{FILE} line 10" in message
    # PostgreSQL: "missing data for column …"; DuckDB: "Expected Number of Columns: 20 Found: 12"
    assert "column" in message.lower()


TOO_BIG = {
    "duckdb": "99999999999 is too big for an integer column (at most 2147483647)",
    "postgres": 'value "99999999999" is out of range for type integer',  # COPY's own words
}


@pytest.mark.parametrize(
    ("value", "problem"),
    [("1.5", {"duckdb": "1.5 is not a whole number", "postgres": "1.5 is not a whole number"}),
     ("99999999999", TOO_BIG)],
    ids=["fraction", "too-big"],
)  # fmt: skip
def test_fractional_integer_names_line_and_column(mirror, load, db, loaded, value, problem):
    lines = _good_lines()
    fields = lines[2].split(",")  # file line 3
    fields[GREEN.header.index("passenger_count")] = value
    lines[2] = ",".join(fields)
    write_csv_gz(mirror.path(JAN), iter(lines))

    message = _fails_and_keeps_table(load, db, loaded)
    assert f"{FILE} line 3, column passenger_count: {problem[db.warehouse.kind]}" in message


def test_a_file_far_beyond_any_month_is_refused_while_read(mirror, db, warehouse, loaded):
    """TAXI_MAX_ROWS (here 350): a file with more lines stops the load as the count passes it
    (a 2.9 MB gzip may expand to 10M rows), not retried, the table unchanged."""
    write_month(mirror.directory, GREEN, JAN, 5_000)

    result = materialize_load(JAN, mirror.source(max_rows=350), warehouse, raise_on_error=False)

    assert not result.success
    assert fingerprint(db, "green_tripdata") == loaded
    message = failure_message(result)
    assert f"{FILE}: more than 350 rows, far beyond any real month" in message
    assert "TAXI_MAX_ROWS sets the limit" in message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]


def test_the_limit_is_the_setting_taxi_max_rows(mirror, duckdb_warehouse, monkeypatch):
    monkeypatch.setenv("TAXI_MAX_ROWS", "350")
    monkeypatch.setenv("TAXI_SOURCE_URL", mirror.url)
    write_month(mirror.directory, GREEN, JAN, 400)

    source = source_resource(Settings.from_env())
    result = materialize_load(JAN, source, duckdb_warehouse, raise_on_error=False)

    assert f"{FILE}: more than 350 rows" in failure_message(result)


def test_quoted_line_break_is_caught_by_the_row_count(mirror, load, db, loaded):
    lines = _good_lines()
    fields = lines[3].split(",")
    fields[GREEN.header.index("store_and_fwd_flag")] = '"N\r\nY"'
    lines[3] = ",".join(fields)
    write_csv_gz(mirror.path(JAN), iter(lines))

    message = _fails_and_keeps_table(load, db, loaded)
    assert f"{FILE} line 4: a quoted field holds a line break (up to line 5)" in message
    assert "(21 data lines but 20 CSV rows)" in message


# Lines that are no trip: each named, whatever the warehouse's parser makes of it.
NOT_A_TRIP = {
    "blank": ("", {"duckdb": "a blank line", "postgres": "missing data for column"}),
    "end-of-data-marker": (
        "\\.",
        {
            # COPY stops at the marker: the row count catches it, the line is found
            "postgres": "a line holding only \\. (PostgreSQL's end-of-data marker)",
            "duckdb": "Expected Number of Columns: 20 Found: 1",
        },
    ),
}


@pytest.mark.parametrize("case", NOT_A_TRIP, ids=list(NOT_A_TRIP))
def test_a_line_that_is_no_trip_is_named(mirror, load, db, loaded, case):
    bad_line, says = NOT_A_TRIP[case]
    lines = _good_lines()
    write_csv_gz(mirror.path(JAN), iter([*lines[:6], bad_line, *lines[6:]]))

    message = _fails_and_keeps_table(load, db, loaded)
    assert f"{FILE} line 7" in message and says[db.warehouse.kind] in message


@contextmanager
def small_disk(directory: Path, size: str = "1m", options: str = "") -> Iterator[Path]:
    """A tmpfs of `size` mounted on `directory` (root only: CI runs as root)."""
    if os.geteuid() != 0:
        if under_ci():
            pytest.fail("mounting a tmpfs needs root: run CI as root")
        pytest.skip("mounting a tmpfs needs root")
    directory.mkdir(parents=True, exist_ok=True)
    mount_options = f"size={size}{options}"
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", mount_options, "tmpfs", str(directory)], check=True
    )
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def test_a_full_download_disk_is_named_and_not_retried(mirror, db, warehouse, loaded, tmp_path):
    mirror.put_bytes(JAN, os.urandom(3 << 20))  # 3 MiB for a 1 MiB disk
    with small_disk(tmp_path / "downloads") as downloads:
        source = mirror.source(download_dir=str(downloads))
        result = materialize_load(JAN, source, warehouse, raise_on_error=False)

    assert not result.success
    message = failure_message(result)
    assert f"no space left on device in {downloads}/taxi_assets-" in message
    assert f"for {FILE}" in message and "free space there" in message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
    assert fingerprint(db, "green_tripdata") == loaded


def test_a_full_duckdb_disk_is_named_and_not_retried(mirror, tmp_path):
    with small_disk(tmp_path / "db", "2m") as directory:
        warehouse = DuckDBWarehouse(path=str(directory / "taxi.duckdb"))
        write_month(mirror.directory, GREEN, JAN, 60_000)
        result = materialize_load(JAN, mirror.source(), warehouse, raise_on_error=False)

    assert not result.success
    message = failure_message(result)
    assert f"no space left on device for the DuckDB file {directory}/taxi.duckdb" in message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]


def test_a_full_postgres_disk_is_named_and_not_retried(mirror, postgres_warehouse):
    """The load's role writes to a tablespace on a 1 MiB disk of the (local) server."""
    write_month(mirror.directory, GREEN, JAN, 300)
    assert materialize_load(JAN, mirror.source(), postgres_warehouse).success
    db = Db(postgres_warehouse)
    before = fingerprint(db, "green_tripdata")
    write_month(mirror.directory, GREEN, JAN, 20_000)
    owner = pwd.getpwnam("postgres")
    admin = db.postgres
    role, space = f"full_{postgres_warehouse.sql_schema}", f"small_{postgres_warehouse.sql_schema}"
    where = Path(tempfile.mkdtemp(prefix="taxi_pg_space_"))
    where.chmod(0o755)  # the server's user reaches it
    with small_disk(where, options=f",uid={owner.pw_uid},gid={owner.pw_gid},mode=0700"):
        admin.execute(f"CREATE TABLESPACE \"{space}\" LOCATION '{where}'")
        admin.execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
        admin.execute(f'ALTER ROLE "{role}" SET default_tablespace = "{space}"')
        try:
            full = replaced(postgres_warehouse, user=role)
            result = materialize_load(JAN, mirror.source(), full, raise_on_error=False)
            assert fingerprint(db, "green_tripdata") == before
        finally:
            admin.execute(f'DROP SCHEMA IF EXISTS "{postgres_warehouse.sql_schema}" CASCADE')
            admin.execute(f'DROP ROLE "{role}"')
            admin.execute(f'DROP TABLESPACE "{space}"')
            db.close()
    where.rmdir()

    message = failure_message(result)
    assert f"PostgreSQL at {PG['host']}:{PG['port']}" in message
    assert "is out of disk space:" in message and "No space left on device" in message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]


def test_postgres_refusing_connections_gives_a_short_clear_message(mirror):
    write_month(mirror.directory, GREEN, JAN, 10)
    secret = "pw-5f8e2c-never-print-me"
    unreachable = PostgresWarehouse(
        host="127.0.0.1", port=free_port(), user="taxi", password=secret, database="ny_taxi"
    )

    result = materialize_load(JAN, mirror.source(), unreachable, raise_on_error=False)

    # Refused connections are worth retrying (a restarting server); after the retries, the
    # failure carries the one-line reason, and under it the driver's error (its diagnostics).
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert failure.message.startswith("Exceeded max_retries of 3")
    reason = failure.cause
    assert reason.message.startswith("dagster._core.definitions.events.Failure: cannot connect to")
    assert f"PostgreSQL at 127.0.0.1:{unreachable.port} (database 'ny_taxi', user 'taxi')" in (
        reason.message
    )
    assert "Connection refused" in reason.message
    assert reason.cause.cls_name == "WarehouseError"
    assert reason.cause.cause.cls_name == "OperationalError"
    assert all(secret not in str(event) for event in result.all_events)


def test_password_reaches_no_log_or_metadata(mirror, postgres_warehouse):
    """Trust auth ignores the password, so the load succeeds with one set; it shows nowhere."""
    write_month(mirror.directory, GREEN, JAN, 10)
    secret = "pw-0a9b8c-never-print-me"
    with_password = replaced(postgres_warehouse, password=secret)

    with dg.instance_for_test() as instance:
        result = materialize_load(JAN, mirror.source(), with_password, instance=instance)
        logs = instance.all_logs(result.run_id)
    assert result.success
    assert logs and all(secret not in str(entry) for entry in logs)


@pytest.mark.parametrize(
    ("setting", "value"), [("user", "nobody_at_all"), ("database", "no_such_database")]
)
def test_a_postgres_setting_to_fix_fails_at_once_and_says_which(mirror, setting, value):
    """A role or database that does not exist is not retried: the one line names the setting."""
    write_month(mirror.directory, GREEN, JAN, 10)
    settings = {"host": PG["host"], "port": PG["port"], "user": PG["user"], "database": "postgres"}
    wrong = PostgresWarehouse(**{**settings, setting: value})

    result = materialize_load(JAN, mirror.source(), wrong, raise_on_error=False)

    message = failure_message(result)
    assert not message.startswith("Exceeded max_retries")
    assert f'{setting if setting == "database" else "role"} "{value}" does not exist' in message
    assert message.rstrip().endswith(f"check PG{setting.upper()}")


def test_a_schema_the_user_may_not_create_in_is_named(mirror, postgres_warehouse):
    """A role without the CREATE privilege: not retried, one line naming user, schema and fix."""
    write_month(mirror.directory, GREEN, JAN, 10)
    role = f"reader_{postgres_warehouse.sql_schema}"
    admin = Db(postgres_warehouse).postgres
    admin.execute(f'CREATE ROLE "{role}" LOGIN')  # may connect, may not create a schema
    try:
        reader = replaced(postgres_warehouse, user=role)
        result = materialize_load(JAN, mirror.source(), reader, raise_on_error=False)
    finally:
        admin.execute(f'DROP ROLE "{role}"')

    message = failure_message(result)
    assert not message.startswith("Exceeded max_retries")
    assert f"PostgreSQL user '{role}' may not do this in schema '{reader.sql_schema}'" in message
    assert "permission denied" in message and "grant it the privilege" in message
