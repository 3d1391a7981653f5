"""PostgreSQL loads a clean file with several sessions at once, each copying and staging a batch
at a time, and a file they refuse again with one session (which names the line): both give the
Kestra flow's ids. One failing session, in its COPY or in staging a batch, stops them all; an
interrupt aborts every COPY."""

import collections
import threading
import time

import dagster as dg
import psycopg
import pytest

from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import GREEN, ColumnType
from taxi_assets.warehouses.parallel_copy import Batches, copy_in_parallel
from taxi_assets_testkit.kestra_flow import kestra_ids
from taxi_assets_testkit.local_servers import PG
from taxi_assets_testkit.synthetic import (
    csv_lines,
    expected_unique_row_id,
    generate_rows,
    write_csv_gz,
)
from taxi_assets_tests.databases import Db, replaced
from taxi_assets_tests.runs import materialize_load

JAN = TaxiPartition("green", "2019-01")
ONE_SESSION = "loading the file again with one session"


def clean_rows(count: int, seed: int = 0) -> list[dict[str, str]]:
    """Generated rows with integers written plain (`1`, never `1.0`), as the real files do."""
    rows = list(generate_rows(GREEN, JAN, count, seed))
    integers = [c.name for c in GREEN.columns if c.type is ColumnType.INTEGER]
    return [{**row, **{name: row[name].removesuffix(".0") for name in integers}} for row in rows]


def load_logged(load, key: str) -> tuple[dg.ExecuteInProcessResult, str]:
    """Load `key`; the result and the run's log messages."""
    instance = dg.DagsterInstance.ephemeral()
    result = load(key, instance=instance)
    messages = "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))
    return result, messages


def ids_in_table(db) -> collections.Counter:
    return collections.Counter(r[0] for r in db.execute("SELECT unique_row_id FROM green_tripdata"))


def test_a_clean_month_of_many_chunks_is_copied_in_parallel_with_the_seed_ids(mirror, load, db):
    """30k rows are ~4 MiB of CSV: several chunks, shared among the sessions."""
    rows = clean_rows(30_000, seed=1)
    path = write_csv_gz(mirror.path(JAN), csv_lines(GREEN, rows))

    result, messages = load_logged(load, "2019-01|green")

    assert result.success
    assert ONE_SESSION not in messages
    assert ids_in_table(db) == collections.Counter(
        kestra_ids(db.postgres, "green", path, JAN.filename)
    )


def test_integers_written_as_decimals_are_copied_by_one_session(mirror, load, db):
    rows = clean_rows(2_000)
    rows[1_500]["passenger_count"] = "2.0"
    write_csv_gz(mirror.path(JAN), csv_lines(GREEN, rows))

    result, messages = load_logged(load, "2019-01|green")

    assert result.success
    assert ONE_SESSION in messages
    twos = db.execute("SELECT count(*) FROM green_tripdata WHERE passenger_count = 2")
    assert twos.fetchone()[0] == sum(row["passenger_count"] in ("2", "2.0") for row in rows)
    # (the Kestra flow's own COPY refuses `2.0`: the ids are computed here)
    assert ids_in_table(db) == collections.Counter(
        expected_unique_row_id(GREEN, row) for row in rows
    )


