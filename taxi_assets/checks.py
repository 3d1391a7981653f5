"""Per-partition checks on `{taxi}_tripdata`, run after each load and on demand from the UI.

All four are one step (`taxi_trip_checks`): each step of a run costs Dagster a fixed few tens of
milliseconds, which made three separate checks a quarter of a small month's load. The first two
are blocking (a failure stops what depends on the table); the other two report.
"""

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property

import dagster as dg

from taxi_assets.assets import SHRINK_LIMIT, TRIPS, recorded_loads
from taxi_assets.partitions import TaxiPartition, taxi_month_partitions
from taxi_assets.trip_schema import TRIP_SCHEMAS, TripSchema
from taxi_assets.warehouses.base import TaxiWarehouse
from taxi_assets.warehouses.trip_queries import TripQueries

OVERLAP_SAMPLE = 10


@dataclass
class CheckedPartition:
    """What the checks of one partition share: its table's queries, on one connection, and the
    loads the event log recorded, read once."""

    context: dg.AssetCheckExecutionContext
    partition: TaxiPartition
    trips: TripQueries
    table: str  # the qualified name the loads recorded as `dagster/table_name`

    @property
    def schema(self) -> TripSchema:
        return TRIP_SCHEMAS[self.partition.taxi]

    @cached_property
    def loads(self) -> list[dict[str, int]]:
        """The partition's loads into this table, newest first (`recorded_loads`)."""
        return recorded_loads(self.context.instance, self.partition, self.table)


CheckFunction = Callable[[CheckedPartition], dict]


def rows_match_source(checked: CheckedPartition) -> dict:
    """Whether the table holds as many of the file's rows as its last load counted in the file."""
    expected = checked.loads[0].get("source_rows") if checked.loads else None
    loaded = checked.trips.count_file_rows(checked.schema, checked.partition.filename)
    return dict(
        passed=expected is not None and loaded == expected,
        metadata={"source_rows": expected if expected is not None else -1, "loaded_rows": loaded},
        description=None if expected is not None else "no load of this partition is recorded",
    )


def filename_not_null(checked: CheckedPartition) -> dict:
    """Whether every row of the table names its file."""
    nulls = checked.trips.count_null_filenames(checked.schema)
    return dict(passed=nulls == 0, metadata={"rows_without_filename": nulls})


def ids_in_other_files(checked: CheckedPartition) -> dict:
    """A warning when ids of this file are in the table under another file (a sample of them)."""
    overlap = checked.trips.ids_in_other_files(checked.schema, checked.partition, OVERLAP_SAMPLE)
    sample = "\n".join(f"{row_id}  {other}" for row_id, other in overlap.sample)
    return dict(
        passed=overlap.ids == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "ids_in_other_files": overlap.ids,
            "sample": dg.MetadataValue.md(f"```\n{sample}\n```") if sample else "none",
        },
    )


def rows_against_previous_load(checked: CheckedPartition) -> dict:
    """A warning when this load left far fewer rows than the load before it."""
    rows, previous = [*(load.get("rows_in_table") for load in checked.loads[:2]), None, None][:2]
    return dict(
        passed=rows is None or not previous or rows >= previous * SHRINK_LIMIT,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rows": rows if rows is not None else -1,
            "previous_load_rows": previous if previous is not None else -1,
        },
        description=None if previous is not None else "the first load of this partition",
    )


# name: (the check, blocking, description)
CHECKS: dict[str, tuple[CheckFunction, bool, str]] = {
    "rows_match_source": (
        rows_match_source,
        True,
        "The table holds exactly as many rows of this file as the file has data lines.",
    ),
    "filename_not_null": (filename_not_null, True, "No row of the table lacks a `filename`."),
    "ids_in_other_files": (
        ids_in_other_files,
        False,
        "Report: ids of this file's rows that rows of another file carry too (the Kestra MERGE "
        "would have skipped those rows; here each file keeps all of its rows).",
    ),
    "rows_against_previous_load": (
        rows_against_previous_load,
        False,
        "Report: the rows of this load against the month's load before it (a warning when the "
        "month shrank to less than half: a load does that only with the config allow_shrink).",
    ),
}


def _specs() -> list[dg.AssetCheckSpec]:
    # Dagster still labels checks with partitions a preview; this project relies on them
    # knowingly, so no command need say so.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(
                name,
                asset=TRIPS,
                blocking=blocking,
                description=description,
                partitions_def=taxi_month_partitions,
            )
            for name, (_, blocking, description) in CHECKS.items()
        ]


@dg.multi_asset_check(specs=_specs(), name="taxi_trip_checks", can_subset=True)
def taxi_trip_checks_op(
    context: dg.AssetCheckExecutionContext, warehouse: TaxiWarehouse
) -> Iterator[dg.AssetCheckResult]:
    """The selected checks of one partition's rows, in one reading session of the warehouse."""
    partition = TaxiPartition.from_key(context.partition_key)
    table = warehouse.qualified_table(TRIP_SCHEMAS[partition.taxi].table)
    with warehouse.reading() as trips:
        checked = CheckedPartition(context, partition, trips, table)
        for key in sorted(
            context.selected_asset_check_keys, key=lambda k: list(CHECKS).index(k.name)
        ):
            check = CHECKS[key.name][0]
            yield dg.AssetCheckResult(asset_key=TRIPS, check_name=key.name, **check(checked))


taxi_trip_checks = [taxi_trip_checks_op]
