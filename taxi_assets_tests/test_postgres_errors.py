"""PostgreSQL errors are classified: what a retry may cure is retried; what needs fixing (a
setting, a table of another layout, a server out of memory) is not, and says in one line what
to fix. The errors come from the real server (a trigger raises the SQLSTATE where the real
condition cannot be made to order)."""

import os
import subprocess
import sys

import dagster as dg
import pytest

from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import GREEN
from taxi_assets_testkit.kestra_flow import GREEN_COLUMNS
from taxi_assets_testkit.synthetic import write_month
from taxi_assets_tests.databases import Db, replaced
from taxi_assets_tests.helpers import failure_message, rows_per_file
from taxi_assets_tests.mirror import Mirror
from taxi_assets_tests.runs import materialize_load

JAN = TaxiPartition("green", "2019-01")
KESTRA_TABLE = f"CREATE TABLE green_tripdata (unique_row_id text, filename text, {GREEN_COLUMNS}"


def _retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(
        event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for event in result.all_events
    )


def _one_line_not_retried(result: dg.ExecuteInProcessResult) -> str:
    """The failure's message, checked to be one line of a run that was not retried."""
    assert not result.success
    assert _retries(result) == 0
    message = failure_message(result).removeprefix("dagster._core.definitions.events.Failure: ")
    assert "\n" not in message.strip()
    return message.strip()


@pytest.fixture
def kestra_table(db: Db, mirror: Mirror):
    """`kestra_table(extra)`: a plain green table as the Kestra flow makes it (without the newer
    columns), plus `extra` (`, note text NOT NULL`), and a month to load into it."""

    def _make(extra: str = "") -> None:
        db.execute(f'CREATE SCHEMA "{db.warehouse.sql_schema}"')
        db.execute(KESTRA_TABLE + extra + ")")
        write_month(mirror.directory, GREEN, JAN, 200, seed=5)

    return _make


def test_a_schema_name_with_a_double_quote_is_a_setting_error(mirror, postgres_warehouse):
    """The loads would work (the driver quotes it), dbt would not (it does not double a `"`):
    refused when the code location loads, and by the load itself, naming TAXI_PG_SCHEMA."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import taxi_assets.definitions"],
        env={**os.environ, "TAXI_WAREHOUSE": "postgres", "TAXI_PG_SCHEMA": 'we"ird'},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    write_month(mirror.directory, GREEN, JAN, 10)
    weird = replaced(postgres_warehouse, sql_schema='we"ird')

    result = materialize_load(JAN, mirror.source(), weird, raise_on_error=False)

    assert loaded.returncode != 0
    expected = (
        "TAXI_PG_SCHEMA='we\"ird': a schema name without double quotes (dbt cannot quote one)"
    )
    assert loaded.stderr.strip() == expected
    assert _one_line_not_retried(result) == expected


def test_a_kestra_table_without_the_newer_columns_still_loads(kestra_table, load, db):
    kestra_table()

    result = load("2019-01|green")

    assert result.success
    assert rows_per_file(db, "green_tripdata") == {JAN.filename: 200}


@pytest.mark.parametrize(
    ("layout", "problem"),
    [
        (KESTRA_TABLE.replace("trip_type integer, ", "") + ")", "column trip_type missing"),
        (KESTRA_TABLE + ", note text NOT NULL)", "extra column note is NOT NULL without a default"),
        (
            KESTRA_TABLE.replace("unique_row_id text", "unique_row_id text UNIQUE") + ")",
            "UNIQUE index {schema}.green_tripdata_unique_row_id_key (unique_row_id)",
        ),
    ],
    ids=["missing-column", "extra-not-null-column", "unique-constraint"],
)
def test_a_table_of_another_layout_is_named_before_loading(mirror, load, db, layout, problem):
    """Refused before anything is loaded (the table keeps its rows), not retried."""
    schema = db.warehouse.sql_schema
    db.execute(f'CREATE SCHEMA "{schema}"')
    db.execute(layout)
    note = ("", "") if "note" not in layout else (", note", ", 'n'")
    db.execute(
        f"INSERT INTO green_tripdata (unique_row_id, filename{note[0]}) "
        f"VALUES ('x', 'old.csv'{note[1]})"
    )
    write_month(mirror.directory, GREEN, JAN, 200, seed=5)

    result = load("2019-01|green", raise_on_error=False)

    assert _one_line_not_retried(result) == (
        f"table {schema}.green_tripdata: {problem.format(schema=schema)}: not the trip table's "
        "layout; drop the table (it is created again) or fix it"
    )
    assert rows_per_file(db, "green_tripdata") == {"old.csv": 1}


def _raise_on_insert(db: Db, sqlstate: str, times: int) -> None:
    """The server raises `sqlstate` on the first `times` INSERTs into the green table."""
    sequence = f'"{db.warehouse.sql_schema}".raised'  # (the load's search path is its own)
    db.execute(f"CREATE SEQUENCE {sequence}")
    db.execute(
        "CREATE FUNCTION raise_state() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF nextval('{sequence}') <= {times} THEN "
        f"RAISE EXCEPTION 'raised by the test' USING ERRCODE = '{sqlstate}'; END IF; "
        "RETURN NULL; END $$"
    )
    db.execute(
        "CREATE TRIGGER raise_state BEFORE INSERT ON green_tripdata "
        "FOR EACH STATEMENT EXECUTE FUNCTION raise_state()"
    )


def test_the_server_out_of_memory_is_not_retried_and_says_what_to_fix(kestra_table, load, db):
    kestra_table()
    _raise_on_insert(db, "53200", times=1_000)

    result = load("2019-01|green", raise_on_error=False)

    message = _one_line_not_retried(result)
    assert message.startswith(
        f"PostgreSQL refused loading {JAN.filename} into {db.warehouse.sql_schema}.green_tripdata"
    )
    assert "(SQLSTATE 53200); the server ran out of memory: give it more" in message


@pytest.mark.parametrize(
    "sqlstate",
    ["40001", "40P01", "53300", "57P01", "08006"],
    ids=["serialization", "deadlock", "too-many-connections", "admin-shutdown", "connection"],
)
def test_transient_server_errors_are_retried(kestra_table, load, db, sqlstate):
    """A conflict, a busy or restarting server: the retry loads the month."""
    kestra_table()
    _raise_on_insert(db, sqlstate, times=1)

    result = load("2019-01|green")

    assert _retries(result) == 1
    assert rows_per_file(db, "green_tripdata") == {JAN.filename: 200}
