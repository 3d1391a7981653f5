"""The one load algorithm of the SQL warehouses (PostgreSQL, DuckDB), with small engine hooks.

Per partition, on one connection:

1. copy (engine): the file's rows, typed, into a scratch table `{taxi}_tripdata_source_{YYYY_MM}`
   (integers as decimals when the file writes `1.0`). PostgreSQL streams it with COPY, its lines
   shared out among two sessions that each copy a batch into a temporary table of their own and
   stage it (step 2) before the next (`fill_staging`); DuckDB's scratch table is a view over its
   CSV reader.
2. stage: one pass (shared SQL) from the scratch rows to the final rows, the seed flow's md5
   `unique_row_id`, the `filename` and integer columns checked and cast, written (engine) into
   `{taxi}_tripdata_staging_{YYYY_MM}` (PostgreSQL: by two sessions at once; DuckDB: straight
   into the main table, in a transaction the merge commits, and the staging name is a view of
   them); then, in one transaction, a check that the parser found one row per line and the
   numbers the UI shows.
3. merge (engine, one transaction): the staged rows replace the file's rows in
   `{taxi}_tripdata`. PostgreSQL swaps a partition in (DELETE + INSERT into a plain table);
   DuckDB commits.

A failure or a killed process leaves the main table untouched: staging tables are built aside and
dropped on failure (or by the partition's next load), or rolled back, and the merge is one
transaction.
Identifiers are quoted by the engine (`quote`), values are parameters (`%s`).
"""

from abc import abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager

from taxi_assets.errors import WarehouseError
from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_csv import INT4_MAX, TripCsv
from taxi_assets.trip_schema import Column, ColumnType, TripSchema
from taxi_assets.warehouses import load_sql
from taxi_assets.warehouses.base import (
    MergedPartition,
    PartitionLoad,
    StagedPartition,
    scratch_table,
    staging_table_name,
)
from taxi_assets.warehouses.load_sql import Dialect


def source_table_name(schema: TripSchema, partition: TaxiPartition) -> str:
    """The scratch table the file is copied into (`green_tripdata_source_2019_01`)."""
    return f"{schema.table}_source_{partition.month.replace('-', '_')}"


