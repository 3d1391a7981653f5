"""PostgreSQL keeps each file in a partition of its own and swaps a re-loaded month in whole;
a plain table (the Kestra flow's, or an earlier version's) keeps working as it is."""

import collections
import logging
import threading
import time

import psycopg
import pytest
from psycopg import sql

from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import GREEN
from taxi_assets.warehouses import postgres_tables
from taxi_assets_testkit.kestra_flow import GREEN_COLUMNS
from taxi_assets_testkit.local_servers import PG
from taxi_assets_testkit.synthetic import expected_unique_row_id, write_month
from taxi_assets_tests.helpers import check_results, fingerprint, metadata, rows_per_file

JAN = TaxiPartition("green", "2019-01")
FEB = TaxiPartition("green", "2019-02")


def relkind(db, table: str) -> str:
    return db.execute(
        "SELECT c.relkind FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (db.warehouse.sql_schema, table),
    ).fetchone()[0]


def partitions(db, table: str) -> dict[str, str]:
    """Partition name -> its bound, as the catalog says."""
    rows = db.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits AS i "
        "JOIN pg_class AS c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)",
        (f'"{db.warehouse.sql_schema}"."{table}"',),
    ).fetchall()
    return dict(rows)


def test_each_file_is_a_partition_of_one_table(mirror, load, db):
    write_month(mirror.directory, GREEN, JAN, 300)
    write_month(mirror.directory, GREEN, FEB, 200)

    load("2019-01|green")
    load("2019-02|green")

    assert relkind(db, "green_tripdata") == "p"
    assert partitions(db, "green_tripdata") == {
        "green_tripdata_file_2019_01": "FOR VALUES IN ('green_tripdata_2019-01.csv')",
        "green_tripdata_file_2019_02": "FOR VALUES IN ('green_tripdata_2019-02.csv')",
    }
    assert rows_per_file(db, "green_tripdata") == {
        "green_tripdata_2019-01.csv": 300,
        "green_tripdata_2019-02.csv": 200,
    }
    # Readers see the Kestra DDL's columns, in its order, then the TLC's newer ones.
    columns = db.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = 'green_tripdata' ORDER BY ordinal_position",
        (db.warehouse.sql_schema,),
    ).fetchall()
    assert [c[0] for c in columns] == ["unique_row_id", "filename"] + [
        c.name.lower() for c in GREEN.columns
    ] + ["cbd_congestion_fee"]


def test_reload_swaps_the_partition_and_leaves_nothing_behind(mirror, load, db):
    write_month(mirror.directory, GREEN, JAN, 500, seed=1)
    load("2019-01|green")
    new_rows = write_month(mirror.directory, GREEN, JAN, 400, seed=2)

    result = load("2019-01|green")

    assert metadata(result)["replaced_rows"] == 500
    assert metadata(result)["rows_in_table"] == 400
    ids = sorted(r[0] for r in db.execute("SELECT unique_row_id FROM green_tripdata").fetchall())
    assert ids == sorted(expected_unique_row_id(GREEN, row) for row in new_rows)
    tables = {
        r[0]
        for r in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (db.warehouse.sql_schema,),
        ).fetchall()
    }
    assert tables == {"green_tripdata", "yellow_tripdata", "green_tripdata_file_2019_01"}


def test_a_plain_kestra_table_keeps_working(mirror, load, db):
    """A table the Kestra flow created (no partitions, no indexes) is loaded by DELETE + INSERT
    and stays a plain table; rows of files loaded by Kestra stay untouched."""
    db.execute(f'CREATE SCHEMA "{db.warehouse.sql_schema}"')
    db.execute(f"CREATE TABLE green_tripdata (unique_row_id text, filename text, {GREEN_COLUMNS})")
    db.execute(
        "INSERT INTO green_tripdata (unique_row_id, filename, vendorid) "
        "VALUES ('kestra-id', 'green_tripdata_2018-12.csv', '2')"
    )
    write_month(mirror.directory, GREEN, JAN, 300, seed=1)
    load("2019-01|green")
    rows = write_month(mirror.directory, GREEN, JAN, 250, seed=2)

    result = load("2019-01|green")

    assert relkind(db, "green_tripdata") == "r"
    assert metadata(result)["replaced_rows"] == 300
    assert rows_per_file(db, "green_tripdata") == {
        "green_tripdata_2018-12.csv": 1,
        "green_tripdata_2019-01.csv": 250,
    }
    ids = db.execute(
        "SELECT unique_row_id FROM green_tripdata WHERE filename = %s", (JAN.filename,)
    ).fetchall()
    assert sorted(r[0] for r in ids) == sorted(expected_unique_row_id(GREEN, r) for r in rows)
    assert check_results(result)["rows_match_source"].passed


def test_two_runs_of_the_same_partition_at_once_queue(mirror, load, db):
    """The partition's advisory lock: the second run waits for the first instead of dropping
    its scratch tables or swapping a half-built partition in."""
    rows = write_month(mirror.directory, GREEN, JAN, 30_000, seed=4)
    results = []

    def run():
        results.append(load("2019-01|green", raise_on_error=False))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [result.success for result in results] == [True, True]
    retried = [
        e for r in results for e in r.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"
    ]
    assert retried == []  # neither run got in the other's way
    assert rows_per_file(db, "green_tripdata") == {"green_tripdata_2019-01.csv": 30_000}
    ids = collections.Counter(r[0] for r in db.execute("SELECT unique_row_id FROM green_tripdata"))
    assert ids == collections.Counter(expected_unique_row_id(GREEN, row) for row in rows)


