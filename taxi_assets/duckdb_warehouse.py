"""DuckDB: the embedded default warehouse, one file, no server.

The same two steps as PostgreSQL (`postgres.py`): stage the file into
`{taxi}_tripdata_staging_{YYYY_MM}` with `unique_row_id` and `filename`, then replace the file's
rows in `{taxi}_tripdata` in one transaction. DuckDB's CSV reader parses the gzip file itself.

A DuckDB file takes one writing process at a time. Every connection here is taken under an
inter-process file lock beside the database, so concurrent runs (a backfill) wait their turn
instead of failing on DuckDB's own lock.
"""

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
from filelock import FileLock
from pydantic import Field

from taxi_assets.partitions import TaxiPartition
from taxi_assets.pg_text import pg_float8_text
from taxi_assets.source import SourceError, TripCsv
from taxi_assets.trip_schema import TRIP_SCHEMAS, ColumnType, TripSchema, id_columns
from taxi_assets.warehouse import (
    MergedPartition,
    PartitionLoad,
    StagedPartition,
    TaxiWarehouse,
    WarehouseError,
    staging_table_name,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATH = PROJECT_ROOT / "data" / "taxi.duckdb"
TABLE_TYPES = {
    ColumnType.TEXT: "VARCHAR",
    ColumnType.TIMESTAMP: "TIMESTAMP",
    ColumnType.INTEGER: "INTEGER",
    ColumnType.FLOAT: "DOUBLE",
}
# What the CSV reader parses into: integers as DOUBLE, so `1.0` loads (then checked and cast).
CSV_TYPES = {**TABLE_TYPES, ColumnType.INTEGER: "DOUBLE"}
INT4_MAX = 2_147_483_647
LOCK_TIMEOUT_SECONDS = 3600


def quote(identifier: str) -> str:
    """A DuckDB identifier, quoted (DuckDB's Python API has no composer like psycopg.sql)."""
    return '"' + identifier.replace('"', '""') + '"'


def resolve_path(path: str) -> Path:
    """Relative paths are relative to the project root, wherever the process runs from."""
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else PROJECT_ROOT / resolved


class DuckDBWarehouse(TaxiWarehouse):
    """An embedded DuckDB file (TAXI_DUCKDB_PATH, default data/taxi.duckdb)."""

    path: str = Field(
        default=str(DEFAULT_PATH), description="The database file (TAXI_DUCKDB_PATH)."
    )
    target_schema: str = Field(default="main", description="Schema of the trip tables.")

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
        """Hold the file for this process (a dbt run, say) until the block ends."""
        self.database_file.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(f"{self.database_file}.lock", timeout=LOCK_TIMEOUT_SECONDS)
        with lock:
            yield

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection under the file lock, closed whatever happens in the block.
        (dagster-duckdb's `DuckDBResource.get_connection` does not close on an exception.)"""
        with self.exclusive_access():
            try:
                connection = duckdb.connect(str(self.database_file))
            except duckdb.Error as error:
                raise WarehouseError(
                    f"cannot open DuckDB file {self.database_file}: {error}"
                ) from None
            try:
                connection.create_function(
                    "pg_float8_text", pg_float8_text, ["DOUBLE"], "VARCHAR", null_handling="special"
                )
                yield connection
            finally:
                connection.close()

    @contextmanager
    def open_partition(
        self, schema: TripSchema, partition: TaxiPartition
    ) -> Iterator[PartitionLoad]:
        with self.connect() as connection:
            load = _DuckDBPartitionLoad(connection, self.target_schema, schema, partition)
            load.ensure_tables()
            yield load

    def qualified_table(self, table: str) -> str:
        return f"{self.database_file.stem}.{self.target_schema}.{table}"

    @property
    def table_types(self) -> Mapping[ColumnType, str]:
        return TABLE_TYPES

    def query(self, schema: TripSchema, query: str, params: Sequence[object]) -> list[tuple]:
        if not self.database_file.exists():
            return []  # nothing loaded yet
        with self.connect() as connection:
            if not _table_exists(connection, self.target_schema, schema.table):
                return []
            table = f"{quote(self.target_schema)}.{quote(schema.table)}"
            return connection.execute(
                query.replace("%s", "?").format(table=table), params
            ).fetchall()


def _table_exists(connection: duckdb.DuckDBPyConnection, schema_name: str, table: str) -> bool:
    found = connection.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema_name, table],
    )
    return found.fetchone()[0] > 0