class SqlPartitionLoad(PartitionLoad):
    """Subclasses say how to talk to their engine; the steps and their SQL live here."""

    # The engine's errors for a value its cast refuses (the whole-number check's way to fail).
    conversion_errors: tuple[type[Exception], ...] = ()
    # Whether the scratch table holds integer columns as decimals (a file that writes `1.0`),
    # to be checked for whole numbers and cast while staging.
    integers_as_decimals: bool = True

    def __init__(self, sql_schema: str, schema: TripSchema, partition: TaxiPartition, table_types):
        self.sql_schema = sql_schema
        self.schema = schema
        self.partition = partition
        self.table_types = table_types
        self.staging_name = staging_table_name(schema, partition)
        self.source_name = source_table_name(schema, partition)
        # The columns of the file being loaded (`TripCsv.columns`): the release's, or those and
        # some newer ones; the table's other newer columns stay NULL for its rows.
        self.file_columns: tuple[Column, ...] = schema.columns
        self._staged_rows: int | None = None

    # -- engine hooks -------------------------------------------------------------------------

    @abstractmethod
    def quote(self, identifier: str) -> str:
        """The identifier, quoted by the engine's driver."""

    @abstractmethod
    def execute(self, query: str, params: Sequence[object] = ()) -> list[tuple]:
        """Run one statement (`%s` parameters); its rows, if it returns any."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """One transaction: committed when the block ends, rolled back when it raises."""

    @abstractmethod
    def copy_source(self, csv: TripCsv) -> int | None:
        """Create the scratch table (`source_columns`) and fill it with the file's rows, in
        transactions of its own; the number of CSV rows it parsed (None: count the staged
        rows)."""

    @abstractmethod
    def build_staging(self) -> None:
        """Write the final rows (`staging_select_sql`, its one parameter the filename) where
        `staging` reads them."""

    @abstractmethod
    def id_text_sql(self, column: str, type_: ColumnType) -> str:
        """A column as text, exactly as PostgreSQL's CAST(... AS text) writes it (the seed hashes
        that text)."""

    @property
    @abstractmethod
    def row_order(self) -> str:
        """The window that numbers the scratch rows as the file's lines (`ORDER BY ctid`)."""

    @abstractmethod
    def merge(self) -> MergedPartition:
        """Replace the file's rows in the main table with the staged ones (one transaction)."""

    # -- names ---------------------------------------------------------------------------------

    def qualified(self, table: str) -> str:
        return load_sql.qualified(self.quote, self.sql_schema, table)

    @property
    def main(self) -> str:
        return self.qualified(self.schema.table)

    @property
    def staging(self) -> str:
        return self.qualified(self.staging_name)

    @property
    def source(self) -> str:
        return self.qualified(self.source_name)

    def file_column_list(self) -> str:
        """The file's columns, as the scratch table and its COPY name them."""
        return load_sql.column_names(self.quote, self.file_columns)

    def table_column_list(self) -> str:
        """The trip table's columns after `unique_row_id` and `filename`."""
        return load_sql.column_names(self.quote, self.schema.table_columns)

    def final_column_list(self) -> str:
        """All of the trip table's columns, as the staged rows have them."""
        return load_sql.final_column_names(self.quote, self.schema)

    # -- the steps -----------------------------------------------------------------------------

    def stage(self, csv: TripCsv) -> StagedPartition:
        self.file_columns = csv.columns
        self.drop_leftovers()
        try:
            parsed = self.fill_staging(csv)
            with self.transaction():
                if parsed is None:
                    parsed = self.execute(f"SELECT count(*) FROM {self.staging}")[0][0]
                csv.check_parsed_rows(parsed)
                outside = self.execute(
                    self._staging_stats_sql(),
                    [self.partition.month_start, self.partition.month_end],
                )[0][0]
        except BaseException:
            self._drop_quietly(f"DROP TABLE IF EXISTS {self.staging}")
            raise
        finally:
            self._drop_quietly(self.drop_source_sql())
        self._staged_rows = parsed
        return StagedPartition(
            table=self.staged_in,
            rows=parsed,
            pickup_outside_month=outside,
        )

    @property
    def staged_in(self) -> str:
        """Where the staged rows wait for the merge, for the UI."""
        return scratch_table(f"{self.sql_schema}.{self.staging_name}")

    def fill_staging(self, csv: TripCsv) -> int | None:
        """Copy the file into the scratch table, then write the staging table from it; the CSV
        rows parsed (None: count the staged rows)."""
        parsed = self.copy_source(csv)
        try:
            self.build_staging()
        except self.conversion_errors as error:
            explained = self.explain_error(error, csv)
            if explained is None:
                raise
            raise explained from None
        return parsed

    def drop_leftovers(self) -> None:
        """Tables a killed run of this partition left behind (its lock is ours now)."""
        with self.transaction():
            self.execute(self.drop_source_sql())
            self.execute(f"DROP TABLE IF EXISTS {self.staging}")

    def drop_source_sql(self) -> str:
        return f"DROP TABLE IF EXISTS {self.source}"

    def _drop_quietly(self, statement: str) -> None:
        """Drop the scratch table if the connection still works (a failure is already on its
        way up otherwise; the next load drops the table)."""
        try:
            with self.transaction():
                self.execute(statement)
        except Exception:  # never hide the error that brought us here
            pass

    def staged_rows(self) -> int:
        """Rows in the staging table (known from `stage`, counted otherwise)."""
        if self._staged_rows is None:
            self._staged_rows = self.execute(f"SELECT count(*) FROM {self.staging}")[0][0]
        return self._staged_rows

    def require_staging(self) -> None:
        found = self.execute(load_sql.table_exists_sql(), [self.sql_schema, self.staging_name])
        if not found[0][0]:
            raise WarehouseError(
                f"{self.sql_schema}.{self.staging_name} is missing: stage the file first"
            )

    def delete_and_insert(self) -> MergedPartition:
        """The plain way to replace a file's rows: DELETE them, INSERT the staged ones."""
        filename = [self.partition.filename]
        with self.transaction():
            self.require_staging()
            deleted = self.execute(load_sql.count_file_rows_sql(self.main), filename)[0][0]
            self.execute(load_sql.delete_file_rows_sql(self.main), filename)
            self.execute(
                load_sql.insert_staged_rows_sql(self.quote, self.schema, self.main, self.staging)
            )
            self.execute(f"DROP TABLE {self.staging}")
        return self.merged(rows=self.staged_rows(), replaced_rows=deleted)

    def merged(self, rows: int, replaced_rows: int) -> MergedPartition:
        return MergedPartition(
            table=f"{self.sql_schema}.{self.schema.table}",
            rows=rows,
            replaced_rows=replaced_rows,
        )

    # -- the shared SQL ------------------------------------------------------------------------

    def scratch_types(self) -> dict[ColumnType, str]:
        """The types the file's text is read into (engine: types that hold it to the contract,
        `trip_contract.py`)."""
        return dict(self.table_types)

    def contract_value_sql(self, column: str, type_: ColumnType) -> str:
        """A scratch column as the main table's type, its value checked against the contract
        where the engine's reading did not (engine)."""
        if type_ is ColumnType.TEXT:
            return column
        return f"CAST({column} AS {self.table_types[type_]})"

    def dialect(self) -> Dialect:
        return Dialect(self.quote, self.table_types, self.id_text_sql, self.contract_value_sql)

    def source_columns(self) -> str:
        """The scratch table's columns: the main table's types, integers as decimals or not."""
        return load_sql.read_columns(
            self.quote, self.file_columns, self.scratch_types(), self.integers_as_decimals
        )

    def staging_select_sql(self, source: str | None = None) -> str:
        """One pass from `source` (the scratch table) to the final rows (`load_sql.py`)."""
        return load_sql.final_rows_sql(
            self.dialect(),
            self.schema,
            self.file_columns,
            source or self.source,
            self.integers_as_decimals,
        )

    def _staging_stats_sql(self) -> str:
        """Pickups outside the month (PostgreSQL answers from the staged table's index)."""
        return load_sql.pickups_outside_month_sql(self.quote, self.schema, self.staging)

    def explain_error(self, error: Exception, csv: TripCsv) -> Exception | None:
        """What to say of an error building the staging table: by default, the first value of
        an integer column that is not a whole int4, with its line (None: nothing found)."""
        found = self.execute(
            load_sql.first_fractional_integer_sql(
                self.quote, self.file_columns, self.source, self.row_order
            ),
            [INT4_MAX],
        )
        return csv.fractional_integer(*found[0]) if found else None
