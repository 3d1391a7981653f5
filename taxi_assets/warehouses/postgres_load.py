"""PostgreSQL's staging: the file's rows COPYed in by two sessions at once, or by one.

Two sessions each COPY a batch of the file's lines into a temporary table and write its final
rows into the staging table in one pass, batch after batch (`parallel_copy.py`). A file they
refuse is loaded again by one session through the scratch table, which names the line of a bad value
and takes integers written as `1.0`. The staging table is built aside, ready to be attached as
the file's table partition (`postgres_tables.py`).
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial

import dagster as dg
import psycopg

from taxi_assets.errors import SourceError
from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_csv import INT4_MAX, TripCsv
from taxi_assets.trip_schema import Column, ColumnType, TripSchema
from taxi_assets.warehouses.base import (
    MergedPartition,
    PartitionLoad,
    StagedPartition,
    staging_table_label,
    staging_table_name,
)
from taxi_assets.warehouses.load_sql import (
    Dialect,
    column_names,
    first_fractional_integer_sql,
    insert_final_rows_sql,
    pickups_outside_month_sql,
    scratch_columns,
    scratch_table_name,
)
from taxi_assets.warehouses.parallel_copy import Batches, copy_in_parallel
from taxi_assets.warehouses.postgres_errors import (
    IntegerWrittenAsDecimal,
    copy_error,
    decimal_in_integer_column,
)
from taxi_assets.warehouses.postgres_query import built_sql
from taxi_assets.warehouses.postgres_tables import (
    TABLE_TYPES,
    PostgresTables,
    table_columns_sql,
    table_partition_name,
)

# Timestamps are copied as text and held to the contract's form while staging (by two sessions),
# then cast (which refuses a date or time that does not exist): of 19 characters with `-`, ` `
# and `:` in their places (no date alone, no other order, no `T`, no fractions, no `infinity`),
# and not the two PostgreSQL would roll over (`24:00:00`, a 60th second). A LIKE costs less than
# reading the text back after the cast, and far less than a regular expression.
# (`%%`: the staging query takes a parameter; in LIKE, `%%` means what `%` does anyway.)
TIMESTAMP_HELD = (
    "{c} LIKE '____-__-__ __:__:__' AND {c} NOT LIKE '%% 24:%%' AND {c} NOT LIKE '%%:60'"
)
# The types the file's text is read into: timestamps as text (`held_to_contract_sql`); a quoted
# empty field is NULL by COPY's FORCE_NULL.
SCRATCH_TYPES = {**TABLE_TYPES, ColumnType.TIMESTAMP: "text"}
# The errors of a value the staging pass refuses (a cast of its text).
CONVERSION_ERRORS = (
    psycopg.errors.InvalidTextRepresentation,
    psycopg.errors.InvalidDatetimeFormat,  # a timestamp's text, cast while staging
    psycopg.errors.DatetimeFieldOverflow,
)
# Sessions that write a staging table side by side: PostgreSQL inserts row by row, one core per
# session, and a load is otherwise bound to one core.
STAGING_WRITERS = 2
# What each of them copies at a time: 4 MiB of CSV take about 6 MB as rows, within its temporary
# buffers.
BATCH_BYTES = 4 * 2**20
TEMP_BUFFERS = "16MB"


def pin_text_formats(connection: psycopg.Connection) -> None:
    """The ids hash timestamps and floats as text: pin how they print."""
    connection.execute("SET DateStyle = 'ISO, MDY'")
    connection.execute("SET extra_float_digits = 1")


def id_text_sql(column: str, type_: ColumnType) -> str:
    """A column as text: the Kestra flow's own CAST (the identity for a text column, which the
    flow writes for VendorID only)."""
    return f"CAST({column} AS text)"


def held_to_contract_sql(column: str, type_: ColumnType, *, pickup: str, numbers: list[str]) -> str:
    """A timestamp of the contract's form, cast; other columns as COPY typed them.

    The pickup's also checks that the row's `numbers` are finite (COPY takes `inf` and `NaN`): one
    test a row costs less than one a number, and the value is found again whichever it was."""
    if type_ is not ColumnType.TIMESTAMP:
        return column
    held = f"({column} IS NULL OR {TIMESTAMP_HELD.format(c=column)})"
    if column == pickup:
        held = f"{held} AND {finite_numbers_sql(numbers)}"
    refused = f"CAST('outside the contract: ' || coalesce({column}, '') AS timestamp)"
    return f"CASE WHEN {held} THEN CAST({column} AS timestamp) ELSE {refused} END"


def finite_numbers_sql(numbers: list[str]) -> str:
    """Whether every one of the (quoted) float columns is finite or NULL."""
    if not numbers:
        return "true"
    largest = ", ".join(f"abs({number})" for number in numbers)
    return f"coalesce(greatest({largest}), 0) < 'Infinity'"  # NaN is above Infinity


class PostgresPartitionLoad(PostgresTables, PartitionLoad):
    """One partition's load: the staging table built aside, then swapped in as the file's table
    partition (or its rows inserted, into a plain table)."""

    def __init__(
        self,
        connection: psycopg.Connection,
        sql_schema: str,
        schema: TripSchema,
        partition: TaxiPartition,
        connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    ):
        self.connection = connection
        self.connect = connect
        self.sql_schema = sql_schema
        self.schema = schema
        self.partition = partition
        self.staging_name = staging_table_name(schema, partition)
        self.table_partition_name = table_partition_name(schema, partition)
        self.scratch_name = scratch_table_name(schema, partition)
        self.main = self.qualified(schema.table)
        self.staging = self.qualified(self.staging_name)
        self.scratch = self.qualified(self.scratch_name)
        # A killed run of an earlier version may have left its scratch table under this name.
        self.earlier_scratch_name = f"{schema.table}_source_{partition.month.replace('-', '_')}"
        self._staged_rows: int | None = None

    def stage(self, csv: TripCsv) -> StagedPartition:
        """Build the staging table aside, ready to be attached as the file's table partition:

        1. drop what a killed run of this month left behind (its lock is ours now): the scratch
           table, the staging table;
        2. create the staging table, attachable (`make_attachable`);
        3. fill it: two sessions copy the file's lines and write their final rows a batch at a
           time; a file they refuse, again by one session through the scratch table;
        4. analyse it;
        5. in one transaction: check that COPY found one row per line, and count the pickups
           outside the month.

        A failure drops the staging table; the scratch table goes whatever happens."""
        dialect = self._dialect(csv.columns)
        with self.transaction():  # 1
            self.execute(f"DROP TABLE IF EXISTS {self.scratch}")
            self.execute(f"DROP TABLE IF EXISTS {self.qualified(self.earlier_scratch_name)}")
            self.execute(f"DROP TABLE IF EXISTS {self.staging}")
        try:
            with self.transaction():  # 2
                columns = table_columns_sql(self.schema, self.quote)
                self.execute(f"CREATE TABLE {self.staging} ({columns})")
                self.make_attachable()
            rows = self._fill_staging(csv, dialect)  # 3
            self._analyse_staging()  # 4
            with self.transaction():  # 5
                csv.check_parsed_rows(rows)
                outside = self.execute(
                    pickups_outside_month_sql(self.quote, self.schema, self.staging),
                    [self.partition.month_start, self.partition.month_end],
                )[0][0]
        except BaseException:
            self._drop_quietly(self.staging)
            raise
        finally:
            self._drop_quietly(self.scratch)
        self._staged_rows = rows
        return StagedPartition(
            table=staging_table_label(f"{self.sql_schema}.{self.staging_name}"),
            rows=rows,
            pickup_outside_month=outside,
        )

    def merge(self) -> MergedPartition:
        """Replace the file's rows in the main table with the staged ones, in one transaction:

        1. a partitioned table: swap the staging table in as the file's table partition, tried
           again while other sessions hold the table;
        2. a plain table (the Kestra flow's): DELETE the file's rows, INSERT the staged ones."""
        if self.partitioned:
            return self.waiting_for_locks(self.swap, f"the swap of {self.partition.filename}")
        return self.delete_and_insert()

    def _dialect(self, file_columns: tuple[Column, ...]) -> Dialect:
        """The SQL of this file's final rows (`load_sql.py`): PostgreSQL's types and text."""
        numbers = [self.quote(c.name.lower()) for c in file_columns if c.type is ColumnType.FLOAT]
        held = partial(
            held_to_contract_sql, pickup=self.quote(self.schema.pickup.lower()), numbers=numbers
        )
        return Dialect(self.quote, TABLE_TYPES, id_text_sql, held)

    def _fill_staging(self, csv: TripCsv, dialect: Dialect) -> int:
        """Fill the staging table by `STAGING_WRITERS` sessions at once; the rows copied.

        A file they refuse (a bad value, integers written as `1.0`), or every file of a role that
        may not create temporary tables, is copied again by one session."""
        try:
            return self._copy_in_parallel(csv, dialect)
        except (psycopg.errors.DataError, psycopg.errors.InsufficientPrivilege) as error:
            what = "refused a value" if isinstance(error, psycopg.errors.DataError) else "failed"
            dg.get_dagster_logger().info(
                f"{csv.name}: the parallel load {what} ({error.diag.message_primary}); loading "
                "the file again with one session"
            )
            self.execute(f"TRUNCATE {self.staging}")
            return self._copy_by_one_session(csv, dialect)

    def _copy_in_parallel(self, csv: TripCsv, dialect: Dialect) -> int:
        """Fill the staging table by `STAGING_WRITERS` sessions at once; the rows copied.

        Each writer copies its share of the lines a batch at a time into a temporary table of its
        own (in its memory: no WAL, no shared buffers) and writes their final rows into the
        staging table in the same transaction, while the other one copies: parsing, hashing and
        writing overlap on all cores."""
        scratch = f"pg_temp.{self.quote(self.scratch_name)}"
        names = column_names(self.quote, csv.columns)
        columns = scratch_columns(
            self.quote, csv.columns, SCRATCH_TYPES, integers_as_decimals=False
        )
        insert = insert_final_rows_sql(
            dialect, self.schema, csv.columns, self.staging, scratch, integers_as_decimals=False
        )
        return copy_in_parallel(
            self._writer_session,
            f"COPY {scratch} ({names}) FROM STDIN (FORMAT csv, FORCE_NULL ({names}))",
            csv.data_line_chunks(),
            STAGING_WRITERS,
            Batches(
                size=BATCH_BYTES,
                prepare=[
                    (f"SET temp_buffers = '{TEMP_BUFFERS}'", ()),
                    (f"CREATE TEMPORARY TABLE {scratch} ({columns}) ON COMMIT DELETE ROWS", ()),
                ],
                after_each=[(insert, [self.partition.filename])],
            ),
        )

    @contextmanager
    def _writer_session(self) -> Iterator[psycopg.Connection]:
        """Another session writing a table of this load, its text formats pinned like ours."""
        with self.connect() as connection:
            pin_text_formats(connection)
            yield connection

    def _copy_by_one_session(self, csv: TripCsv, dialect: Dialect) -> int:
        """COPY the file into the scratch table by this session, then write the staging table from
        it in one pass; a value that pass refuses is named with its line. The rows copied."""
        rows, integers_as_decimals = self._copy_into_scratch_table(csv)
        insert = insert_final_rows_sql(
            dialect, self.schema, csv.columns, self.staging, self.scratch, integers_as_decimals
        )
        try:
            self.execute(insert, [self.partition.filename])
        except CONVERSION_ERRORS as error:
            explained = csv.first_contract_break() or self._first_fractional_integer(csv)
            if explained is None:
                raise
            raise explained from error
        return rows

    def _copy_into_scratch_table(self, csv: TripCsv) -> tuple[int, bool]:
        """The rows copied, and whether integers are read as decimals (a file that writes them
        as `1.0` is copied again so)."""
        csv.rewind()
        with self.transaction():
            try:
                with self.transaction():  # a savepoint
                    return self._copy(csv, integers_as_decimals=False), False
            except IntegerWrittenAsDecimal:
                csv.rewind()
                return self._copy(csv, integers_as_decimals=True), True

    def _copy(self, csv: TripCsv, integers_as_decimals: bool) -> int:
        """COPY the file into a new scratch table; the rows copied.

        Unlogged: nothing of it needs to survive a crash. Created in this transaction, so COPY
        may write its rows frozen: the pass that reads them sets no hint bits (no rewrite)."""
        columns = scratch_columns(self.quote, csv.columns, SCRATCH_TYPES, integers_as_decimals)
        self.execute(f"CREATE UNLOGGED TABLE {self.scratch} ({columns})")
        names = column_names(self.quote, csv.columns)
        copy = (
            f"COPY {self.scratch} ({names}) "
            f"FROM STDIN (FORMAT csv, HEADER true, FREEZE true, FORCE_NULL ({names}))"
        )
        with self.connection.cursor() as cursor:
            try:
                with cursor.copy(built_sql(copy)) as stream:
                    for chunk in csv.chunks():
                        stream.write(chunk)
            except psycopg.errors.DataError as error:
                if not integers_as_decimals and decimal_in_integer_column(error):
                    raise IntegerWrittenAsDecimal from None
                raise SourceError(copy_error(csv, error)) from error
            return cursor.rowcount

    def _first_fractional_integer(self, csv: TripCsv) -> SourceError | None:
        """The first value of an integer column that is not a whole int4, with its line (a table
        filled by one COPY holds its rows in the file's order)."""
        found = self.execute(
            first_fractional_integer_sql(self.quote, csv.columns, self.scratch, "ORDER BY ctid"),
            [INT4_MAX],
        )
        return csv.fractional_integer(*found[0]) if found else None

    def _analyse_staging(self) -> None:
        """ANALYZE the staging table, from a sample of 3,000 rows.

        Statistics now, not when autovacuum gets to it: a query right after the load (the facts'
        dbt run) would be planned as if the month had a few rows. The sample is enough for that;
        autovacuum analyses the table in full later."""
        with self.transaction():
            self.execute("SET LOCAL default_statistics_target = 10")
            self.execute(f"ANALYZE {self.staging}")

    def _drop_quietly(self, table: str) -> None:
        """Drop a table of this load if the connection still works (a failure is already on its
        way up otherwise; the next load drops the table)."""
        try:
            with self.transaction():
                self.execute(f"DROP TABLE IF EXISTS {table}")
        except Exception:  # never hide the error that brought us here
            pass