def float_text_sql(column: str) -> str:
    """PostgreSQL's text of a DOUBLE: DuckDB's own text where it is the same digits (values read
    from short decimals), minus the `.0`; the exact rules (`pg_float8_text`) everywhere else."""
    return (
        f"CASE WHEN abs({column}) >= 1e-4 AND abs({column}) < 1e15 "
        f"AND TRY_CAST(CAST({column} AS VARCHAR) AS DOUBLE) = {column} "
        f"THEN regexp_replace(CAST({column} AS VARCHAR), '\\.0$', '') "
        f"ELSE pg_float8_text({column}) END"
    )


def unique_row_id_sql(schema: TripSchema) -> str:
    """The seed flow's md5 id, computed from the same text PostgreSQL would hash."""
    parts = []
    for column in id_columns(schema):
        name = quote(column.name.lower())
        if column.type is ColumnType.FLOAT:
            text = float_text_sql(name)
        elif column.type is ColumnType.TIMESTAMP:
            text = f"strftime({name}, '%Y-%m-%d %H:%M:%S')"
        else:
            text = f"CAST({name} AS VARCHAR)"
        parts.append(f"COALESCE({text}, '')")
    return f"md5({' || '.join(parts)})"


_CSV_LINE = re.compile(r"CSV Error on Line: (\d+)")
_CSV_COLUMN = re.compile(r'column "?(\w+)"?')


def _describe_csv_error(name: str, error: duckdb.Error) -> str:
    """`file line N, column C: <reason>` from DuckDB's CSV reader error."""
    text = str(error)
    reason = next(
        (
            line.strip()
            for line in text.splitlines()
            if line.strip().startswith(("Error when", "Expected", "Could not"))
        ),
        text.splitlines()[0],
    )
    line = _CSV_LINE.search(text)
    column = _CSV_COLUMN.search(reason)
    where = (f" line {line.group(1)}" if line else "") + (
        f", column {column.group(1)}" if column else ""
    )
    return f"{name}{where}: {reason}"


