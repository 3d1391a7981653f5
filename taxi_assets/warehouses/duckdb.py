"""DuckDB: the embedded default warehouse, one file, no server.

The load algorithm is the one of `partition_load.py`, with one difference: nothing is built aside.
This process is the file's only writer (below), so one transaction deletes the file's rows from
`{taxi}_tripdata` and inserts them anew in one pass from DuckDB's CSV reader on the gzip file; the
checks read them as `{taxi}_tripdata_staging_{YYYY_MM}` (a temp view of them), and the merge
commits. No other connection sees the rows before that; a failure or a killed process rolls them
back.

A DuckDB file takes one writing process at a time. Every connection here is taken under an
inter-process file lock beside the database, so concurrent runs (a backfill) wait their turn
instead of failing on DuckDB's own lock.
"""

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import dagster as dg
import duckdb
from filelock import FileLock, Timeout
from pydantic import Field

from taxi_assets.errors import OutOfSpace, SourceError, WarehouseError, no_space
from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_contract import TIMESTAMP_PATTERN
from taxi_assets.trip_csv import TripCsv
from taxi_assets.trip_schema import TRIP_SCHEMAS, ColumnType, TripSchema
from taxi_assets.warehouses.base import MergedPartition, PartitionLoad, TaxiWarehouse
from taxi_assets.warehouses.float_text import postgres_float_text
from taxi_assets.warehouses.partition_load import SqlPartitionLoad
from taxi_assets.warehouses.trip_queries import TripQueries

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # taxi_assets/warehouses/duckdb.py
# The file name and schema where the course's module-4 dbt project looks for the trip tables
# (its source `raw`: database taxi_rides_ny, schema prod).
DEFAULT_PATH = PROJECT_ROOT / "data" / "taxi_rides_ny.duckdb"
DEFAULT_SCHEMA = "prod"
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
# DuckDB would take up to 80% of the machine's memory; past this it spills to a folder beside the
# database file instead, so a run's memory does not grow with the month it loads.
MEMORY_LIMIT = "512MB"
# DuckDB may build a join's hash table on the side it expects larger; a month of identical rows
# (one pickup, one id) makes that side one key, which no spilling can split: the checks ran out
# of memory. Without that optimizer an `IN (subquery)` hashes the subquery, as written.
CONNECTION_CONFIG = {"memory_limit": MEMORY_LIMIT, "disabled_optimizers": "build_side_probe_side"}


def quote(identifier: str) -> str:
    """A DuckDB identifier, quoted (DuckDB's Python API has no composer like psycopg.sql)."""
    return '"' + identifier.replace('"', '""') + '"'


def resolve_path(path: str) -> Path:
    """Relative paths are relative to the project root, wherever the process runs from."""
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else PROJECT_ROOT / resolved


