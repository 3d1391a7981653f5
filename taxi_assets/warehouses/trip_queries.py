"""The questions asked of a trip table after a load: by the checks, the preview, the summary.

A warehouse answers them through `TaxiWarehouse.reading()`, on one connection for the whole block
where it has connections (the four checks of a partition share one).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import TripSchema
from taxi_assets.warehouses.id_overlap import neighbour_months, outside_pickup_days_sql, overlap_sql

# Runs a query on the schema's main table (`{table}` in the text, `%s` parameters); no table yet:
# no rows.
Query = Callable[[TripSchema, str, Sequence[object]], list[tuple]]


@dataclass(frozen=True)
class IdOverlap:
    ids: int  # distinct ids of this file also present under another filename
    sample: list[tuple[str, str]]  # (unique_row_id, other filename)


@dataclass(frozen=True)
class TripQueries:
    query: Query
    # The main table's column names, in order (`TaxiWarehouse.column_types`).
    column_names: Callable[[TripSchema], list[str]]
    # Whether rows can be read cheaply (BigQuery bills a SELECT of every column as a scan of the
    # whole table, whatever its LIMIT).
    previews: bool = True

    def count_file_rows(self, schema: TripSchema, filename: str) -> int:
        """Rows in the main table loaded from `filename`."""
        rows = self.query(schema, "SELECT count(*) FROM {table} WHERE filename = %s", [filename])
        return rows[0][0] if rows else 0

    def preview_rows(self, schema: TripSchema, filename: str, limit: int) -> list[tuple] | None:
        """Up to `limit` of `filename`'s rows, in `column_names` order (None: no cheap way)."""
        if not self.previews:
            return None
        columns = ", ".join(self.column_names(schema))
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
    ) -> IdOverlap:
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
