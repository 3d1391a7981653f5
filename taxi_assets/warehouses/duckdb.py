"""DuckDB: the embedded default warehouse, one file, no server.

Nothing is built aside: this process is the file's only writer (below), so one transaction
deletes the file's rows from `{taxi}_tripdata` and inserts them anew in one pass from DuckDB's CSV
reader on the gzip file (the SQL of `load_sql.py`), the checks read them there, and the merge
commits. No other connection sees the rows before that; a failure or a killed process rolls them
back.

A DuckDB file takes one writing process at a time. Every connection here is taken under an
inter-process file lock beside the database, so concurrent runs (a backfill) wait their turn
instead of failing on DuckDB's own lock.
"""

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import dagster as dg
import duckdb
from duckdb.func import FunctionNullHandling
from filelock import FileLock, Timeout

from taxi_assets.errors import OutOfSpace, SourceError, WarehouseError, no_space
from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_contract import TIMESTAMP_PATTERN
from taxi_assets.trip_csv import INT4_MAX, TripCsv
from taxi_assets.trip_schema import TRIP_SCHEMAS, ColumnType, TripSchema
from taxi_assets.variables import variable_field
from taxi_assets.warehouses.base import (
    MergedPartition,
    PartitionLoad,
    StagedPartition,
    TaxiWarehouse,
)
from taxi_assets.warehouses.float_text import postgres_float_text
from taxi_assets.warehouses.load_sql import (
    Dialect,
    delete_file_rows_sql,
    first_fractional_integer_sql,
    insert_final_rows_sql,
    pickups_outside_month_of_file_sql,
    qualified,
    scratch_table_name,
)
from taxi_assets.warehouses.trip_queries import TripQueries

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # taxi_assets/warehouses/duckdb.py
TABLE_TYPES = {
    ColumnType.TEXT: "VARCHAR",
    ColumnType.TIMESTAMP: "TIMESTAMP",
    ColumnType.INTEGER: "INTEGER",
    ColumnType.FLOAT: "DOUBLE",
}
# What the CSV reader parses into: integers as DOUBLE, so `1.0` loads (then checked and cast);
# timestamps as text, held to the contract's form while staging (DuckDB's strptime takes
# `2019-1-5` and `infinity`).
CSV_TYPES = {**TABLE_TYPES, ColumnType.INTEGER: "DOUBLE", ColumnType.TIMESTAMP: "VARCHAR"}
LOCK_TIMEOUT_SECONDS = 3600
LOCK_LOG_SECONDS = 10.0  # how often a wait for the file says so
# DuckDB may build a join's hash table on the side it expects larger; a month of identical rows
# (one pickup, one id) makes that side one key, which no spilling can split: the checks ran out
# of memory. Without that optimizer an `IN (subquery)` hashes the subquery, as written.
CONNECTION_CONFIG = {"disabled_optimizers": "build_side_probe_side"}


def quote(identifier: str) -> str:
    """A DuckDB identifier, quoted (DuckDB's Python API has no composer like psycopg.sql)."""
    return '"' + identifier.replace('"', '""') + '"'


def resolve_path(path: str) -> Path:
    """Relative paths are relative to the project root, wherever the process runs from."""
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else PROJECT_ROOT / resolved


