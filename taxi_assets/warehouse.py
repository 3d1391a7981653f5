"""The small interface every warehouse implements, and what its steps report.

The load algorithm (`assets.py`) is the same for every warehouse: open the partition, stage the
file's rows with `unique_row_id` and `filename`, then merge them into `{taxi}_tripdata`, replacing
whatever that file loaded before in one transaction. Checks ask the questions below.
"""

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import dagster as dg

from taxi_assets.partitions import TaxiPartition
from taxi_assets.source import TripCsv
from taxi_assets.trip_schema import TripSchema


class WarehouseError(Exception):
    """The warehouse refused the load; the message says why, without secrets."""


@dataclass(frozen=True)
class StagedPartition:
    table: str
    rows: int
    exact_duplicate_rows: int
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

    @abstractmethod
    def column_types(self, schema: TripSchema) -> list[tuple[str, str]]:
        """The main table's columns and their types in this warehouse."""

    @abstractmethod
    def count_file_rows(self, schema: TripSchema, filename: str) -> int:
        """Rows in the main table loaded from `filename`."""

    @abstractmethod
    def count_null_filenames(self, schema: TripSchema) -> int:
        """Rows in the main table without a `filename`."""

    @abstractmethod
    def revenue_by_pickup_location(
        self, schema: TripSchema, filename: str, limit: int
    ) -> list[tuple[str, int, float]]:
        """(PULocationID, trips, sum of total_amount) of `filename`'s rows, top `limit`."""

    @abstractmethod
    def ids_in_other_files(self, schema: TripSchema, filename: str, limit: int) -> "IdOverlap":
        """Ids of `filename`'s rows that other files' rows carry too."""


@dataclass(frozen=True)
class IdOverlap:
    ids: int  # distinct ids of this file also present under another filename
    sample: list[tuple[str, str]]  # (unique_row_id, other filename)