class DuckDBWarehouse(TaxiWarehouse):
    """An embedded DuckDB file (TAXI_DUCKDB_PATH, default data/taxi_rides_ny.duckdb)."""

    path: str = Field(
        default=str(DEFAULT_PATH), description="The database file (TAXI_DUCKDB_PATH)."
    )
    sql_schema: str = Field(
        default=DEFAULT_SCHEMA, description="Schema of the trip tables (TAXI_DUCKDB_SCHEMA)."
    )
    memory_limit: str = Field(
        default=MEMORY_LIMIT,
        description="DuckDB's memory_limit: past it, DuckDB spills to a folder beside the file.",
    )

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
        """Hold the file for this process (a dbt run, say) until the block ends. While another
        process holds it, wait, saying so every `LOCK_LOG_SECONDS`, at most
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
                ) from None
            try:
                connection.create_function(
                    "postgres_float_text",
                    postgres_float_text,
                    ["DOUBLE"],
                    "VARCHAR",
                    null_handling="special",
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
                ) from None

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
    return found.fetchone()[0] > 0


def text_literal(text: str) -> str:
    """A string written into DuckDB SQL where no parameter can go (a view, a COPY's path)."""
    return "'" + text.replace("'", "''") + "'"


def float_text_sql(column: str) -> str:
    """PostgreSQL's text of a DOUBLE. Both print the shortest digits that read back as the same
    number; where PostgreSQL writes them plain (exponent in [-4, 15)) DuckDB does too, but for a
    trailing `.0` on whole numbers (written here as the BIGINT they are). Elsewhere the exact
    rules (`postgres_float_text`, in Python: rare values)."""
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
    """The reader's reason where it states it last, just before its "Possible fixes" and its
    settings ("Value with unterminated quote found.", "Invalid unicode … detected. …"); else
    its first line."""
    end = next(
        (i for i, line in enumerate(lines) if line.startswith(("Possible", "  file ="))),
        len(lines),
    )
    said = [line.strip() for line in lines[1:end] if line.strip()]
    if said and not said[-1].startswith("Original Line:"):
        return said[-1]
    return lines[0] if lines else "no reason given"


class _DuckDBPartitionLoad(SqlPartitionLoad):
    # (An interrupt: the line count failed meanwhile, and says why in `explain_error`.)
    conversion_errors = (
        duckdb.ConversionException,
        duckdb.InvalidInputException,
        duckdb.InterruptException,
    )

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection,
        sql_schema: str,
        schema: TripSchema,
        partition: TaxiPartition,
    ):
        super().__init__(sql_schema, schema, partition, TABLE_TYPES)
        self.connection = connection
        # Whether the load's transaction is open: the file's rows replaced, not yet committed.
        self._replacing = False
        self._csv: TripCsv | None = None  # the file its reader reads (`copy_source`)
        self._replaced_rows = 0

    def quote(self, identifier: str) -> str:
        return quote(identifier)

    def execute(self, query: str, params: Sequence[object] = ()) -> list[tuple]:
        try:
            return self.connection.execute(query.replace("%s", "?"), list(params)).fetchall()
        except duckdb.Error as error:
            if self._csv is not None:
                self._raise_file_error(error, self._csv)
            raise

    @staticmethod
    def _raise_file_error(error: duckdb.Error, csv: TripCsv) -> None:
        """The file's fault, if it is: the line count's verdict on the file (it reads the same
        bytes, so both warehouses say the same), else a gzip stream DuckDB's reader refuses.
        (The count is waited for anyway: closing the file waits for its thread.)"""
        csv.counted_rows()
        if "GZIP" in str(error):
            raise SourceError(
                f"{csv.name}: DuckDB cannot read its gzip stream: {_first_line(error)}"
            ) from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A transaction; within the load's open one (staged, not merged yet), a part of it."""
        if self._replacing:
            try:
                yield
            except BaseException:
                self._roll_back()
                raise
            return
        self.connection.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def build_staging(self) -> None:
        """Replace the file's rows in the main table, in a transaction the merge commits."""
        filename = self.partition.filename
        columns = self.final_column_list()
        if self._csv is not None:
            self._csv.raise_if_count_failed()  # too late to be stopped by its interrupt
        self.connection.execute("BEGIN TRANSACTION")
        self._replacing = True
        try:
            self._replaced_rows = self.execute(
                f"DELETE FROM {self.main} WHERE filename = %s", [filename]
            )[0][0]
            self.execute(
                f"INSERT INTO {self.main} ({columns}) {self.staging_select_sql()}", [filename]
            )
            self.execute(  # a view takes no parameters
                f"CREATE TEMP VIEW {quote(self.staging_name)} AS "
                f"SELECT * FROM {self.main} WHERE filename = {text_literal(filename)}"
            )
        except BaseException:
            self._roll_back()
            raise

    def _roll_back(self) -> None:
        self._replacing = False
        self.connection.execute("ROLLBACK")

    def merge(self) -> MergedPartition:
        if not self._replacing:
            raise WarehouseError(f"{self.staging_name} is missing: stage the file first")
        rows = self.staged_rows()
        self.connection.execute("COMMIT")
        self._replacing = False
        return self.merged(rows=rows, replaced_rows=self._replaced_rows)

    @property
    def source(self) -> str:
        return f"temp.main.{quote(self.source_name)}"  # a view, gone with the connection

    @property
    def staged_in(self) -> str:
        return f"{self.sql_schema}.{self.schema.table} (this run's rows, committed by the merge)"

    @property
    def staging(self) -> str:
        return f"temp.main.{quote(self.staging_name)}"  # a view of the rows being loaded

    def copy_source(self, csv: TripCsv) -> int | None:
        """A view over DuckDB's reader of the gzip file: the staging table is built straight from
        the file, in one pass. Python counts the file's lines meanwhile (and proves the gzip
        stream whole)."""
        types = ", ".join(f"'{c.name.lower()}': '{CSV_TYPES[c.type]}'" for c in self.file_columns)
        self.connection.execute(
            f"CREATE TEMP VIEW {quote(self.source_name)} AS SELECT * FROM read_csv("
            f"'{str(csv.path).replace(chr(39), chr(39) * 2)}', "
            f"header = true, columns = {{{types}}}, delim = ',', quote = '\"', "
            "escape = '\"', nullstr = '', auto_detect = false, compression = 'gzip')"
        )
        # A count that fails (too many lines, a broken gzip) stops the reader at once.
        self._csv = csv
        csv.count_rows_in_background(on_error=self.connection.interrupt)
        return None

    def drop_source_sql(self) -> str:
        return f"DROP VIEW IF EXISTS {self.source}"

    def explain_error(self, error: Exception, csv: TripCsv) -> Exception | None:
        """The reader's own complaint about the file, after the line count's (a truncated or
        non-gzip file is best said by the count)."""
        csv.counted_rows()
        if "CSV Error" in str(error) or isinstance(error, duckdb.InvalidInputException):
            return csv.first_mixed_line_ending() or SourceError(
                _describe_csv_error(csv.name, error)
            )
        return csv.first_contract_break() or super().explain_error(error, csv)

    def id_text_sql(self, column: str, type_: ColumnType) -> str:
        if type_ is ColumnType.FLOAT:
            return float_text_sql(column)
        return f"CAST({column} AS VARCHAR)"  # a timestamp's text: the contract's form

    def contract_value_sql(self, column: str, type_: ColumnType) -> str:
        """Timestamps of the contract's form only (then cast), finite numbers only; a value
        outside fails a cast of the text that says so (found again by `explain_error`)."""
        if type_ is ColumnType.TEXT:
            return column
        sql_type = TABLE_TYPES[type_]
        held = _CONTRACT_SQL[type_].replace("{column}", column)
        cast = f"CAST({column} AS {sql_type})"
        refused = f"CAST('outside the contract: ' || CAST({column} AS VARCHAR) AS {sql_type})"
        return f"CASE WHEN {column} IS NULL OR {held} THEN {cast} ELSE {refused} END"

    @property
    def row_order(self) -> str:
        return ""  # DuckDB keeps the reader's row order (preserve_insertion_order)

    def ensure_tables(self) -> None:
        """Both colours' tables, created if missing; a table of an earlier version gains the
        newer columns in place (nullable: NULL for the months loaded before)."""
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
