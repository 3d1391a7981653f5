"""PostgreSQL: the seeds' warehouse. COPY streams the file in; a month is swapped in whole.

`{taxi}_tripdata` is partitioned by `filename` (LIST), one partition per loaded file
(`{taxi}_tripdata_file_{YYYY_MM}`). Readers still see one table with the Kestra DDL's name and
columns. A load builds the file's new partition aside (`partition_load.py`: two sessions each COPY
a batch of the file's lines into a temporary table and write its final rows in one pass, batch
after batch), then swaps it in: in one short transaction the old partition is detached and dropped
and the new one attached. Replacing a month therefore costs the same whatever the table holds,
and no index grows with it.

Locks: attaching a first partition never blocks readers; detaching a loaded month takes an ACCESS
EXCLUSIVE lock on the table for a moment. That wait is bounded (`lock_timeout`), logged and
retried, so a long reader delays the swap instead of queueing every other reader behind it.

A plain `{taxi}_tripdata` (made by the Kestra flow or by an earlier version of this project) keeps
working: its rows are replaced with DELETE + INSERT, as before.

Every load holds a session advisory lock on its file, so two runs of the same partition queue
instead of colliding; other partitions never wait.
"""

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import dagster as dg
import psycopg
from psycopg import sql
from pydantic import Field

from taxi_assets.errors import OutOfSpace, SourceError, WarehouseError, WarehouseMisconfigured
from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_csv import TripCsv
from taxi_assets.trip_schema import TRIP_SCHEMAS, Column, ColumnType, TripSchema
from taxi_assets.variables import BY_NAME
from taxi_assets.warehouses.base import MergedPartition, PartitionLoad, TaxiWarehouse
from taxi_assets.warehouses.parallel_copy import Batches, copy_in_parallel
from taxi_assets.warehouses.partition_load import SqlPartitionLoad
from taxi_assets.warehouses.trip_queries import TripQueries

T = TypeVar("T")

# The Kestra DDL's types for the main and staging tables.
TABLE_TYPES = {
    ColumnType.TEXT: "text",
    ColumnType.TIMESTAMP: "timestamp",
    ColumnType.INTEGER: "integer",
    ColumnType.FLOAT: "double precision",
}
# Timestamps are copied as text and held to the contract's form while staging (by two sessions),
# then cast (which refuses a date or time that does not exist): of 19 characters with `-`, ` `
# and `:` in their places (no date alone, no other order, no `T`, no fractions, no `infinity`),
# and not the two PostgreSQL would roll over (`24:00:00`, a 60th second). Measured on 250k rows:
# this check costs 0.05 s, reading the text back after the cast 0.11 s, a regular expression 1.7 s.
# COPY of text is 0.05 s faster than of timestamps, the staging pass 0.1 s slower (cast, checks):
# a 250k-row month loads in 1.50 s instead of 1.44 s (medians, a shared 2-core machine).
# (`%%`: the staging query takes a parameter; in LIKE, `%%` means what `%` does anyway.)
TIMESTAMP_HELD = (
    "{c} LIKE '____-__-__ __:__:__' AND {c} NOT LIKE '%% 24:%%' AND {c} NOT LIKE '%%:60'"
)
# How long the swap waits for a lock at a time, and how long it keeps trying.
SWAP_LOCK_TIMEOUT_SECONDS = 2.0
SWAP_DEADLINE_SECONDS = 600.0
# Another run of the same month: how long to wait for it, and how often to say so.
PARTITION_WAIT_SECONDS = 3600.0
PARTITION_WAIT_LOG_SECONDS = 10.0
EDGES_INDEX = "_month_edges_idx"
# A connection silent this long (a frozen network or a dead host: no FIN, no RST) counts as dead
# on both ends (TAXI_PG_DEAD_CONNECTION_SECONDS): see `DeadConnectionLimits`.
DEAD_CONNECTION_SECONDS = 60
# Sessions that write a staged table side by side: PostgreSQL inserts row by row, one core per
# session, and a load is otherwise bound to one core.
STAGING_WRITERS = 2
# What each of them copies at a time: 4 MiB of CSV take about 6 MB as rows, within its temporary
# buffers (2 and 4 MiB measured alike).
BATCH_BYTES = 4 * 2**20
TEMP_BUFFERS = "16MB"


def partition_table_name(schema: TripSchema, partition: TaxiPartition) -> str:
    """The partition holding one file's rows (`green_tripdata_file_2019_01`)."""
    return f"{schema.table}_file_{partition.month.replace('-', '_')}"


