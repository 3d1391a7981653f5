"""Per-partition checks on `{taxi}_tripdata`, run after each load and on demand from the UI."""

import warnings
from collections.abc import Callable

import dagster as dg

from taxi_assets.assets import TRIPS
from taxi_assets.partitions import TaxiPartition, taxi_month_partitions
from taxi_assets.trip_schema import TRIP_SCHEMAS
from taxi_assets.warehouse import TaxiWarehouse

OVERLAP_SAMPLE = 10


def _partition_check(description: str, blocking: bool = True) -> Callable:
    """`dg.asset_check` on one partition of `taxi_trips`. Dagster still labels checks with
    partitions a preview; this project relies on them knowingly, so no command need say so."""

    def decorate(check: Callable) -> dg.AssetChecksDefinition:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.PreviewWarning)
            return dg.asset_check(
                asset=TRIPS,
                partitions_def=taxi_month_partitions,
                blocking=blocking,
                description=description,
            )(check)

    return decorate


def _partition(context: dg.AssetCheckExecutionContext) -> TaxiPartition:
    return TaxiPartition.from_key(context.partition_key)


def _source_rows(context: dg.AssetCheckExecutionContext, partition: TaxiPartition) -> int | None:
    """The data lines the last load of this partition counted in its file."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=TRIPS, asset_partitions=[str(partition.key)]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get("source_rows")
    return None if value is None else int(value.value)


@_partition_check("The table holds exactly as many rows of this file as the file has data lines.")
def rows_match_source(
    context: dg.AssetCheckExecutionContext, warehouse: TaxiWarehouse
) -> dg.AssetCheckResult:
    partition = _partition(context)
    expected = _source_rows(context, partition)
    loaded = warehouse.count_file_rows(TRIP_SCHEMAS[partition.taxi], partition.filename)
    return dg.AssetCheckResult(
        passed=expected is not None and loaded == expected,
        metadata={"source_rows": expected if expected is not None else -1, "loaded_rows": loaded},
        description=None if expected is not None else "no load of this partition is recorded",
    )


@_partition_check("No row of the table lacks a `filename`.")
def filename_not_null(
    context: dg.AssetCheckExecutionContext, warehouse: TaxiWarehouse
) -> dg.AssetCheckResult:
    schema = TRIP_SCHEMAS[_partition(context).taxi]
    nulls = warehouse.count_null_filenames(schema)
    return dg.AssetCheckResult(passed=nulls == 0, metadata={"rows_without_filename": nulls})


@_partition_check(
    blocking=False,
    description=(
        "Report: ids of this file's rows that rows of another file carry too (the Kestra MERGE "
        "would have skipped those rows; here each file keeps all of its rows)."
    ),
)
def ids_in_other_files(
    context: dg.AssetCheckExecutionContext, warehouse: TaxiWarehouse
) -> dg.AssetCheckResult:
    partition = _partition(context)
    overlap = warehouse.ids_in_other_files(TRIP_SCHEMAS[partition.taxi], partition, OVERLAP_SAMPLE)
    sample = "\n".join(f"{row_id}  {other}" for row_id, other in overlap.sample)
    return dg.AssetCheckResult(
        passed=overlap.ids == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "ids_in_other_files": overlap.ids,
            "sample": dg.MetadataValue.md(f"```\n{sample}\n```") if sample else "none",
        },
    )


taxi_trip_checks = [rows_match_source, filename_not_null, ids_in_other_files]
