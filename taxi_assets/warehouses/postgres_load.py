"""PostgreSQL's staging: the file's rows COPYed in by two sessions at once, or by one.

Two sessions each COPY a batch of the file's lines into a temporary table and write its final
rows into the staged table in one pass, batch after batch (`parallel_copy.py`). A file they refuse
is loaded again by one session, which names the line of a bad value and takes integers written
as `1.0`. The staged table is built aside, ready to be attached (`postgres_tables.py`).
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

import dagster as dg
import psycopg
from psycopg import sql

from taxi_assets.errors import SourceError
from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_csv import TripCsv
from taxi_assets.trip_schema import ColumnType, TripSchema
from taxi_assets.warehouses.parallel_copy import Batches, copy_in_parallel
from taxi_assets.warehouses.partition_load import SqlPartitionLoad
from taxi_assets.warehouses.postgres_errors import (
    IntegerWrittenAsDecimal,
    copy_error,
    decimal_in_integer_column,
)
from taxi_assets.warehouses.postgres_tables import (
    TABLE_TYPES,
    PostgresTables,
    partition_table_name,
    table_columns_sql,
)

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
# Sessions that write a staged table side by side: PostgreSQL inserts row by row, one core per
# session, and a load is otherwise bound to one core.
STAGING_WRITERS = 2
# What each of them copies at a time: 4 MiB of CSV take about 6 MB as rows, within its temporary
# buffers (2 and 4 MiB measured alike).
BATCH_BYTES = 4 * 2**20
TEMP_BUFFERS = "16MB"


def pin_text_formats(connection: psycopg.Connection) -> None:
    """The ids hash timestamps and floats as text: pin how they print."""
    connection.execute("SET DateStyle = 'ISO, MDY'")
    connection.execute("SET extra_float_digits = 1")


class PostgresPartitionLoad(PostgresTables, SqlPartitionLoad):
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
            pin_text_formats(connection)
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
                f"CREATE TABLE {self.staging} ({table_columns_sql(self.schema, self.quote)})"
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
            except IntegerWrittenAsDecimal:
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
                if not self.integers_as_decimals and decimal_in_integer_column(error):
                    raise IntegerWrittenAsDecimal from None
                raise SourceError(copy_error(csv, error)) from None
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