def test_a_role_without_temporary_tables_loads_with_one_session(mirror, postgres_warehouse):
    """The writers' batches go through temporary tables; a role the database refuses them (a
    REVOKE of TEMPORARY from PUBLIC) loads through an unlogged table of its schema instead."""
    rows = clean_rows(3_000, seed=2)
    path = write_csv_gz(mirror.path(JAN), csv_lines(GREEN, rows))
    role, database = f"notemp_{postgres_warehouse.sql_schema}", postgres_warehouse.database
    db = Db(postgres_warehouse)
    admin = db.postgres
    admin.execute(f'CREATE ROLE "{role}" LOGIN')
    admin.execute(f'GRANT CREATE ON DATABASE "{database}" TO "{role}"')
    admin.execute(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC')
    try:
        instance = dg.DagsterInstance.ephemeral()
        no_temp = replaced(postgres_warehouse, user=role)
        result = materialize_load(JAN, mirror.source(), no_temp, instance=instance)
        messages = "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))
        loaded = collections.Counter(
            r[0]
            for r in admin.execute(
                f'SELECT unique_row_id FROM "{postgres_warehouse.sql_schema}".green_tripdata'
            )
        )
        expected = collections.Counter(kestra_ids(admin, "green", path, JAN.filename))
    finally:
        admin.execute(f'GRANT TEMPORARY ON DATABASE "{database}" TO PUBLIC')
        admin.execute(f'DROP SCHEMA IF EXISTS "{postgres_warehouse.sql_schema}" CASCADE')
        admin.execute(f'REVOKE CREATE ON DATABASE "{database}" FROM "{role}"')
        admin.execute(f'DROP ROLE "{role}"')
        db.close()

    assert result.success
    assert "permission denied to create temporary tables" in messages and ONE_SESSION in messages
    assert sum(loaded.values()) == len(rows)
    assert loaded == expected


# -- copy_in_parallel on its own ---------------------------------------------------------------


@pytest.fixture
def table(test_database):
    """An empty table `t (n integer)`; a connection factory for it."""
    with psycopg.connect(dbname=test_database, autocommit=True, **PG) as connection:
        connection.execute("DROP TABLE IF EXISTS parallel_copy_t")
        connection.execute("CREATE TABLE parallel_copy_t (n integer)")

        def connect():
            return psycopg.connect(dbname=test_database, autocommit=True, **PG)

        yield connection, connect
        connection.execute("DROP TABLE parallel_copy_t")


COPY = "COPY parallel_copy_t (n) FROM STDIN (FORMAT csv)"


def numbers(first: int, count: int) -> bytes:
    return "".join(f"{n}\n" for n in range(first, first + count)).encode()


def copy_sessions(connection) -> int:
    """The other sessions in the test's database: the COPY sessions, while they last."""
    return connection.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
        "AND datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchone()[0]


def copy_sessions_left(connection) -> int:
    """The COPY sessions still open once they have had 10 s to end: the server notes a closed
    session's end a moment after the client closed it (longer on a busy machine)."""
    deadline = time.monotonic() + 10
    while copy_sessions(connection) and time.monotonic() < deadline:
        time.sleep(0.05)
    return copy_sessions(connection)


def test_every_line_is_copied_once(table):
    connection, connect = table
    chunks = [numbers(i * 1_000, 1_000) for i in range(50)]

    copied = copy_in_parallel(connect, COPY, chunks, sessions=3)

    assert copied == 50_000
    found = connection.execute("SELECT count(*), count(DISTINCT n), sum(n) FROM parallel_copy_t")
    assert found.fetchone() == (50_000, 50_000, sum(range(50_000)))


def test_one_bad_line_is_raised_once_every_session_has_ended(table):
    connection, connect = table
    chunks = [numbers(i * 1_000, 1_000) for i in range(50)]
    chunks[20] = b"1\nnot a number\n"

    with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="not a number"):
        copy_in_parallel(connect, COPY, chunks, sessions=2)

    # (the other session may have committed its share: the caller drops the table)
    assert copy_sessions_left(connection) == 0


def test_an_interrupt_of_the_feeder_stops_every_session(table):
    connection, connect = table
    started = threading.Event()

    def chunks():
        for i in range(10):
            yield numbers(i * 1_000, 1_000)
        started.set()
        raise KeyboardInterrupt  # Ctrl-C while reading the file

    with pytest.raises(KeyboardInterrupt):
        copy_in_parallel(connect, COPY, chunks(), sessions=2)

    assert started.is_set()
    assert connection.execute("SELECT count(*) FROM parallel_copy_t").fetchone()[0] == 0
    assert copy_sessions_left(connection) == 0


# A session's own table for its batches, emptied when each batch commits, and what stages them.
BATCH_COPY = "COPY pg_temp.batch (n) FROM STDIN (FORMAT csv)"
OWN_TABLE = ("CREATE TEMPORARY TABLE batch (n integer) ON COMMIT DELETE ROWS", ())


def test_in_batches_every_line_is_staged_once(table):
    connection, connect = table
    chunks = [numbers(i * 1_000, 1_000) for i in range(50)]
    batches = Batches(
        size=3 * len(chunks[0]),
        prepare=[OWN_TABLE],
        after_each=[("INSERT INTO parallel_copy_t SELECT n * %s FROM pg_temp.batch", [2])],
    )

    copied = copy_in_parallel(connect, BATCH_COPY, chunks, sessions=2, batches=batches)

    assert copied == 50_000
    found = connection.execute("SELECT count(*), count(DISTINCT n), sum(n) FROM parallel_copy_t")
    assert found.fetchone() == (50_000, 50_000, 2 * sum(range(50_000)))


def test_a_batch_that_fails_to_stage_stops_every_session(table):
    connection, connect = table
    chunks = [numbers(i * 1_000, 1_000) for i in range(50)]
    batches = Batches(
        size=len(chunks[0]),
        prepare=[OWN_TABLE],
        after_each=[("INSERT INTO parallel_copy_t SELECT 1 / (n - 30000) FROM pg_temp.batch", ())],
    )

    with pytest.raises(psycopg.errors.DivisionByZero):
        copy_in_parallel(connect, BATCH_COPY, chunks, sessions=2, batches=batches)

    assert copy_sessions_left(connection) == 0