class DuckDBWarehouse(TaxiWarehouse):
    """An embedded DuckDB file (TAXI_DUCKDB_PATH, default data/taxi_rides_ny.duckdb)."""

    path: str = variable_field("TAXI_DUCKDB_PATH")
    sql_schema: str = variable_field("TAXI_DUCKDB_SCHEMA")
    memory_limit: str = variable_field("TAXI_DUCKDB_MEMORY_LIMIT")

    @property
    def kind(self) -> str:
        return "duckdb"

    @property
    def single_file(self) -> bool:
        return True

    @property
    def database_file(self) -> Path:
        return resolve_path(self.path)

    @contextmanager
    def exclusive_access(self) -> Iterator[None]:
        """Hold the file for this process (a dbt run, say) until the block ends.

        While another process holds it, wait, saying so every `LOCK_LOG_SECONDS`, at most
        `LOCK_TIMEOUT_SECONDS`."""
        self.database_file.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(f"{self.database_file}.lock")
        started = time.monotonic()
        while True:
            try:
                lock.acquire(timeout=LOCK_LOG_SECONDS)
                break
            except Timeout:
                waited = time.monotonic() - started
                if waited >= LOCK_TIMEOUT_SECONDS:
                    raise WarehouseError(
                        f"the DuckDB file {self.database_file} stayed in use by another process "
                        f"for {waited:.0f}s"
                    ) from None
                dg.get_dagster_logger().info(
                    f"waiting for the DuckDB file {self.database_file}: another process (a load, "
                    f"the dbt build) has it ({waited:.0f}s so far)"
                )
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection under the file lock, closed whatever happens in the block.
        (dagster-duckdb's `DuckDBResource.get_connection` does not close on an exception.)"""
        with self.exclusive_access():
            try:
                connection = duckdb.connect(
                    str(self.database_file),
                    config={**CONNECTION_CONFIG, "memory_limit": self.memory_limit},
                )
            except duckdb.Error as error:
                raise WarehouseError(
                    f"cannot open DuckDB file {self.database_file}: {error}"
                ) from error
            try:
                connection.create_function(
                    "postgres_float_text",
                    postgres_float_text,
                    ["DOUBLE"],
                    "VARCHAR",
                    null_handling=FunctionNullHandling.SPECIAL,
                )
                yield connection
            finally:
                connection.close()

    @contextmanager
    def open_partition(
        self, schema: TripSchema, partition: TaxiPartition
    ) -> Iterator[PartitionLoad]:
        with self.connect() as connection:
            load = _DuckDBPartitionLoad(connection, self.sql_schema, schema, partition)
            try:
                load.ensure_tables()
                yield load
            except duckdb.Error as error:
                if not no_space(error):
                    raise
                raise OutOfSpace(
                    f"no space left on device for the DuckDB file {self.database_file} (or the "
                    f"temporary files it spills beside it): free space there; {_first_line(error)}"
                ) from error

    def qualified_table(self, table: str) -> str:
        return f"{self.database_file.stem}.{self.sql_schema}.{table}"

    @property
    def table_types(self) -> Mapping[ColumnType, str]:
        return TABLE_TYPES

    @contextmanager
    def reading(self) -> Iterator[TripQueries]:
        if not self.database_file.exists():  # nothing loaded yet
            yield TripQueries(lambda schema, query, params: [], self.column_names)
            return
        with self.connect() as connection:
            yield TripQueries(partial(self._query_on, connection), self.column_names)

    def _query_on(
        self,
        connection: duckdb.DuckDBPyConnection,
        schema: TripSchema,
        query: str,
        params: Sequence[object],
    ) -> list[tuple]:
        if not _table_exists(connection, self.sql_schema, schema.table):
            return []
        table = f"{quote(self.sql_schema)}.{quote(schema.table)}"
        return connection.execute(query.replace("%s", "?").format(table=table), params).fetchall()


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _table_exists(connection: duckdb.DuckDBPyConnection, schema_name: str, table: str) -> bool:
    found = connection.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema_name, table],
    )
    row = found.fetchone()  # count(*): always one row
    return row is not None and row[0] > 0


def text_literal(text: str) -> str:
    """A string written into DuckDB SQL where no parameter can go (a view, a COPY's path)."""
    return "'" + text.replace("'", "''") + "'"


def float_text_sql(column: str) -> str:
    """PostgreSQL's text of a DOUBLE.

    Both print the shortest digits that read back as the same number; where PostgreSQL writes
    them plain (exponent in [-4, 15)) DuckDB does too, but for a trailing `.0` on whole numbers
    (written here as the BIGINT they are). Elsewhere the exact rules (`postgres_float_text`, in
    Python: rare values)."""
    return (
        f"CASE WHEN {column} IS NULL THEN NULL "
        f"WHEN abs({column}) >= 1e-4 AND abs({column}) < 1e15 THEN "
        f"CASE WHEN {column} = trunc({column}) THEN CAST(CAST({column} AS BIGINT) AS VARCHAR) "
        f"ELSE CAST({column} AS VARCHAR) END "
        f"ELSE postgres_float_text({column}) END"
    )


# What the contract asks of a value the reader took (`{column}`: a column of the scratch view).
_CONTRACT_SQL = {
    # The form; a date that does not exist (2019-02-30) fails the cast that follows.
    ColumnType.TIMESTAMP: f"regexp_full_match({{column}}, '{TIMESTAMP_PATTERN}')",
    ColumnType.FLOAT: "isfinite({column})",
}

_CSV_LINE = re.compile(r"CSV Error on Line: (\d+)")
_CSV_COLUMN = re.compile(r'column "?(\w+)"?')


