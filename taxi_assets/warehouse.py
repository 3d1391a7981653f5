"""The small interface every warehouse implements, and what its steps report.

The load algorithm (`assets.py`) is the same for every warehouse: open the partition, stage the
file's rows with `unique_row_id` and `filename`, then merge them into `{taxi}_tripdata`, replacing
whatever that file loaded before in one transaction. Checks ask the questions below.
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import dagster as dg

from taxi_assets.id_overlap import neighbour_months, outside_pickup_days_sql, overlap_sql
from taxi_assets.partitions import TaxiPartition
from taxi_assets.source import TripCsv
from taxi_assets.trip_schema import ColumnType, TripSchema


def staging_table_name(schema: TripSchema, partition: TaxiPartition) -> str:
    """One staging table per partition (`green_tripdata_staging_2019_01`), so partitions of a
    colour load side by side."""
    return f"{schema.table}_staging_{partition.month.replace('-', '_')}"


class WarehouseError(Exception):
    """The warehouse refused the load; the message says why, without secrets."""


class WarehouseMisconfigured(WarehouseError):
    """A setting or credential is missing: retrying will not help."""


def scratch_table(qualified_name: str) -> str:
    """`StagedPartition.table` of a staging table built aside and dropped by the merge."""
    return f"{qualified_name} (this run's scratch table, merged and then gone)"


@dataclass(frozen=True)
class StagedPartition:
    table: str  # where the staged rows wait for the merge, in words for the UI
    rows: int
    pickup_outside_month: int


@dataclass(frozen=True)
class MergedPartition:
    table: str
    rows: int  # rows of this file now in the table
    replaced_rows: int  # rows of this file the previous load had put there


class PartitionLoad(ABC):
    """One partition's load, holding whatever keeps other loads of it out until it ends."""

    @abstractmethod
    def stage(self, csv: TripCsv) -> StagedPartition:
        """Bulk-load the file into this partition's staging table, with ids and filename."""

    @abstractmethod
    def merge(self) -> MergedPartition:
        """Atomically replace this file's rows in the main table with the staged ones."""


class TaxiWarehouse(dg.ConfigurableResource, ABC):
    """Where trips land. Subclasses are Dagster resources configured from the environment."""

    @property
    @abstractmethod
    def kind(self) -> str:
        """A short name for the UI (`postgres`)."""

    @property
    def single_file(self) -> bool:
        """An embedded file one process writes at a time (no second connection may share it)."""
        return False

    def exclusive_access(self) -> AbstractContextManager[None]:
        """Keep other processes off the warehouse for a while (a dbt run). A server needs
        nothing of the kind; an embedded, single-writer file does."""
        return nullcontext()

    @abstractmethod
    def open_partition(
        self, schema: TripSchema, partition: TaxiPartition
    ) -> AbstractContextManager[PartitionLoad]:
        """Start loading one partition."""

    @abstractmethod
    def qualified_table(self, table: str) -> str:
        """`database.schema.table`, for metadata."""

    @property
    @abstractmethod
    def table_types(self) -> Mapping[ColumnType, str]:
        """This warehouse's type for each logical column type."""

    @abstractmethod
    def query(self, schema: TripSchema, query: str, params: Sequence[object]) -> list[tuple]:
        """Run `query` on the schema's main table (`{table}` in the text, `%s` parameters), with
        the identifier quoted by the warehouse's driver. No table yet: no rows."""

    def column_types(self, schema: TripSchema) -> list[tuple[str, str]]:
        """The main table's columns and their types in this warehouse."""
        text = self.table_types[ColumnType.TEXT]
        return [("unique_row_id", text), ("filename", text)] + [
            (column.name.lower(), self.table_types[column.type]) for column in schema.columns
        ]

    def count_file_rows(self, schema: TripSchema, filename: str) -> int:
        """Rows in the main table loaded from `filename`."""
        rows = self.query(schema, "SELECT count(*) FROM {table} WHERE filename = %s", [filename])
        return rows[0][0] if rows else 0

    def preview_rows(self, schema: TripSchema, filename: str, limit: int) -> list[tuple] | None:
        """Up to `limit` of `filename`'s rows, in `column_types` order (None: no cheap way)."""
        columns = ", ".join(name for name, _ in self.column_types(schema))
        return self.query(
            schema,
            f"SELECT {columns} FROM {{table}} WHERE filename = %s LIMIT %s",
            [filename, limit],
        )

    def count_null_filenames(self, schema: TripSchema) -> int:
        """Rows in the main table without a `filename`."""
        rows = self.query(schema, "SELECT count(*) FROM {table} WHERE filename IS NULL", [])
        return rows[0][0] if rows else 0

    def revenue_by_pickup_location(
        self, schema: TripSchema, filename: str, limit: int
    ) -> list[tuple[str, int, float]]:
        """(PULocationID, trips, sum of total_amount) of `filename`'s rows, top `limit`."""
        return self.query(
            schema,
            "SELECT pulocationid, count(*), sum(total_amount) FROM {table} WHERE filename = %s "
            "GROUP BY 1 ORDER BY 3 DESC NULLS LAST LIMIT %s",
            [filename, limit],
        )

    def ids_in_other_files(
        self, schema: TripSchema, partition: TaxiPartition, limit: int
    ) -> "IdOverlap":
        """Ids of the partition's rows that rows of other files carry too (`id_overlap.py`)."""
        pickup = schema.pickup.lower()
        days = self.query(
            schema,
            outside_pickup_days_sql(pickup),
            [partition.filename, *partition.month_bounds],
        )
        query, params = overlap_sql(pickup, partition, neighbour_months(partition, days), limit)
        rows = self.query(schema, query, params)
        return IdOverlap(ids=rows[0][0] if rows else 0, sample=[(r[1], r[2]) for r in rows])


@dataclass(frozen=True)
class IdOverlap:
    ids: int  # distinct ids of this file also present under another filename
    sample: list[tuple[str, str]]  # (unique_row_id, other filename)
