"""The taxi trip assets: source file → staging table → `{taxi}_tripdata`, per colour × month.

One step loads both tables (`can_subset=False`): the staging table only exists to be merged, so
materialising either asset from the UI or the CLI runs the whole load for that partition. That
step is built from the settings (`build_load_taxi_trips`): the warehouse is its kind and pool.
"""

import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path

import dagster as dg
from pydantic import Field

from taxi_assets.dagster_internals import GRPC_INFO_TAG, RETRY_ON_ASSET_OR_OP_FAILURE_TAG
from taxi_assets.errors import SourceError, TaxiError
from taxi_assets.partitions import (
    FIRST_MONTH,
    LAST_RELEASE_MONTH,
    TaxiPartition,
    taxi_month_partitions,
)
from taxi_assets.progress import Progress, Transfer
from taxi_assets.resources import TaxiSource
from taxi_assets.settings import Settings
from taxi_assets.trip_csv import TripCsv
from taxi_assets.trip_schema import TRIP_SCHEMAS, TripSchema
from taxi_assets.warehouses.base import MergedPartition, StagedPartition, TaxiWarehouse

GROUP = "taxi"
SOURCE_FILE = dg.AssetKey("taxi_source_file")
STAGING = dg.AssetKey("taxi_trips_staging")
TRIPS = dg.AssetKey("taxi_trips")
# Where a load (or a dbt build) went, `warehouse.kind`: its materialisations' metadata, its run's
# tag. Every warehouse shares the Dagster home and the asset keys.
WAREHOUSE_METADATA = "warehouse"
WAREHOUSE_TAG = "taxi/warehouse"

taxi_source_file = dg.AssetSpec(
    SOURCE_FILE,
    description=(
        f"A month of NYC TLC trips. **{FIRST_MONTH} … {LAST_RELEASE_MONTH}**: the DataTalksClub "
        "release (`nyc-tlc-data`), `{taxi}_tripdata_{YYYY-MM}.csv.gz` from TAXI_SOURCE_URL, "
        "ids identical to the Kestra flow's. **Later months**: the TLC's own Parquet files, "
        "`{taxi}_tripdata_{YYYY-MM}.parquet` from TAXI_TLC_URL, published a couple of months "
        "after the month ends (until then its runs fail with 'not published' and the schedules "
        "and the sensor skip it). TAXI_SOURCE_KIND=release or tlc reads one kind for every month."
    ),
    group_name=GROUP,
    kinds={"csv", "parquet"},
    partitions_def=taxi_month_partitions,
)


class LoadConfig(dg.Config):
    """The run config of a load (the launchpad's): what it may do beyond the defaults."""

    allow_shrink: bool = Field(
        default=False,
        description=(
            "Replace the month even when the file has less than half the rows of its last load "
            "(an empty file included). Without it such a load fails and the table is unchanged."
        ),
    )


# The load step's retries: Dagster's retry policy is the one retry layer of a load (no HTTP
# retries under it), so the worst case is bounded (docs/operations.md "Retries").
MAX_RETRIES = 3

# A file with fewer rows than this share of the month's last load is taken for a bad copy.
SHRINK_LIMIT = 0.5


def recorded_loads(
    instance: dg.DagsterInstance, partition: TaxiPartition, table: str
) -> list[dict[str, int]]:
    """The numbers the partition's loads into `table` recorded (`rows_in_table` they put in the
    table, `source_rows` their file had), newest first. Loads into another table (another
    warehouse or schema, one Dagster home) do not count."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=TRIPS, asset_partitions=[str(partition.key)]), limit=20
    ).records
    return [
        {
            name: recorded_int(metadata[name])
            for name in ("rows_in_table", "source_rows")
            if metadata.get(name) is not None
        }
        for metadata in (
            record.asset_materialization.metadata
            for record in records
            if record.asset_materialization is not None
        )
        if _text_value(metadata.get("dagster/table_name")) == table
    ]


def last_loaded(
    instance: dg.DagsterInstance, partition: TaxiPartition, table: str, name: str = "rows_in_table"
) -> int | None:
    """The number the partition's last load into `table` recorded (see `recorded_loads`)."""
    loads = recorded_loads(instance, partition, table)
    return loads[0].get(name) if loads else None


def _text_value(value: dg.MetadataValue | None) -> str | None:
    return None if value is None else str(value.value)


def recorded_int(value: dg.MetadataValue) -> int:
    """The number a metadata entry holds (`IntMetadataValue`, or a float or text of one)."""
    number = value.value
    if not isinstance(number, int | float | str):
        raise TypeError(f"not a number: {number!r}")
    return int(number)


