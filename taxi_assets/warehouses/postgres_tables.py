"""PostgreSQL's trip tables: created and checked, a month's lock, and the swap of its rows.

`{taxi}_tripdata` is partitioned by `filename` (LIST): each loaded file's rows are a table
partition of their own (`{taxi}_tripdata_file_{YYYY_MM}`). A load builds the file's new table
partition aside (the staging table), then swaps it in: in one short transaction the old one is
detached and dropped and the new one attached. Replacing a month therefore costs the same whatever
the table holds, and no index grows with it.

Locks: attaching a first table partition never blocks readers; detaching a loaded month takes
an ACCESS EXCLUSIVE lock on the table for a moment. That wait is bounded (`lock_timeout`), logged
and retried, so a long reader delays the swap instead of queueing every other reader behind it.

A plain `{taxi}_tripdata` (made by the Kestra flow) keeps working: its rows are replaced with
DELETE + INSERT.

Every load holds a session advisory lock on its file, so two runs of the same month queue
instead of colliding; other months never wait.
"""

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TypeVar

import dagster as dg
import psycopg
from psycopg import sql

from taxi_assets.errors import WarehouseError, WarehouseMisconfigured
from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import TRIP_SCHEMAS, Column, ColumnType, TripSchema
from taxi_assets.warehouses.base import MergedPartition
from taxi_assets.warehouses.load_sql import (
    count_file_rows_sql,
    delete_file_rows_sql,
    insert_staged_rows_sql,
    qualified,
    table_exists_sql,
)
from taxi_assets.warehouses.postgres_query import built_sql

T = TypeVar("T")

# The Kestra DDL's types for the main and staging tables.
TABLE_TYPES = {
    ColumnType.TEXT: "text",
    ColumnType.TIMESTAMP: "timestamp",
    ColumnType.INTEGER: "integer",
    ColumnType.FLOAT: "double precision",
}
# How long the swap waits for a lock at a time, and how long it keeps trying.
SWAP_LOCK_TIMEOUT_SECONDS = 2.0
SWAP_DEADLINE_SECONDS = 600.0
# Another run of the same month: how long to wait for it, and how often to say so.
PARTITION_WAIT_SECONDS = 3600.0
PARTITION_WAIT_LOG_SECONDS = 10.0
EDGES_INDEX = "_month_edges_idx"


def table_partition_name(schema: TripSchema, partition: TaxiPartition) -> str:
    """The table partition: the table partition holding one file's rows
    (`green_tripdata_file_2019_01`)."""
    return f"{schema.table}_file_{partition.month.replace('-', '_')}"


def table_exists(connection: psycopg.Connection, schema_name: str, table: str) -> bool:
    return relkind(connection, schema_name, table) is not None


def relkind(connection: psycopg.Connection, schema_name: str, table: str) -> str | None:
    """'r' for a plain table, 'p' for a partitioned one, None when there is none."""
    found = connection.execute(
        "SELECT c.relkind FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema_name, table),
    ).fetchone()
    return found[0] if found else None


def table_columns_sql(schema: TripSchema, quote: Callable[[str], str]) -> str:
    """The trip table's columns with their types (the Kestra DDL's, newer columns after)."""
    columns = ", ".join(
        f"{quote(c.name.lower())} {TABLE_TYPES[c.type]}" for c in schema.table_columns
    )
    return f"unique_row_id text, filename text, {columns}"


def lock_key(*parts: str) -> sql.Composable:
    """A bigint advisory-lock key derived from text, computed by the server."""
    return sql.SQL("hashtextextended({}, 0)").format(sql.Literal("taxi_assets:" + ":".join(parts)))