class _DuckDBPartitionLoad(PartitionLoad):
    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection,
        target_schema: str,
        schema: TripSchema,
        partition: TaxiPartition,
    ):
        self.connection = connection
        self.target_schema = target_schema
        self.schema = schema
        self.partition = partition
        self.staging_name = staging_table_name(schema, partition)
        self.staging = f"{quote(target_schema)}.{quote(self.staging_name)}"
        self.main = f"{quote(target_schema)}.{quote(schema.table)}"
        self.columns = ", ".join(quote(c.name.lower()) for c in schema.columns)

    def ensure_tables(self) -> None:
        self.connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self.target_schema)}")
        for schema in TRIP_SCHEMAS.values():
            columns = ", ".join(
                f"{quote(c.name.lower())} {TABLE_TYPES[c.type]}" for c in schema.columns
            )
            self.connection.execute(
                f"CREATE TABLE IF NOT EXISTS {quote(self.target_schema)}.{quote(schema.table)} "
                f"(unique_row_id VARCHAR, filename VARCHAR, {columns})"
            )

    def stage(self, csv: TripCsv) -> StagedPartition:
        csv.count_rows()  # also proves the gzip stream whole before DuckDB parses it
        self.connection.execute("BEGIN TRANSACTION")
        try:
            csv.check_parsed_rows(self._read_csv(csv))
            self._check_whole_numbers(csv)
            self.connection.execute(f"DROP TABLE IF EXISTS {self.staging}")
            self.connection.execute(self._create_staging_sql(), [self.partition.filename])
            rows, duplicates, outside = self.connection.execute(
                self._staging_stats_sql(),
                [self.partition.month_start, self.partition.month_end],
            ).fetchone()
            self.connection.execute("DROP TABLE source_rows")
            self.connection.execute("COMMIT")
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        return StagedPartition(
            table=f"{self.target_schema}.{self.staging_name}",
            rows=rows,
            exact_duplicate_rows=duplicates,
            pickup_outside_month=outside,
        )

    def _read_csv(self, csv: TripCsv) -> int:
        columns = ", ".join(
            f"'{c.name.lower()}': '{CSV_TYPES[c.type]}'" for c in self.schema.columns
        )
        try:
            self.connection.execute(
                "CREATE TEMP TABLE source_rows AS "
                "SELECT row_number() OVER () AS line_number, * FROM read_csv(?, "
                f"header = true, columns = {{{columns}}}, delim = ',', quote = '\"', "
                "escape = '\"', nullstr = '', auto_detect = false, "
                "timestampformat = '%Y-%m-%d %H:%M:%S', compression = 'gzip')",
                [str(csv.path)],
            )
        except (duckdb.ConversionException, duckdb.InvalidInputException) as error:
            raise SourceError(_describe_csv_error(csv.name, error)) from None
        return self.connection.execute("SELECT count(*) FROM source_rows").fetchone()[0]

    def _check_whole_numbers(self, csv: TripCsv) -> None:
        integer_columns = [
            c.name.lower() for c in self.schema.columns if c.type is ColumnType.INTEGER
        ]
        values = ", ".join(f"('{column}', {quote(column)})" for column in integer_columns)
        found = self.connection.execute(
            "SELECT line_number, v.column_name, v.value FROM source_rows "
            f"CROSS JOIN LATERAL (VALUES {values}) AS v(column_name, value) "
            "WHERE v.value <> trunc(v.value) OR abs(v.value) > ? "
            "ORDER BY line_number LIMIT 1",
            [INT4_MAX],
        ).fetchone()
        if found:
            raise csv.fractional_integer(*found)

    def _create_staging_sql(self) -> str:
        typed_columns = ", ".join(
            f"CAST({quote(c.name.lower())} AS INTEGER) AS {quote(c.name.lower())}"
            if c.type is ColumnType.INTEGER
            else quote(c.name.lower())
            for c in self.schema.columns
        )
        return (
            f"CREATE TABLE {self.staging} AS SELECT "
            f"{unique_row_id_sql(self.schema)} AS unique_row_id, CAST(? AS VARCHAR) AS filename, "
            f"{typed_columns} FROM source_rows ORDER BY line_number"
        )

    def _staging_stats_sql(self) -> str:
        pickup = quote(self.schema.pickup.lower())
        return (
            "SELECT count(*), "
            f"count(*) - (SELECT count(*) FROM (SELECT DISTINCT * FROM {self.staging})), "
            f"count(*) FILTER (WHERE {pickup} < ? OR {pickup} >= ?) FROM {self.staging}"
        )

    def merge(self) -> MergedPartition:
        filename = self.partition.filename
        if not _table_exists(self.connection, self.target_schema, self.staging_name):
            raise WarehouseError(f"{self.staging} is missing: stage the file first")
        self.connection.execute("BEGIN TRANSACTION")
        try:
            deleted = self.connection.execute(
                f"DELETE FROM {self.main} WHERE filename = ?", [filename]
            ).fetchone()[0]
            inserted = self.connection.execute(
                f"INSERT INTO {self.main} (unique_row_id, filename, {self.columns}) "
                f"SELECT unique_row_id, filename, {self.columns} FROM {self.staging}"
            ).fetchone()[0]
            self.connection.execute(f"DROP TABLE {self.staging}")
            self.connection.execute("COMMIT")
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        return MergedPartition(
            table=f"{self.target_schema}.{self.schema.table}", rows=inserted, replaced_rows=deleted
        )