def refuse_sharp_shrink(partition: TaxiPartition, rows: int, previous: int | None) -> None:
    """An empty or cut-off file must not silently replace a loaded month."""
    if previous and rows < previous * SHRINK_LIMIT:
        raise SourceError(
            f"{partition.filename}: {rows:,} rows where its last load had {previous:,}: not "
            "replaced (an empty or cut-off file?); to replace the month anyway, run with the "
            "config allow_shrink: true"
        )


def build_load_taxi_trips(settings: Settings) -> dg.AssetsDefinition:
    """The load step, `load_taxi_trips`: one step makes the staging and the trips assets, in the
    settings' warehouse (the assets' kind in the UI, the step's pool) with their retry delay."""
    kinds = {settings.warehouse}
    return dg.multi_asset(
        name="load_taxi_trips",
        specs=[
            dg.AssetSpec(
                STAGING,
                deps=[SOURCE_FILE],
                description=(
                    "The file's rows bulk-loaded (COPY) into "
                    "`{taxi}_tripdata_staging_{YYYY_MM}`, with the Kestra flow's md5 "
                    "`unique_row_id` and the `filename`. Dropped once merged."
                ),
                group_name=GROUP,
                kinds=kinds,
                partitions_def=taxi_month_partitions,
            ),
            dg.AssetSpec(
                TRIPS,
                deps=[STAGING],
                description=(
                    "`green_tripdata` / `yellow_tripdata`: every row of every loaded file, once "
                    "per source row. Loading a month replaces that file's rows in one "
                    "transaction."
                ),
                group_name=GROUP,
                kinds=kinds,
                partitions_def=taxi_month_partitions,
            ),
        ],
        can_subset=False,
        # Loads into one warehouse share a pool (limit: dagster.yaml or the UI): a throttle for
        # the database, not what keeps the data right.
        pool=settings.pool,
        # What is retried is what the error's class says can pass (`errors.py`: a dropped
        # connection, a timeout), not a 404, a bad header or a malformed row.
        retry_policy=dg.RetryPolicy(
            max_retries=MAX_RETRIES,
            delay=settings.retry_delay_seconds,
            backoff=dg.Backoff.EXPONENTIAL,
            jitter=dg.Jitter.PLUS_MINUS,
        ),
    )(load_partition)


def load_partition(
    context: dg.AssetExecutionContext,
    config: LoadConfig,
    source: TaxiSource,
    warehouse: TaxiWarehouse,
) -> Iterator[dg.MaterializeResult]:
    """Download one partition's file, stage its rows, merge them into the trip table."""
    partition = _run_partition(context)
    schema = TRIP_SCHEMAS[partition.taxi]
    # Kestra's `set_label` task: the run says which file it loads, whoever launched it.
    context.instance.add_run_tags(
        context.run.run_id,
        {"taxi": partition.taxi, "file": partition.filename, WAREHOUSE_TAG: warehouse.kind},
    )
    launched_by = _launched_by(context.run.tags)
    progress = Progress(context.log.info, partition.filename)
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            download_dir = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="taxi_assets-", dir=source.download_dir)
            )
            transfer = Transfer()
            with progress.phase("download", transfer.describe):
                fetched = source.fetch(partition, Path(download_dir), transfer)
            if source.reads_parquet(partition):
                with progress.phase("convert"):  # the TLC's Parquet, as the release's CSV
                    path = source.as_release_csv(fetched, partition, Path(download_dir))
            else:
                path = fetched.path
            csv = stack.enter_context(
                TripCsv(path, schema, source.file_name(partition), source.max_rows)
            )
            load = stack.enter_context(warehouse.open_partition(schema, partition))
            with progress.phase("stage", csv.describe_progress):
                staged = load.stage(csv)
            yield _staging_result(
                warehouse, staged, fetched.url, fetched.bytes, csv.rows, started, launched_by
            )
            if not config.allow_shrink:
                table = warehouse.qualified_table(schema.table)
                previous = last_loaded(context.instance, partition, table)
                refuse_sharp_shrink(partition, staged.rows, previous)
            merge_started = time.monotonic()
            with progress.phase("merge"):
                merged = load.merge()
    except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError):
        raise _interrupted(context, partition) from None
    except TaxiError as error:
        raise dg.Failure(description=str(error), allow_retries=error.retryable) from error
    context.log.info(
        f"{partition.filename}: {merged.rows:,} rows in {merged.table} "
        f"(replaced {merged.replaced_rows:,}) in {time.monotonic() - started:.1f}s"
    )
    yield _trips_result(
        warehouse, schema, partition, merged, csv.rows, started, merge_started, launched_by
    )