class PostgresTables:
    """What a PostgreSQL load does to the trip tables, on its connection.

    A mixin of `PostgresPartitionLoad`, which names the tables (`main`, `staging`, …)."""

    connection: psycopg.Connection
    sql_schema: str
    schema: TripSchema
    partition: TaxiPartition
    main: str  # the trip table, quoted
    staging: str  # the staging table, quoted
    staging_name: str
    table_partition_name: str
    _staged_rows: int | None

    # -- statements ----------------------------------------------------------------------------

    def quote(self, identifier: str) -> str:
        """An identifier, quoted by the driver."""
        return sql.Identifier(identifier).as_string(self.connection)

    def qualified(self, table: str) -> str:
        """A table of the trip tables' schema, quoted."""
        return qualified(self.quote, self.sql_schema, table)

    def literal(self, value: str) -> str:
        """A value written into a statement that takes no parameters (DDL), quoted by the
        driver."""
        return sql.Literal(value).as_string(self.connection)

    def execute(self, query: str, params: Sequence[object] = ()) -> list[tuple]:
        """Run one statement (`%s` parameters); its rows, if it returns any."""
        cursor = self.connection.execute(built_sql(query), params or None)
        return cursor.fetchall() if cursor.description else []

    def transaction(self) -> AbstractContextManager[psycopg.Transaction]:
        """One transaction (a savepoint within one): committed when the block ends, rolled
        back when it raises."""
        return self.connection.transaction()

    # -- tables --------------------------------------------------------------------------------

    @property
    def partitioned(self) -> bool:
        """Whether the main table is partitioned (by file), not a plain table."""
        return relkind(self.connection, self.sql_schema, self.schema.table) == "p"

    def make_attachable(self) -> None:
        """Make the (empty) staging table a ready table partition of a partitioned main table.

        The CHECK constraint spares ATTACH a scan; the index of pickups at and beyond the month's
        edges is what `ids_in_other_files` reads. Both are kept up as the rows arrive."""
        if not self.partitioned:
            return
        constraint = self.quote(self.table_partition_name + "_check")
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

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this month's session lock; a dropped connection releases it too. While another
        run of the same month holds it, wait, and say so every `PARTITION_WAIT_LOG_SECONDS`."""
        key = lock_key(self.sql_schema, self.partition.filename)
        try_lock = sql.SQL("SELECT pg_try_advisory_lock({})").format(key)
        started = said = time.monotonic()
        while not self._took(try_lock):
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

    def _took(self, try_lock: sql.Composed) -> bool:
        """Whether `try_lock` (a `pg_try_advisory_lock`: one row, true or false) took the lock."""
        row = self.connection.execute(try_lock).fetchone()
        return row is not None and bool(row[0])

    def ensure_tables(self) -> None:
        """Create what is missing of the schema and both colours' main tables; add the newer
        columns this colour's table lacks.

        The dbt models read both tables, whichever colour is loaded first. A table of the Kestra
        flow gains the newer columns in place, nullable. Only when something is missing does this
        take a lock or run DDL; an existing plain table stays plain, and the other colour's table
        is never waited for."""
        missing = [
            schema
            for schema in TRIP_SCHEMAS.values()
            if not table_exists(self.connection, self.sql_schema, schema.table)
        ]
        if missing:
            with self.transaction():
                self.execute(
                    sql.SQL("SELECT pg_advisory_xact_lock({})")
                    .format(lock_key(self.sql_schema, "ddl"))
                    .as_string(self.connection)
                )
                self.execute(f"CREATE SCHEMA IF NOT EXISTS {self.quote(self.sql_schema)}")
                for schema in missing:
                    if not table_exists(self.connection, self.sql_schema, schema.table):
                        self._create_main_table(schema)
        if self._missing_newer_columns():
            self.waiting_for_locks(self._add_newer_columns, "adding the newer columns")
        self._check_layout()

    def _check_layout(self) -> None:
        """Refuse an existing table of another layout before anything is loaded.

        The one line names what differs: a column the load writes is missing, an extra column is
        NOT NULL without a default (no row would fit), a UNIQUE index (identical trips share an
        id, in a file or across files)."""
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
            f"({table_columns_sql(schema, self.quote)}) PARTITION BY LIST (filename)"
        )

    # -- the swap ------------------------------------------------------------------------------

    def waiting_for_locks(self, attempt: Callable[[], T], what: str) -> T:
        """`attempt`'s result, tried again while other sessions hold the table.

        `attempt` is a transaction that sets a short `lock_timeout`: a long reader delays it
        instead of queueing every other reader behind it. Logged while it lasts; given up after
        `SWAP_DEADLINE_SECONDS`."""
        started = said = time.monotonic()
        while True:
            try:
                return attempt()
            except psycopg.errors.LockNotAvailable as error:
                waited = time.monotonic() - started
                if waited > SWAP_DEADLINE_SECONDS:
                    raise WarehouseError(
                        f"{self.sql_schema}.{self.schema.table} stayed locked by other "
                        f"sessions for {waited:.0f}s: {what} did not happen"
                    ) from error
                if time.monotonic() - said >= PARTITION_WAIT_LOG_SECONDS:
                    dg.get_dagster_logger().info(
                        f"{self.schema.table} is in use by another session (a long query?); "
                        f"retrying {what} ({waited:.0f}s so far)"
                    )
                    said = time.monotonic()
                time.sleep(1.0)

    def _set_lock_timeout(self) -> None:
        self.execute(f"SET LOCAL lock_timeout = '{int(SWAP_LOCK_TIMEOUT_SECONDS * 1000)}ms'")

    def swap(self) -> MergedPartition:
        """Detach and drop the file's table partition, attach the staging table in its place.

        One transaction, waiting at most `SWAP_LOCK_TIMEOUT_SECONDS` for its locks (see
        `waiting_for_locks`)."""
        filename = self.partition.filename
        with self.transaction():
            self._set_lock_timeout()
            self.require_staging()
            rows = self.staged_rows()
            replaced = 0
            old = self._current_table_partition()
            if old is not None:
                replaced = self.execute(f"SELECT count(*) FROM {old}")[0][0]
                self.execute(f"ALTER TABLE {self.main} DETACH PARTITION {old}")
                self.execute(f"DROP TABLE {old}")
            table_partition = self.qualified(self.table_partition_name)
            self.execute(f"DROP TABLE IF EXISTS {table_partition}")  # a detached leftover, say
            self.execute(
                f"ALTER TABLE {self.staging} RENAME TO {self.quote(self.table_partition_name)}"
            )
            self.execute(
                f"ALTER INDEX {self.qualified(self.staging_name + EDGES_INDEX)} "
                f"RENAME TO {self.quote(self.table_partition_name + EDGES_INDEX)}"
            )
            self.execute(
                f"ALTER TABLE {self.main} ATTACH PARTITION {table_partition} "
                f"FOR VALUES IN ({self.literal(filename)})"
            )
        return self.merged(rows=rows, replaced_rows=replaced)

    def _current_table_partition(self) -> str | None:
        """The table partition that holds the file's rows now, whatever its name."""
        found = self.execute(
            "SELECT n.nspname, c.relname FROM pg_inherits AS i "
            "JOIN pg_class AS c ON c.oid = i.inhrelid "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE i.inhparent = to_regclass(%s) "
            "AND pg_get_expr(c.relpartbound, c.oid) = %s",
            [self.main, f"FOR VALUES IN ({self.literal(self.partition.filename)})"],
        )
        return f"{self.quote(found[0][0])}.{self.quote(found[0][1])}" if found else None

    # -- a plain table -------------------------------------------------------------------------

    def delete_and_insert(self) -> MergedPartition:
        """Replace a file's rows in a plain table: DELETE them, INSERT the staged ones, drop the
        staging table, in one transaction."""
        filename = [self.partition.filename]
        with self.transaction():
            self.require_staging()
            deleted = self.execute(count_file_rows_sql(self.main), filename)[0][0]
            self.execute(delete_file_rows_sql(self.main), filename)
            self.execute(insert_staged_rows_sql(self.quote, self.schema, self.main, self.staging))
            self.execute(f"DROP TABLE {self.staging}")
        return self.merged(rows=self.staged_rows(), replaced_rows=deleted)

    def require_staging(self) -> None:
        """Refuse to merge when there is no staging table."""
        found = self.execute(table_exists_sql(), [self.sql_schema, self.staging_name])
        if not found[0][0]:
            raise WarehouseError(
                f"{self.sql_schema}.{self.staging_name} is missing: stage the file first"
            )

    def staged_rows(self) -> int:
        """Rows in the staging table (known from `stage`, counted otherwise)."""
        if self._staged_rows is None:
            counted: int = self.execute(f"SELECT count(*) FROM {self.staging}")[0][0]
            self._staged_rows = counted
        return self._staged_rows

    def merged(self, rows: int, replaced_rows: int) -> MergedPartition:
        """What the merge reports."""
        return MergedPartition(
            table=f"{self.sql_schema}.{self.schema.table}",
            rows=rows,
            replaced_rows=replaced_rows,
        )