def test_a_run_waiting_for_another_run_of_its_month_says_so(mirror, load, db, monkeypatch, caplog):
    """Another session holds the month's advisory lock (as a run of it would): the load waits,
    says so in its log, and loads once the lock is free."""
    monkeypatch.setattr(postgres_tables, "PARTITION_WAIT_LOG_SECONDS", 0.2)
    caplog.set_level(logging.INFO)
    write_month(mirror.directory, GREEN, JAN, 100)
    key = postgres_tables.lock_key(db.warehouse.sql_schema, JAN.filename)
    results = []
    with psycopg.connect(**PG, dbname=db.warehouse.database, autocommit=True) as other_run:
        other_run.execute(sql.SQL("SELECT pg_advisory_lock({})").format(key))
        waiting = threading.Thread(target=lambda: results.append(load(str(JAN.key))))
        waiting.start()
        deadline = time.monotonic() + 60
        while "waiting for another run of this month" not in caplog.text:
            assert time.monotonic() < deadline, "the load did not say that it waits"
            time.sleep(0.1)
        loaded_meanwhile = db.table_exists("green_tripdata")  # the wait comes before all
    waiting.join(timeout=120)

    assert not loaded_meanwhile
    assert "green_tripdata_2019-01.csv: waiting for another run of this month to end" in (
        caplog.text
    )
    assert results[0].success
    assert rows_per_file(db, "green_tripdata") == {"green_tripdata_2019-01.csv": 100}


def test_an_open_write_on_one_colour_never_holds_a_load_of_the_other(mirror, load, db):
    """A session that wrote nothing to yellow_tripdata and idles in its transaction: green loads
    (a new month and a re-load) take no lock on the yellow table, so they end while that
    transaction is still open (a wait on it would last until its rollback)."""
    write_month(mirror.directory, GREEN, JAN, 500)
    write_month(mirror.directory, GREEN, TaxiPartition("green", "2019-02"), 400)
    load("2019-01|green")  # both colours' tables exist now
    table = f'"{db.warehouse.sql_schema}"."yellow_tripdata"'
    loads = []
    with psycopg.connect(**PG, dbname=db.warehouse.database) as idle_writer:
        idle_writer.execute(f"DELETE FROM {table} WHERE false")  # its transaction stays open
        green = threading.Thread(
            target=lambda: loads.extend(load(key) for key in ("2019-02|green", "2019-01|green"))
        )
        green.start()
        green.join(timeout=300)
        held = green.is_alive()
        idle_writer.rollback()
    green.join()

    assert not held, "a green load waited for the open transaction on yellow_tripdata"
    assert [result.success for result in loads] == [True, True]
    assert rows_per_file(db, "green_tripdata") == {
        "green_tripdata_2019-01.csv": 500,
        "green_tripdata_2019-02.csv": 400,
    }


def test_a_long_reader_delays_the_swap_without_blocking_other_readers(mirror, load, db, caplog):
    """Re-loading a month detaches its old partition, which needs the table to itself for a
    moment. While a long query holds the table, the swap waits in short attempts, so other
    readers keep getting answers, and says so every `PARTITION_WAIT_LOG_SECONDS` (not at each
    attempt); once the long query ends, the swap goes through."""
    caplog.set_level(logging.INFO)
    write_month(mirror.directory, GREEN, JAN, 300, seed=1)
    load("2019-01|green")
    write_month(mirror.directory, GREEN, JAN, 200, seed=2)
    table = f'"{db.warehouse.sql_schema}"."green_tripdata"'
    dsn = {**PG, "dbname": db.warehouse.database}

    with psycopg.connect(**dsn) as long_reader:  # a transaction stays open until we say
        long_reader.execute(f"SELECT count(*) FROM {table}").fetchone()
        reload = threading.Thread(target=load, args=("2019-01|green",))
        reload.start()
        started = time.monotonic()
        with psycopg.connect(**dsn, autocommit=True) as watcher:
            wait_until_swap_waits(watcher)
            answered_during_swap = 0
            for _ in range(3):
                # Each answer comes while the long reader still holds the table.
                assert watcher.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 300
                answered_during_swap += 1
                time.sleep(1.0)
        assert reload.is_alive(), "the swap must wait for the long reader"
        long_reader.rollback()
    reload.join(timeout=60)
    waited = time.monotonic() - started

    assert answered_during_swap == 3
    assert not reload.is_alive()
    assert fingerprint(db, "green_tripdata")[0] == 200
    said = caplog.text.count("is in use by another session")
    assert said <= waited // postgres_tables.PARTITION_WAIT_LOG_SECONDS, (said, waited)


def wait_until_swap_waits(watcher: psycopg.Connection, timeout: float = 60.0) -> None:
    """Until the load's session has asked for the table's lock at least once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'taxi_assets' "
            "AND datname = current_database() AND query LIKE '%DETACH PARTITION%'"
        ).fetchone()[0]
        if waiting:
            return
        time.sleep(0.05)
    pytest.fail("the re-load never reached its swap")