def _describe_csv_error(name: str, error: duckdb.Error) -> str:
    """`file line N, column C: <reason>` from DuckDB's CSV reader error."""
    text = str(error)
    lines = text.splitlines()
    reason = next(
        (
            line.strip()
            for line in lines
            if line.strip().startswith(("Error when", "Expected", "Could not"))
        ),
        None,
    ) or _reason_before_hints(lines)
    line = _CSV_LINE.search(text)
    column = _CSV_COLUMN.search(reason)
    where = (f" line {line.group(1)}" if line else "") + (
        f", column {column.group(1)}" if column else ""
    )
    return f"{name}{where}: {reason}"


def _reason_before_hints(lines: list[str]) -> str:
    """The reader's reason: where it states it last, else its first line.

    That is just before its "Possible fixes" and its settings ("Value with unterminated quote
    found.", "Invalid unicode … detected. …")."""
    end = next(
        (i for i, line in enumerate(lines) if line.startswith(("Possible", "  file ="))),
        len(lines),
    )
    said = [line.strip() for line in lines[1:end] if line.strip()]
    if said and not said[-1].startswith("Original Line:"):
        return said[-1]
    return lines[0] if lines else "no reason given"


def id_text_sql(column: str, type_: ColumnType) -> str:
    """A column as the text PostgreSQL's CAST(... AS text) writes (the Kestra flow hashes it)."""
    if type_ is ColumnType.FLOAT:
        return float_text_sql(column)
    return f"CAST({column} AS VARCHAR)"  # a timestamp's text: the contract's form


def held_to_contract_sql(column: str, type_: ColumnType) -> str:
    """A column of the scratch view as the main table's type, held to the contract.

    Timestamps of the contract's form only (then cast), finite numbers only; a value outside fails
    a cast of the text that says so (found again by `_file_error`)."""
    if type_ is ColumnType.TEXT:
        return column
    sql_type = TABLE_TYPES[type_]
    held = _CONTRACT_SQL[type_].replace("{column}", column)
    cast = f"CAST({column} AS {sql_type})"
    refused = f"CAST('outside the contract: ' || CAST({column} AS VARCHAR) AS {sql_type})"
    return f"CASE WHEN {column} IS NULL OR {held} THEN {cast} ELSE {refused} END"


DIALECT = Dialect(quote, TABLE_TYPES, id_text_sql, held_to_contract_sql)
# The errors of a value the staging pass refuses (a cast, the reader's own complaint), and of
# an interrupt: the line count failed meanwhile (`_file_error` says why).
CONVERSION_ERRORS = (
    duckdb.ConversionException,
    duckdb.InvalidInputException,
    duckdb.InterruptException,
)


@dataclass(frozen=True)
class _Staged:
    """What `stage` leaves for `merge` to report."""

    rows: int
    replaced_rows: int