def _interrupted(context: dg.AssetExecutionContext, partition: TaxiPartition) -> dg.Failure:
    """The failure of an interrupted load (Ctrl-C, a SIGTERM, the UI's Terminate), never retried
    as a step: Dagster's retry policy would take the interrupt for a failure and start the step
    again (dagster-io/dagster#15026). A run that a server started and that was not terminated
    from the UI was interrupted by its server going away (`make dev` closed): it is retried as a
    run once the daemon is back (`run_retries`), so that its backfill completes."""
    run = context.instance.get_run_by_id(context.run.run_id)
    server_gone = GRPC_INFO_TAG in context.run.tags and (
        run is None or run.status != dg.DagsterRunStatus.CANCELING
    )
    if server_gone:
        context.instance.add_run_tags(
            context.run.run_id, {RETRY_ON_ASSET_OR_OP_FAILURE_TAG: "true"}
        )
    then = "retried when the daemon is back" if server_gone else "not retried"
    return dg.Failure(
        description=(
            f"{partition.filename}: interrupted (Ctrl-C, SIGTERM or Terminate); what was not "
            f"merged yet was rolled back; {then}"
        ),
        allow_retries=False,
    )


def _run_partition(context: dg.AssetExecutionContext) -> TaxiPartition:
    """The run's partition, checked before anything is read or written: a key that is not a
    partition (a run's tags can carry any) fails the step at once, not retried."""
    try:
        return TaxiPartition.of_run(str(context.partition_key))
    except ValueError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error


def _launched_by(tags: Mapping[str, str]) -> str:
    """What started the run, as the Kestra `backfill:true` label told backfills apart."""
    if "dagster/backfill" in tags:
        return f"backfill {tags['dagster/backfill']}"
    if "dagster/schedule_name" in tags:
        return f"schedule {tags['dagster/schedule_name']}"
    if "dagster/sensor_name" in tags:
        return f"sensor {tags['dagster/sensor_name']}"
    return "manual"


def _staging_result(
    warehouse: TaxiWarehouse,
    staged: StagedPartition,
    url: str,
    size: int,
    source_rows: int,
    started: float,
    launched_by: str,
) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        asset_key=STAGING,
        metadata={
            "launched_by": launched_by,
            WAREHOUSE_METADATA: warehouse.kind,
            "source_url": dg.MetadataValue.url(url),
            "source_bytes": size,
            "source_rows": source_rows,
            "pickup_outside_month": staged.pickup_outside_month,
            "stage_seconds": round(time.monotonic() - started, 3),
            # Not `dagster/table_name`: the table lives only until this run's merge.
            "staged_in": staged.table,
            "dagster/partition_row_count": staged.rows,
        },
    )


def _trips_result(
    warehouse: TaxiWarehouse,
    schema: TripSchema,
    partition: TaxiPartition,
    merged: MergedPartition,
    source_rows: int,
    started: float,
    merge_started: float,
    launched_by: str,
) -> dg.MaterializeResult:
    columns = [dg.TableColumn(name, type_) for name, type_ in warehouse.column_types(schema)]
    return dg.MaterializeResult(
        asset_key=TRIPS,
        metadata={
            "launched_by": launched_by,
            WAREHOUSE_METADATA: warehouse.kind,
            "source_rows": source_rows,
            "rows_in_table": merged.rows,
            "replaced_rows": merged.replaced_rows,
            "merge_seconds": round(time.monotonic() - merge_started, 3),
            "duration_seconds": round(time.monotonic() - started, 3),
            "dagster/table_name": warehouse.qualified_table(schema.table),
            "dagster/partition_row_count": merged.rows,
            "dagster/column_schema": dg.TableSchema(columns=columns),
            **_preview(warehouse, schema, partition.filename),
        },
    )


PREVIEW_ROWS = 5


def _preview(
    warehouse: TaxiWarehouse, schema: TripSchema, filename: str
) -> dict[str, dg.TableMetadataValue]:
    """`preview`: a few of the file's rows as the table holds them, for the UI (where the
    warehouse can read them cheaply). The load has committed by now: a preview that cannot be
    read is left out, never a reason to fail (and retry) the load."""
    try:
        with warehouse.reading() as trips:
            rows = trips.preview_rows(schema, filename, PREVIEW_ROWS)
    except Exception as error:  # a cosmetic extra: any failure only costs the preview
        dg.get_dagster_logger().warning(f"{filename}: no preview ({type(error).__name__})")
        return {}
    if rows is None:
        return {}
    names = [name for name, _ in warehouse.column_types(schema)]
    columns = [dg.TableColumn(name, "string") for name in names]
    records = [
        dg.TableRecord({name: _text(value) for name, value in zip(names, row, strict=True)})
        for row in rows
    ]
    return {"preview": dg.MetadataValue.table(records, schema=dg.TableSchema(columns=columns))}


def _text(value: object) -> str | None:
    return None if value is None else str(value)
