"""The small interface every warehouse implements, and what its steps report.

The load algorithm (`assets.py`) is the same for every warehouse: open the partition, stage the
file's rows with `unique_row_id` and `filename`, then merge them into `{taxi}_tripdata`, replacing
whatever that file loaded before in one transaction. Checks ask the questions below.
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import dagster as dg

from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_csv import TripCsv
from taxi_assets.trip_schema import ColumnType, TripSchema
from taxi_assets.warehouses.trip_queries import TripQueries


def staging_table_name(schema: TripSchema, partition: TaxiPartition) -> str:
    """One staging table per partition (`green_tripdata_staging_2019_01`), so partitions of a
    colour load side by side."""
    return f"{schema.table}_staging_{partition.month.replace('-', '_')}"


def staging_table_label(qualified_name: str) -> str:
    """`StagedPartition.table` of a staging table built aside and dropped by the merge."""
    return f"{qualified_name} (this run's staging table, merged and then gone)"


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
    @abstractmethod
    def single_file(self) -> bool:
        """Whether it is an embedded file one process writes at a time (no second connection may
        share it)."""

    @abstractmethod
    def exclusive_access(self) -> AbstractContextManager[None]:
        """Keep other processes off the warehouse for a while (a dbt run).

        A server needs nothing of the kind (`nullcontext()`); an embedded, single-writer file
        does."""

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
    def reading(self) -> AbstractContextManager[TripQueries]:
        """The questions of `trip_queries.py`, answered on one connection for the whole block.

        Each query runs on the schema's main table (`{table}` in the text, `%s` parameters),
        the identifier quoted by the warehouse's driver; no table yet: no rows."""

    def query(self, schema: TripSchema, query: str, params: Sequence[object]) -> list[tuple]:
        """One query, on a connection of its own (see `reading`)."""
        with self.reading() as trips:
            return trips.query(schema, query, params)

    def column_names(self, schema: TripSchema) -> list[str]:
        return [name for name, _ in self.column_types(schema)]

    def column_types(self, schema: TripSchema) -> list[tuple[str, str]]:
        """The main table's columns and their types in this warehouse."""
        text = self.table_types[ColumnType.TEXT]
        return [("unique_row_id", text), ("filename", text)] + [
            (column.name.lower(), self.table_types[column.type]) for column in schema.table_columns
        ]