class _DuckDBPartitionLoad(PartitionLoad):
    """One partition's load: its rows replaced in the main table by one transaction, which
    `stage` opens and `merge` commits."""

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection,
        sql_schema: str,
        schema: TripSchema,
        partition: TaxiPartition,
    ):
        self.connection = connection
        self.sql_schema = sql_schema
        self.schema = schema
        self.partition = partition
        self.main = qualified(quote, sql_schema, schema.table)
        # A temporary view, gone with the connection: a killed run leaves none behind.
        self.scratch = f"temp.main.{quote(scratch_table_name(schema, partition))}"
        self._staged: _Staged | None = None  # set once, when `stage` succeeds

    def stage(self, csv: TripCsv) -> StagedPartition:
        """Replace the file's rows in the main table, in a transaction `merge` commits:

        1. the scratch view: DuckDB's CSV reader on the gzip file, while Python counts the file's
           lines (a count that fails stops the reader);
        2. in one transaction: DELETE the file's rows, INSERT its final rows in one pass from the
           view (`load_sql.py`);
        3. check that the reader found one row per line; count the pickups outside the month.

        A failure rolls the transaction back and says what in the file is wrong; the view goes
        whatever happens. No other connection sees the rows before `merge`."""
        self._read_file(csv)  # 1
        try:
            try:
                staged, outside = self._replace_file_rows(csv)  # 2, 3
            except duckdb.Error as error:
                said = self._file_error(error, csv)
                if said is None:
                    raise
                raise said from error
        finally:
            self._drop_quietly(f"DROP VIEW IF EXISTS {self.scratch}")
        self._staged = staged
        table = f"{self.sql_schema}.{self.schema.table}"
        return StagedPartition(
            table=f"{table} (this run's rows, committed by the merge)",
            rows=staged.rows,
            pickup_outside_month=outside,
        )

    def merge(self) -> MergedPartition:
        """Commit the transaction `stage` left open: the file's new rows replace its old ones."""
        if self._staged is None:
            raise WarehouseError(f"{self.partition.filename} is not staged: stage the file first")
        self.connection.execute("COMMIT")
        return MergedPartition(
            table=f"{self.sql_schema}.{self.schema.table}",
            rows=self._staged.rows,
            replaced_rows=self._staged.replaced_rows,
        )

    def _read_file(self, csv: TripCsv) -> None:
        """The scratch view over the gzip file, and its lines counted in the background."""
        types = ", ".join(f"'{c.name.lower()}': '{CSV_TYPES[c.type]}'" for c in csv.columns)
        self.connection.execute(
            f"CREATE TEMP VIEW {quote(scratch_table_name(self.schema, self.partition))} AS "
            f"SELECT * FROM read_csv({text_literal(str(csv.path))}, "
            f"header = true, columns = {{{types}}}, delim = ',', quote = '\"', "
            "escape = '\"', nullstr = '', auto_detect = false, compression = 'gzip')"
        )
        csv.count_rows_in_background(on_error=self.connection.interrupt)

    def _replace_file_rows(self, csv: TripCsv) -> tuple[_Staged, int]:
        """Steps 2 and 3 of `stage`; the rows and the pickups outside the month.

        The transaction stays open for `merge`; anything that fails rolls it back."""
        filename = [self.partition.filename]
        csv.raise_if_count_failed()  # too late to be stopped by its interrupt
        self.connection.execute("BEGIN TRANSACTION")
        try:
            replaced = self._execute(delete_file_rows_sql(self.main), filename)[0][0]
            insert = insert_final_rows_sql(
                DIALECT,
                self.schema,
                csv.columns,
                self.main,
                self.scratch,
                integers_as_decimals=True,
            )
            rows = self._execute(insert, filename)[0][0]
            csv.check_parsed_rows(rows)
            outside = self._execute(
                pickups_outside_month_of_file_sql(quote, self.schema, self.main),
                [*filename, self.partition.month_start, self.partition.month_end],
            )[0][0]
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        return _Staged(rows=rows, replaced_rows=replaced), outside

    def _file_error(self, error: duckdb.Error, csv: TripCsv) -> Exception | None:
        """What in the file a DuckDB error comes from (None: not the file's fault).

        The line count's verdict first (it reads the same bytes, so both warehouses say the same;
        a truncated or non-gzip file is best said by it), then a gzip stream DuckDB's reader
        refuses, then the value the staging pass refused. The count is waited for anyway:
        closing the file waits for its thread."""
        csv.counted_rows()
        if "GZIP" in str(error):
            return SourceError(
                f"{csv.name}: DuckDB cannot read its gzip stream: {_first_line(error)}"
            )
        if not isinstance(error, CONVERSION_ERRORS):
            return None
        if "CSV Error" in str(error) or isinstance(error, duckdb.InvalidInputException):
            return csv.first_mixed_line_ending() or SourceError(
                _describe_csv_error(csv.name, error)
            )
        return csv.first_contract_break() or self._first_fractional_integer(csv)

    def _first_fractional_integer(self, csv: TripCsv) -> SourceError | None:
        """The first value of an integer column that is not a whole int4, with its line (the
        reader keeps the file's order: preserve_insertion_order)."""
        found = self._execute(
            first_fractional_integer_sql(quote, csv.columns, self.scratch, row_order=""), [INT4_MAX]
        )
        return csv.fractional_integer(*found[0]) if found else None

    def _execute(self, query: str, params: Sequence[object] = ()) -> list[tuple]:
        """One statement (`%s` parameters); its rows."""
        return self.connection.execute(query.replace("%s", "?"), list(params)).fetchall()

    def _drop_quietly(self, statement: str) -> None:
        """Drop the view if the connection still works (an error is on its way up otherwise)."""
        with suppress(duckdb.Error):  # never hide the error that brought us here
            self.connection.execute(statement)

    def ensure_tables(self) -> None:
        """Both colours' tables, created if missing; an existing table gains the newer
        columns it lacks, in place (nullable: NULL for the months loaded before)."""
        self.connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self.sql_schema)}")
        for schema in TRIP_SCHEMAS.values():
            table = f"{quote(self.sql_schema)}.{quote(schema.table)}"
            columns = ", ".join(
                f"{quote(c.name.lower())} {TABLE_TYPES[c.type]}" for c in schema.table_columns
            )
            self.connection.execute(
                f"CREATE TABLE IF NOT EXISTS {table} "
                f"(unique_row_id VARCHAR, filename VARCHAR, {columns})"
            )
            for column in schema.newer_columns:
                self.connection.execute(
                    f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS "
                    f"{quote(column.name.lower())} {TABLE_TYPES[column.type]}"
                )