class PostgresWarehouse(TaxiWarehouse):
    """PostgreSQL, configured like libpq (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)."""

    host: str = Field(default="localhost", description="Server host (PGHOST).")
    port: int = Field(default=5432, description="Server port (PGPORT).")
    user: str = Field(default="postgres", description="Role to connect as (PGUSER).")
    password: str | None = Field(default=None, description="Password (PGPASSWORD); never logged.")
    database: str = Field(default="postgres", description="Database (PGDATABASE).")
    sql_schema: str = Field(
        default="public", description="Schema of the trip tables (TAXI_PG_SCHEMA)."
    )
    dead_connection_seconds: int = Field(
        default=DEAD_CONNECTION_SECONDS,
        description=(
            "Seconds after which a silent connection counts as dead on both ends: the load "
            "gives up, the server ends the session and releases its locks "
            "(TAXI_PG_DEAD_CONNECTION_SECONDS)."
        ),
    )

    @property
    def kind(self) -> str:
        return "postgres"

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection; callers open explicit transactions. A connection that goes
        silent counts as dead after `dead_connection_seconds`, on both ends."""
        limits = DeadConnectionLimits(self.dead_connection_seconds)
        try:
            connection = psycopg.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                dbname=self.database,
                autocommit=True,
                connect_timeout=10,
                application_name="taxi_assets",
                **limits.client_parameters(),
            )
        except psycopg.OperationalError as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "no reason given"
            where = (
                f"cannot connect to PostgreSQL at {self.host}:{self.port} "
                f"(database {self.database!r}, user {self.user!r}): {reason}"
            )
            fix = next((f for words, f in _SETTING_TO_FIX.items() if words.search(reason)), None)
            if fix:  # a setting to change: no retry will help
                raise WarehouseMisconfigured(f"{where}; check {fix}") from None
            raise WarehouseError(where) from None
        with connection:
            limits.apply_to_session(connection)
            yield connection

    @contextmanager
    def open_partition(
        self, schema: TripSchema, partition: TaxiPartition
    ) -> Iterator[PartitionLoad]:
        self._check_schema_name()
        with self.connect() as connection:
            _pin_text_formats(connection)
            load = _PostgresPartitionLoad(
                connection, self.sql_schema, schema, partition, self.connect
            )
            try:
                with load.locked():
                    load.ensure_tables()
                    yield load
            except psycopg.Error as error:
                raise self._translated(error, load) from None

    def _check_schema_name(self) -> None:
        """A name dbt cannot quote (it writes `"{name}"`, unescaped): a setting to fix."""
        try:
            BY_NAME["TAXI_PG_SCHEMA"].value(self.sql_schema)
        except ValueError as error:
            raise WarehouseMisconfigured(str(error)) from None

    def _translated(self, error: psycopg.Error, load: "_PostgresPartitionLoad") -> Exception:
        """The server's error as this project's, by its SQLSTATE: a `WarehouseError` to retry
        (a lost connection, a conflict, a busy server), or one line naming what to fix, not
        retried (`WarehouseMisconfigured`; `SourceError` for a value of the file)."""
        state = error.sqlstate or ""
        text = (error.diag.message_primary or str(error)).strip()
        reason = text.splitlines()[0] if text else type(error).__name__
        table = f"{self.sql_schema}.{load.schema.table}"
        if isinstance(error, psycopg.errors.DiskFull):
            return OutOfSpace(
                f"PostgreSQL at {self.host}:{self.port} (database {self.database!r}) is out of "
                f"disk space: {reason}; free space on the server's disk"
            )
        if isinstance(error, psycopg.errors.InsufficientPrivilege):
            return WarehouseMisconfigured(
                f"PostgreSQL user {self.user!r} may not do this in schema "
                f"{self.sql_schema!r} of database {self.database!r}: {reason}; grant it the "
                "privilege, or set TAXI_PG_SCHEMA / PGUSER to a schema / user that has it"
            )
        what = f"{load.partition.filename} into {table}: {reason} (SQLSTATE {state or 'none'})"
        if is_transient(state):
            return WarehouseError(f"PostgreSQL failed loading {what}; retried")
        if state.startswith("22"):
            return SourceError(f"{load.partition.filename}: PostgreSQL refuses a value: {reason}")
        fix = next((fix for prefix, fix in _FIXES if state.startswith(prefix)), _OTHER_FIX)
        return WarehouseMisconfigured(f"PostgreSQL refused loading {what}; {fix}")

    def qualified_table(self, table: str) -> str:
        return f"{self.database}.{self.sql_schema}.{table}"

    @property
    def table_types(self) -> Mapping[ColumnType, str]:
        return TABLE_TYPES

    @contextmanager
    def reading(self) -> Iterator[TripQueries]:
        with self.connect() as connection:
            yield TripQueries(partial(self._query_on, connection), self.column_names)

    def _query_on(
        self,
        connection: psycopg.Connection,
        schema: TripSchema,
        query: str,
        params: Sequence[object],
    ) -> list[tuple]:
        if not _table_exists(connection, self.sql_schema, schema.table):
            return []
        table = sql.Identifier(self.sql_schema, schema.table)
        return connection.execute(sql.SQL(query).format(table=table), params).fetchall()


# Connection errors that a setting fixes, by the server's words (libpq gives no SQLSTATE for
# them), and the setting to check.
_SETTING_TO_FIX = {
    re.compile(r"password authentication failed"): "PGPASSWORD",
    re.compile(r'role "[^"]*" does not exist'): "PGUSER",
    re.compile(r'database "[^"]*" does not exist'): "PGDATABASE",
    re.compile(r"no pg_hba\.conf entry"): "PGUSER, PGDATABASE and the server's pg_hba.conf",
}


# SQLSTATEs (or their classes) a retry may cure: a lost or refused connection (08, and errors
# without a SQLSTATE: the connection broke), a conflict with another transaction (40001, 40P01),
# too many connections (53300), a lock wait given up (55P03), a server shutting down or
# restarting, a cancelled statement (57), an I/O error (58).
_TRANSIENT = ("08", "40", "53300", "55P03", "57", "58")
# What to fix for the states no retry cures, by SQLSTATE or class; first match wins.
_FIXES = (
    ("53200", "the server ran out of memory: give it more, or lower its work_mem, "
     "maintenance_work_mem or max_connections"),
    ("53400", "a limit of the server's configuration was reached: raise the one named above in "
     "postgresql.conf"),
    ("53", "the server lacks resources (memory, disk): give it more"),
    ("54", "a limit of PostgreSQL was exceeded: see the reason above"),
    ("23", "a constraint of the table refuses the rows (a trip table has none): drop it"),
    ("42", "the table or schema does not have the layout the load expects: drop or fix it"),
    ("3F", "the schema is gone or unusable: check TAXI_PG_SCHEMA"),
)  # fmt: skip
_OTHER_FIX = "not retried: see the reason above"


@dataclass(frozen=True)
class DeadConnectionLimits:
    """What makes both ends of a connection give it up once it has been silent `seconds` (a
    frozen network or a dead host sends no FIN or RST), measured (docs/operations.md, "Dead
    connections"):

    - the client: `tcp_user_timeout` ends a connection whose sent data stays unacknowledged (a
      COPY writing, a statement waiting for its answer: keepalives are not sent while data is
      in flight); keepalives end an idle one;
    - the server (the session's settings): keepalives end an idle session, or one waiting in a
      COPY for data, releasing its locks (the month's advisory lock of a killed client);
      `tcp_user_timeout` one whose answer stays unacknowledged; `client_connection_check_interval`
      (PostgreSQL 14+) stops a running statement of a dead client;
      `idle_in_transaction_session_timeout` ends a session left idle in a transaction by a client
      that hangs (a stopped process: its kernel still answers keepalives).

    Keepalives: the first probe after `idle` silent seconds, then `count` probes `interval` apart:
    `seconds` in all."""

    seconds: int
    count: int = 3

    @property
    def interval(self) -> int:
        return max(1, self.seconds // (2 * self.count))

    @property
    def idle(self) -> int:
        return max(1, self.seconds - self.interval * self.count)

    def client_parameters(self) -> dict[str, int]:
        """libpq's connection parameters."""
        return {
            "keepalives": 1,
            "keepalives_idle": self.idle,
            "keepalives_interval": self.interval,
            "keepalives_count": self.count,
            "tcp_user_timeout": self.seconds * 1000,
        }

    def session_settings(self, server_version: int) -> dict[str, str]:
        """The server session's settings (PostgreSQL 12+), in its units (s, ms)."""
        settings = {
            "tcp_keepalives_idle": str(self.idle),
            "tcp_keepalives_interval": str(self.interval),
            "tcp_keepalives_count": str(self.count),
            "tcp_user_timeout": str(self.seconds * 1000),
            "idle_in_transaction_session_timeout": str(self.seconds * 1000),
        }
        if server_version >= 140000:
            settings["client_connection_check_interval"] = str(self.interval * 1000)
        return settings

    def apply_to_session(self, connection: psycopg.Connection) -> None:
        settings = self.session_settings(connection.info.server_version)
        connection.execute(
            "SELECT " + ", ".join("set_config(%s, %s, false)" for _ in settings),
            [value for pair in settings.items() for value in pair],
        )


def is_transient(sqlstate: str | None) -> bool:
    """Whether an error with this SQLSTATE may go away on its own (a retry may cure it)."""
    return not sqlstate or sqlstate.startswith(_TRANSIENT)


def _pin_text_formats(connection: psycopg.Connection) -> None:
    """The ids hash timestamps and floats as text: pin how they print."""
    connection.execute("SET DateStyle = 'ISO, MDY'")
    connection.execute("SET extra_float_digits = 1")


def _table_exists(connection: psycopg.Connection, schema_name: str, table: str) -> bool:
    return _relkind(connection, schema_name, table) is not None


def _relkind(connection: psycopg.Connection, schema_name: str, table: str) -> str | None:
    """'r' for a plain table, 'p' for a partitioned one, None when there is none."""
    found = connection.execute(
        "SELECT c.relkind FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema_name, table),
    ).fetchone()
    return found[0] if found else None


def _table_columns_sql(schema: TripSchema, quote: Callable[[str], str]) -> str:
    """The trip table's columns with their types (the Kestra DDL's, newer columns after)."""
    columns = ", ".join(
        f"{quote(c.name.lower())} {TABLE_TYPES[c.type]}" for c in schema.table_columns
    )
    return f"unique_row_id text, filename text, {columns}"


def _lock_key(*parts: str) -> sql.Composable:
    """A bigint advisory-lock key derived from text, computed by the server."""
    return sql.SQL("hashtextextended({}, 0)").format(sql.Literal("taxi_assets:" + ":".join(parts)))


class _PostgresPartitionLoad(SqlPartitionLoad):
    conversion_errors = (
        psycopg.errors.InvalidTextRepresentation,
        psycopg.errors.InvalidDatetimeFormat,  # a timestamp's text, cast while staging
        psycopg.errors.DatetimeFieldOverflow,
    )

    def __init__(
        self,
        connection: psycopg.Connection,
        sql_schema: str,
        schema: TripSchema,
        partition: TaxiPartition,
        connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    ):
        super().__init__(sql_schema, schema, partition, TABLE_TYPES)
        self.connection = connection
        self.connect = connect
        self.partition_name = partition_table_name(schema, partition)

    # -- hooks ---------------------------------------------------------------------------------

    def quote(self, identifier: str) -> str:
        return sql.Identifier(identifier).as_string(self.connection)

    def literal(self, value: str) -> str:
        """A value written into a statement that takes no parameters (DDL), quoted by the
        driver."""
        return sql.Literal(value).as_string(self.connection)

    def execute(self, query: str, params: Sequence[object] = ()) -> list[tuple]:
        cursor = self.connection.execute(query, params or None)
        return cursor.fetchall() if cursor.description else []

    def transaction(self) -> AbstractContextManager[None]:
        return self.connection.transaction()

    @contextmanager
    def _writer_session(self) -> Iterator[psycopg.Connection]:
        """Another session writing a table of this load, its text formats pinned like ours."""
        with self.connect() as connection:
            _pin_text_formats(connection)
            yield connection

    def fill_staging(self, csv: TripCsv) -> int:
        """The staged table, written by `STAGING_WRITERS` sessions at once (`_load_in_parallel`),
        then analysed. A file they refuse is loaded again by one session (`copy_source`,
        `build_staging`): it names the line of a bad value, and loads a file that writes integers
        as `1.0` with integers as decimals (checked and cast while staging). So is a file of a
        role that may not create temporary tables. (The staged table is not yet part of the main
        table: a failure drops it.)"""
        with self.transaction():
            self.execute(
                f"CREATE TABLE {self.staging} ({_table_columns_sql(self.schema, self.quote)})"
            )
            self._make_attachable()
        try:
            rows = self._load_in_parallel(csv)
        except (psycopg.errors.DataError, psycopg.errors.InsufficientPrivilege) as error:
            # A role without the TEMPORARY privilege on the database loads through an unlogged
            # table of its schema instead.
            what = "refused a value" if isinstance(error, psycopg.errors.DataError) else "failed"
            dg.get_dagster_logger().info(
                f"{csv.name}: the parallel load {what} ({error.diag.message_primary}); loading "
                "the file again with one session"
            )
            self.execute(f"TRUNCATE {self.staging}")
            rows = super().fill_staging(csv)
        # Statistics now, not when autovacuum gets to it: a query right after the load (the
        # facts' dbt run) is planned without them as if the month had a few rows (measured: 13 s
        # instead of 1.2 s for a month's facts). A sample of 3,000 rows is enough for that and
        # costs 0.02 s (the default 30,000: 0.25 s of a 250,000-row month's 1 s); autovacuum
        # analyses the table in full later.
        with self.transaction():
            self.execute("SET LOCAL default_statistics_target = 10")
            self.execute(f"ANALYZE {self.staging}")
        return rows

    def _load_in_parallel(self, csv: TripCsv) -> int:
        """Each writer copies its share of the lines a batch at a time into a temporary table of
        its own (in its memory: no WAL, no shared buffers) and writes their final rows into the
        staged table in the same transaction, while the other one copies: parsing, hashing and
        writing overlap on all cores (a 2M-row month, alternated runs: 9.2 s and 16.8 CPU-seconds,
        against 10.1 s and 17.5 for copying all lines into one scratch table, then writing it)."""
        self.integers_as_decimals = False
        scratch = f"pg_temp.{self.quote(self.source_name)}"
        columns = self.file_column_list()
        insert = f"INSERT INTO {self.staging} ({self.final_column_list()}) "
        return copy_in_parallel(
            self._writer_session,
            f"COPY {scratch} ({columns}) FROM STDIN (FORMAT csv, FORCE_NULL ({columns}))",
            csv.data_line_chunks(),
            STAGING_WRITERS,
            Batches(
                size=BATCH_BYTES,
                prepare=[
                    (f"SET temp_buffers = '{TEMP_BUFFERS}'", ()),
                    (
                        f"CREATE TEMPORARY TABLE {scratch} ({self.source_columns()}) "
                        "ON COMMIT DELETE ROWS",
                        (),
                    ),
                ],
                after_each=[(insert + self.staging_select_sql(scratch), [self.partition.filename])],
            ),
        )

    def copy_source(self, csv: TripCsv) -> int:
        """COPY the file into the scratch table by one session, with integers as decimals if
        it writes them so."""
        csv.rewind()
        with self.transaction():
            try:
                with self.transaction():  # a savepoint
                    return self._copy(csv)
            except _IntegerWrittenAsDecimal:
                csv.rewind()
                self.integers_as_decimals = True
                return self._copy(csv)

    def _copy(self, csv: TripCsv) -> int:
        # Unlogged: nothing of it needs to survive a crash. Created in this transaction, so COPY
        # may write its rows frozen: the pass that reads them sets no hint bits (no rewrite).
        columns = self.source_columns()
        self.execute(f"CREATE UNLOGGED TABLE {self.source} ({columns})")
        copy = (
            f"COPY {self.source} ({self.file_column_list()}) "
            "FROM STDIN (FORMAT csv, HEADER true, FREEZE true, "
            f"FORCE_NULL ({self.file_column_list()}))"
        )
        with self.connection.cursor() as cursor:
            try:
                with cursor.copy(copy) as stream:
                    for chunk in csv.chunks():
                        stream.write(chunk)
            except psycopg.errors.DataError as error:
                if not self.integers_as_decimals and _decimal_in_integer_column(error):
                    raise _IntegerWrittenAsDecimal from None
                raise SourceError(_copy_error(csv, error)) from None
            return cursor.rowcount

    def scratch_types(self) -> dict[ColumnType, str]:
        """Timestamps as text (`contract_value_sql`); a quoted empty field is NULL by COPY's
        FORCE_NULL."""
        return {**TABLE_TYPES, ColumnType.TIMESTAMP: "text"}

    def contract_value_sql(self, column: str, type_: ColumnType) -> str:
        """A timestamp of the contract's form, cast. The pickup's also checks that the row's
        numbers are finite (COPY takes `inf` and `NaN`): one test a row costs less than one a
        number, and `explain_error` finds the value whichever it was."""
        if type_ is not ColumnType.TIMESTAMP:
            return column
        held = f"({column} IS NULL OR {TIMESTAMP_HELD.format(c=column)})"
        if column == self.quote(self.schema.pickup.lower()):
            held = f"{held} AND {self._finite_numbers_sql()}"
        refused = f"CAST('outside the contract: ' || coalesce({column}, '') AS timestamp)"
        return f"CASE WHEN {held} THEN CAST({column} AS timestamp) ELSE {refused} END"

    def _finite_numbers_sql(self) -> str:
        numbers = [
            self.quote(c.name.lower()) for c in self.file_columns if c.type is ColumnType.FLOAT
        ]
        if not numbers:
            return "true"
        largest = ", ".join(f"abs({number})" for number in numbers)
        return f"coalesce(greatest({largest}), 0) < 'Infinity'"  # NaN is above Infinity

    def build_staging(self) -> None:
        """The staged rows from the scratch table, by this session (the careful path)."""
        self.execute(
            f"INSERT INTO {self.staging} ({self.final_column_list()}) {self.staging_select_sql()}",
            [self.partition.filename],
        )

    def explain_error(self, error: Exception, csv: TripCsv) -> Exception | None:
        """A value the staging pass refused: found in the file (a timestamp outside the contract,
        which the scratch table holds as text), else an integer that is not whole."""
        return csv.first_contract_break() or super().explain_error(error, csv)

    def id_text_sql(self, column: str, type_: ColumnType) -> str:
        # CAST of a text column is the identity: the seed writes it for VendorID only.
        return f"CAST({column} AS text)"

    @property
    def row_order(self) -> str:
        return "ORDER BY ctid"  # a table filled by one COPY holds its rows in the file's order

    @property
    def partitioned(self) -> bool:
        return _relkind(self.connection, self.sql_schema, self.schema.table) == "p"

    def _make_attachable(self) -> None:
        """Make the (empty) staging table a ready partition: the CHECK constraint that spares
        ATTACH a scan, and its index of pickups at and beyond the month's edges, both kept up
        as the rows arrive."""
        if not self.partitioned:
            return
        constraint = self.quote(self.partition_name + "_check")
        self.execute(
            f"ALTER TABLE {self.staging} ADD CONSTRAINT {constraint} "
            f"CHECK (filename IS NOT NULL AND filename = {self.literal(self.partition.filename)})"
        )
        # The rows `ids_in_other_files` looks pickups up in (`id_overlap.py`): outside the
        # month, on its first or last day, or without a pickup; a few percent of the rows.
        pickup = self.quote(self.schema.pickup.lower())
        first_day_end, last_day_start = (
            self.literal(str(day)) for day in self.partition.month_edges
        )
        self.execute(
            f"CREATE INDEX {self.quote(self.staging_name + EDGES_INDEX)} "
            f"ON {self.staging} ({pickup}) WHERE {pickup} < {first_day_end}::timestamp "
            f"OR {pickup} >= {last_day_start}::timestamp OR {pickup} IS NULL"
        )

    # -- tables --------------------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the partition's session lock; a dropped connection releases it too. While another
        run of the same month holds it, wait, and say so every `PARTITION_WAIT_LOG_SECONDS`."""
        key = _lock_key(self.sql_schema, self.partition.filename)
        try_lock = sql.SQL("SELECT pg_try_advisory_lock({})").format(key)
        started = said = time.monotonic()
        while not self.connection.execute(try_lock).fetchone()[0]:
            waited = time.monotonic() - started
            if waited > PARTITION_WAIT_SECONDS:
                raise WarehouseError(
                    f"{self.partition.filename}: another run of this month held it for "
                    f"{waited:.0f}s (a stuck run? see pg_stat_activity, application_name "
                    "taxi_assets)"
                )
            if time.monotonic() - said >= PARTITION_WAIT_LOG_SECONDS:
                dg.get_dagster_logger().info(
                    f"{self.partition.filename}: waiting for another run of this month to end "
                    f"({waited:.0f}s so far)"
                )
                said = time.monotonic()
            time.sleep(0.2)
        try:
            yield
        finally:
            if not self.connection.closed and not self.connection.broken:
                self.connection.execute(sql.SQL("SELECT pg_advisory_unlock({})").format(key))

    def ensure_tables(self) -> None:
        """Create the schema and both colours' main tables if missing (the dbt models read both,
        whichever colour is loaded first), and give this colour's table the newer columns it
        lacks (a table of the Kestra flow or of an earlier version: added in place, nullable).
        Only when something is missing does this take a lock or run DDL; an existing plain
        table stays plain, and the other colour's table is never waited for."""
        missing = [
            schema
            for schema in TRIP_SCHEMAS.values()
            if not _table_exists(self.connection, self.sql_schema, schema.table)
        ]
        if missing:
            with self.transaction():
                self.execute(
                    sql.SQL("SELECT pg_advisory_xact_lock({})")
                    .format(_lock_key(self.sql_schema, "ddl"))
                    .as_string(self.connection)
                )
                self.execute(f"CREATE SCHEMA IF NOT EXISTS {self.quote(self.sql_schema)}")
                for schema in missing:
                    if not _table_exists(self.connection, self.sql_schema, schema.table):
                        self._create_main_table(schema)
        if self._missing_newer_columns():
            self._waiting_for_locks(self._add_newer_columns, "adding the newer columns")
        self._check_layout()

    def _check_layout(self) -> None:
        """An existing table of another layout is refused before anything is loaded, in one line
        naming what differs: a column the load writes is missing, an extra column is NOT NULL
        without a default (no row would fit), a UNIQUE index (identical trips share an id, in a
        file or across files)."""
        table = f"{self.sql_schema}.{self.schema.table}"
        columns = self.execute(
            "SELECT attname, attnotnull AND NOT atthasdef AND attgenerated = '' "
            "FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
            "AND NOT attisdropped",
            [self.main],
        )
        expected = ["unique_row_id", "filename"]
        expected += [c.name.lower() for c in self.schema.table_columns]
        found = {name for name, _ in columns}
        problems = [f"column {name} missing" for name in expected if name not in found]
        problems += [
            f"extra column {name} is NOT NULL without a default"
            for name, required in columns
            if required and name not in expected
        ]
        problems += [
            f"UNIQUE index {name} {definition.partition(' USING ')[2].partition(' ')[2]}"
            for name, definition in self.execute(
                "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
                "WHERE indrelid = to_regclass(%s) AND indisunique",
                [self.main],
            )
        ]
        if problems:
            raise WarehouseMisconfigured(
                f"table {table}: {'; '.join(problems)}: not the trip table's layout; drop the "
                "table (it is created again) or fix it"
            )

    def _missing_newer_columns(self) -> list[Column]:
        found = {
            name
            for (name,) in self.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                [self.sql_schema, self.schema.table],
            )
        }
        return [c for c in self.schema.newer_columns if c.name.lower() not in found]

    def _add_newer_columns(self) -> None:
        with self.transaction():
            self._set_lock_timeout()
            added = self._missing_newer_columns()
            if added:
                self.execute(
                    f"ALTER TABLE {self.main} "
                    + ", ".join(
                        f"ADD COLUMN IF NOT EXISTS {self.quote(c.name.lower())} "
                        f"{TABLE_TYPES[c.type]}"
                        for c in added
                    )
                )
        if added:
            dg.get_dagster_logger().info(
                f"{self.sql_schema}.{self.schema.table}: added the newer columns "
                f"{', '.join(c.name.lower() for c in added)} (NULL for the months loaded so far)"
            )

    def _create_main_table(self, schema: TripSchema) -> None:
        self.execute(
            f"CREATE TABLE {self.qualified(schema.table)} "
            f"({_table_columns_sql(schema, self.quote)}) PARTITION BY LIST (filename)"
        )

    # -- the swap ------------------------------------------------------------------------------

    def merge(self) -> MergedPartition:
        if not self.partitioned:
            return self.delete_and_insert()
        return self._waiting_for_locks(self._swap, f"the swap of {self.partition.filename}")

    def _waiting_for_locks(self, attempt: Callable[[], T], what: str) -> T:
        """`attempt` (a transaction that sets a short `lock_timeout`), tried again while other
        sessions hold the table: a long reader delays it instead of queueing every other reader
        behind it. Logged while it lasts; given up after `SWAP_DEADLINE_SECONDS`."""
        started = said = time.monotonic()
        while True:
            try:
                return attempt()
            except psycopg.errors.LockNotAvailable:
                waited = time.monotonic() - started
                if waited > SWAP_DEADLINE_SECONDS:
                    raise WarehouseError(
                        f"{self.sql_schema}.{self.schema.table} stayed locked by other "
                        f"sessions for {waited:.0f}s: {what} did not happen"
                    ) from None
                if time.monotonic() - said >= PARTITION_WAIT_LOG_SECONDS:
                    dg.get_dagster_logger().info(
                        f"{self.schema.table} is in use by another session (a long query?); "
                        f"retrying {what} ({waited:.0f}s so far)"
                    )
                    said = time.monotonic()
                time.sleep(1.0)

    def _set_lock_timeout(self) -> None:
        self.execute(f"SET LOCAL lock_timeout = '{int(SWAP_LOCK_TIMEOUT_SECONDS * 1000)}ms'")

    def _swap(self) -> MergedPartition:
        filename = self.partition.filename
        with self.transaction():
            self._set_lock_timeout()
            self.require_staging()
            rows = self.staged_rows()
            replaced = 0
            old = self._current_partition()
            if old is not None:
                replaced = self.execute(f"SELECT count(*) FROM {old}")[0][0]
                self.execute(f"ALTER TABLE {self.main} DETACH PARTITION {old}")
                self.execute(f"DROP TABLE {old}")
            partition = self.qualified(self.partition_name)
            self.execute(f"DROP TABLE IF EXISTS {partition}")  # a detached leftover, say
            self.execute(f"ALTER TABLE {self.staging} RENAME TO {self.quote(self.partition_name)}")
            self.execute(
                f"ALTER INDEX {self.qualified(self.staging_name + EDGES_INDEX)} "
                f"RENAME TO {self.quote(self.partition_name + EDGES_INDEX)}"
            )
            self.execute(
                f"ALTER TABLE {self.main} ATTACH PARTITION {partition} "
                f"FOR VALUES IN ({self.literal(filename)})"
            )
        return self.merged(rows=rows, replaced_rows=replaced)

    def _current_partition(self) -> str | None:
        """The partition that holds the file's rows now, whatever its name."""
        found = self.execute(
            "SELECT n.nspname, c.relname FROM pg_inherits AS i "
            "JOIN pg_class AS c ON c.oid = i.inhrelid "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE i.inhparent = to_regclass(%s) "
            "AND pg_get_expr(c.relpartbound, c.oid) = %s",
            [self.main, f"FOR VALUES IN ({self.literal(self.partition.filename)})"],
        )
        return f"{self.quote(found[0][0])}.{self.quote(found[0][1])}" if found else None


_COPY_CONTEXT = re.compile(r"COPY \w+, line (\d+)(?:, column (\w+)(?:: \"(.*)\")?)?", re.S)
_DECIMAL = re.compile(r'^"?\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*"?$')


# What COPY says of a line break where none belongs (a file whose line endings change).
_LINE_BREAK_IN_DATA = (
    "unquoted newline found in data",
    "unquoted carriage return found in data",
    "literal newline found in data",
    "literal carriage return found in data",
)


class _IntegerWrittenAsDecimal(Exception):
    """COPY met `1.0` (or `2.5`) in an integer column."""


def _decimal_in_integer_column(error: psycopg.errors.DataError) -> bool:
    """Whether COPY refused a decimal number for an integer column."""
    if not isinstance(error, psycopg.errors.InvalidTextRepresentation):
        return False
    message = error.diag.message_primary or ""
    value = message.rpartition(": ")[2]
    return "type integer" in message and bool(_DECIMAL.match(value))


def _copy_error(csv: TripCsv, error: psycopg.errors.DataError) -> str:
    """COPY's error, said as `_describe_copy_error` does; an unterminated quoted field, which
    COPY finds at the file's end, at the line where it begins."""
    reason = error.diag.message_primary or ""
    if reason.startswith(_LINE_BREAK_IN_DATA):
        mixed = csv.first_mixed_line_ending()
        if mixed is not None:
            return str(mixed)
    odd = csv.first_odd_line() if reason.startswith("unterminated CSV quoted field") else None
    if odd is None:
        return _describe_copy_error(csv.name, error)
    line, what = odd
    return f"{csv.name} line {line}: {reason}: {what}"


def _describe_copy_error(name: str, error: psycopg.Error) -> str:
    """`file line N, column C: <reason>` from Postgres's COPY error context."""
    reason = error.diag.message_primary or str(error).splitlines()[0]
    match = _COPY_CONTEXT.search(error.diag.context or "")
    if not match:
        return f"{name}: {reason}"
    line, column, _ = match.groups()
    where = f"line {line}" + (f", column {column}" if column else "")
    return f"{name} {where}: {reason}"
