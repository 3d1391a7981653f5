"""The dbt project (`dbt_project/`) as Dagster assets downstream of `taxi_trips`.

Both dbt sources (`green_tripdata`, `yellow_tripdata`) map to the one `taxi_trips` asset that
loads them. Two kinds of dbt assets:
- `taxi_dbt_months`: the facts (`fact_trips`, `dm_monthly_zone_revenue`, tag `monthly`),
  partitioned by pickup month. A run rebuilds its months only (dbt vars `from_month`, `to_month`;
  `dbt_project/macros/trip_months.sql`), and a backfill of many months is one dbt run.
- `taxi_dbt_models`: the rest (zones, staging views, counts of dropped rows), unpartitioned.
dbt tests become asset checks. After a file loads, the sensor `taxi_dbt_after_loads` rebuilds
the months that file holds trips of, on the warehouse the file went to (every materialisation
records its warehouse): its own month, and the one before it if that one's facts were built.

All of it is built for the settings' warehouse (`build_taxi_dbt`: its dbt target, manifest and
pool). The manifest Dagster reads is made by `dbt parse` whenever it is missing, older than a
project file, or parsed for other values of what dbt reads (the database, the schemas), so a
fresh checkout or image needs no manual step and an edited model is picked up on the next load.
dbt reads the warehouse's settings from the environment itself (`profiles.yml`).
"""

import hashlib
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from taxi_assets.assets import TRIPS, WAREHOUSE_METADATA, WAREHOUSE_TAG, recorded_int
from taxi_assets.dagster_internals import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    run_with_concurrent_update_guard,
)
from taxi_assets.jobs import taxi_trips_job
from taxi_assets.partitions import TaxiPartition, month_dimension
from taxi_assets.settings import Settings
from taxi_assets.warehouses.base import TaxiWarehouse

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
DBT_GROUP = "taxi_dbt"
# This environment's own dbt, also when the environment is not activated (`.venv/bin/dagster
# dev`, `.venv/bin/pytest`: its bin folder is not on PATH); else whichever dbt PATH finds.
_ENV_DBT = Path(sys.executable).parent / "dbt"
DBT_EXECUTABLE = str(_ENV_DBT) if _ENV_DBT.exists() else "dbt"


def dbt_resource(project: DbtProject, target: str | None = None) -> DbtCliResource:
    """The dbt CLI on `project` (its target, or `target`), run with this environment's dbt."""
    return DbtCliResource(project_dir=project, target=target, dbt_executable=DBT_EXECUTABLE)


def prepared_dbt_project(warehouse: str, environ: Mapping[str, str] | None = None) -> DbtProject:
    """The dbt project for the warehouse's target, with its manifest parsed if stale.

    A manifest names the databases and schemas its settings gave (`postgres.taxi_models.…`);
    Dagster reads it to find the relations it counts the rows of. So there is one manifest per
    warehouse and per value of what dbt reads from the environment (`manifest_dir`): an image
    built without the runtime's settings, or a checkout that switched PGDATABASE, never reuses
    another's. Instead of `prepare_if_dev()`, which parses again in every run process of
    `dagster dev`, it parses only when a project file changed since (as its preparer does: one
    process parses, the others wait for its manifest)."""
    project = DbtProject(
        project_dir=DBT_PROJECT_DIR,
        profiles_dir=DBT_PROJECT_DIR,
        target=warehouse,
        target_path=manifest_dir(warehouse, os.environ if environ is None else environ),
    )
    if manifest_is_stale(project):
        run_with_concurrent_update_guard(project.manifest_path, _parse, project=project)
    return project


# dbt reads these itself when it parses; a secret's value must not reach a folder name.
_ENV_VAR = re.compile(r"env_var\(\s*['\"](\w+)['\"]")
_SECRET = re.compile(r"PASSWORD|TOKEN|SECRET|CREDENTIALS")


def dbt_variables() -> list[str]:
    """The environment variables the dbt project reads (`env_var('NAME')`), secrets left out."""
    names = {
        name
        for path in project_files()
        if path.suffix in (".yml", ".sql")
        for name in _ENV_VAR.findall(path.read_text())
    }
    return sorted(name for name in names if not _SECRET.search(name))


def manifest_dir(warehouse: str, environ: Mapping[str, str]) -> Path:
    """`target/<warehouse>-<digest of what dbt reads>`, relative to the dbt project."""
    values = {name: environ.get(name, "") for name in dbt_variables()}
    digest = hashlib.sha256(json.dumps([warehouse, values], sort_keys=True).encode())
    return Path("target") / f"{warehouse}-{digest.hexdigest()[:12]}"


def _parse(project: DbtProject) -> None:
    dbt_resource(project).cli(["parse", "--quiet"], target_path=project.target_path).wait()


def project_files() -> Iterator[Path]:
    """The dbt project's own files (not what dbt writes: target/, logs/, packages)."""
    return (
        path
        for path in DBT_PROJECT_DIR.rglob("*")
        if path.is_file() and not {"target", "logs", "dbt_packages"} & set(path.parts)
    )


def manifest_is_stale(project: DbtProject) -> bool:
    """No manifest yet, or a project file changed since `dbt parse` wrote it."""
    manifest = project.manifest_path
    if not manifest.exists():
        return True
    return max(path.stat().st_mtime for path in project_files()) > manifest.stat().st_mtime


MONTHLY = "tag:monthly"


class TaxiDbtTranslator(DagsterDbtTranslator):
    """Puts every dbt model in the dbt group."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return DBT_GROUP


translator = TaxiDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_duplicate_source_asset_keys=True)
)


def _build(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    warehouse: TaxiWarehouse,
    args: list[str],
) -> Iterator:
    context.instance.add_run_tags(context.run.run_id, {WAREHOUSE_TAG: warehouse.kind})
    recorded = {WAREHOUSE_METADATA: warehouse.kind, LOADS_SEEN: last_trip_load(context.instance)}
    try:
        with warehouse.exclusive_access():  # DuckDB: no load may write while dbt builds
            events = dbt.cli(["build", *args], context=context).stream()
            # Row counts come from a second, in-process connection: not for a single-file
            # warehouse.
            built = events if warehouse.single_file else events.fetch_row_counts()
            yield from (_with_metadata(event, recorded) for event in built)
    except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError):
        # As for a load: Ctrl-C, a SIGTERM or the UI's Terminate end the run in one line.
        raise dg.Failure(
            description="dbt build interrupted (Ctrl-C, SIGTERM or Terminate); not retried",
            allow_retries=False,
        ) from None


# A dbt materialisation's metadata: the storage id of the last trip load recorded before its
# dbt build began; the loads up to it are in what it built.
LOADS_SEEN = "trip_loads_seen"


def last_trip_load(instance: dg.DagsterInstance) -> int:
    """The storage id of the latest trip load of any warehouse (0: none yet)."""
    records = instance.fetch_materializations(TRIPS, limit=1).records
    return records[0].storage_id if records else 0


def _with_metadata(event: Any, metadata: Mapping[str, Any]) -> Any:
    """A dbt materialisation with `metadata` added (other events as they are)."""
    if isinstance(event, dg.Output | dg.AssetMaterialization):
        return event.with_metadata({**event.metadata, **metadata})
    return event


@dataclass(frozen=True)
class TaxiDbt:
    """The dbt project as Dagster definitions, for one warehouse."""

    project: DbtProject
    models: dg.AssetsDefinition  # `taxi_dbt_models`: the unpartitioned models
    months: dg.AssetsDefinition  # `taxi_dbt_months`: the facts, by pickup month
    after_loads: dg.SensorDefinition  # `taxi_dbt_after_loads`

    def resource(self, target: str | None = None) -> DbtCliResource:
        """The dbt CLI resource on `target` (default: the project's)."""
        return dbt_resource(self.project, target)


def build_taxi_dbt(settings: Settings) -> TaxiDbt:
    """The dbt assets on the settings' warehouse (its target and manifest, its pool), and the
    sensor that rebuilds the facts after loads."""
    project = prepared_dbt_project(settings.warehouse)
    # What both dbt asset definitions share: the project, its manifest, and the warehouse's pool.
    shared = {
        "manifest": project.manifest_path,
        "project": project,
        "dagster_dbt_translator": translator,
        "pool": settings.pool,
    }

    @dbt_assets(**shared, exclude=MONTHLY)
    def taxi_dbt_models(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: TaxiWarehouse
    ) -> Iterator:
        yield from _build(context, dbt, warehouse, [])

    @dbt_assets(**shared, select=MONTHLY, partitions_def=month_dimension)
    def taxi_dbt_months(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: TaxiWarehouse
    ) -> Iterator:
        yield from _build(context, dbt, warehouse, ["--vars", json.dumps(months_built(context))])

    after_loads = build_dbt_after_loads(taxi_dbt_models, taxi_dbt_months, settings.warehouse)
    return TaxiDbt(project, taxi_dbt_models, taxi_dbt_months, after_loads)


def months_built(context: dg.AssetExecutionContext) -> dict[str, str]:
    """The run's months as dbt vars: the first, and the one after the last."""
    window = context.partition_time_window
    return {"from_month": f"{window.start:%Y-%m}", "to_month": f"{window.end:%Y-%m}"}


taxi_dbt_job = dg.define_asset_job(
    name="taxi_dbt_job",
    description=(
        "Build the dbt models and run their tests (`dbt build`): the facts of the run's months "
        "(a partition or a range), and the unpartitioned models."
    ),
    selection=dg.AssetSelection.groups(DBT_GROUP),
)


def month_ranges(months: set[str], keys: Sequence[str]) -> list[tuple[str, str]]:
    """Consecutive months (in partition order, `keys`) as (first, last) ranges."""
    ranges: list[tuple[str, str]] = []
    for index, month in enumerate(keys):
        if month not in months:
            continue
        if ranges and keys[index - 1] == ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], month)
        else:
            ranges.append((month, month))
    return ranges


def _rebuild_request(first: str, last: str, keys: list[dg.AssetKey], after: int) -> dg.RunRequest:
    if first == last:
        return dg.RunRequest(run_key=f"{first}@{after}", partition_key=first, asset_selection=keys)
    return dg.RunRequest(
        run_key=f"{first}..{last}@{after}",
        asset_selection=keys,
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
    )


UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def loads_under_way(instance: dg.DagsterInstance) -> int:
    """Runs that load trips and have not ended (a backfill's queue included): the facts wait for
    them, so a backfill gives one rebuild at its end, and on DuckDB dbt does not queue between
    loads for the file."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED), limit=1000)
    return sum(
        TRIPS in (run.asset_selection or ()) or run.job_name == taxi_trips_job.name for run in runs
    )


def build_dbt_after_loads(
    models: dg.AssetsDefinition, facts: dg.AssetsDefinition, warehouse: str
) -> dg.SensorDefinition:
    """`taxi_dbt_after_loads` for these two dbt asset definitions on `warehouse`
    (`build_taxi_dbt`)."""

    @dg.sensor(
        name="taxi_dbt_after_loads",
        job=taxi_dbt_job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Once no trip load is under way, rebuilds on {warehouse} the facts of the months "
            "that the files loaded into it since hold trips of (a file's month, and the one "
            "before it if its facts were built), unless they were built after that load; one "
            "run per stretch of consecutive months. The unpartitioned models are built too "
            "while any is missing."
        ),
    )
    def dbt_after_loads(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        return _after_loads(context, models, facts, warehouse)

    return dbt_after_loads


def recorded_warehouse(record: dg.EventLogRecord) -> str | None:
    """The warehouse a materialisation went to, as its metadata says (None: not recorded)."""
    materialization = record.asset_materialization
    value = materialization and materialization.metadata.get(WAREHOUSE_METADATA)
    return None if value is None else str(value.value)


def newest_materializations(
    instance: dg.DagsterInstance, records: dg.AssetKey | dg.AssetRecordsFilter, page: int = 1000
) -> Iterator[dg.EventLogRecord]:
    """The materialisations `records` names, newest first, fetched a page at a time."""
    cursor = None
    while True:
        result = instance.fetch_materializations(records, limit=page, cursor=cursor)
        yield from result.records
        if not result.has_more:
            return
        cursor = result.cursor


def loads_seen(
    instance: dg.DagsterInstance, key: dg.AssetKey, months: set[str], warehouse: str
) -> dict[str, int]:
    """What the latest build of each month's `key` on `warehouse` saw (`LOADS_SEEN`); months
    never built there are left out."""
    seen: dict[str, int] = {}
    if not months:
        return seen
    records = dg.AssetRecordsFilter(asset_key=key, asset_partitions=sorted(months))
    for record in newest_materializations(instance, records):
        month, materialization = record.partition_key, record.asset_materialization
        if month is None or materialization is None:
            continue
        if month not in seen and recorded_warehouse(record) == warehouse:
            seen[month] = recorded_int(materialization.metadata[LOADS_SEEN])
            if seen.keys() >= months:
                break
    return seen


def facts_seen(
    instance: dg.DagsterInstance, facts: dg.AssetsDefinition, months: set[str], warehouse: str
) -> dict[str, int]:
    """The loads each month's facts on `warehouse` were last built with (`LOADS_SEEN`): the
    least of its facts' (a month one of whose facts was never built there is left out)."""
    seen = [loads_seen(instance, key, months, warehouse) for key in facts.keys]
    every_fact_built = set(months).intersection(*seen)
    return {month: min(fact[month] for fact in seen) for month in every_fact_built}


def never_built(instance: dg.DagsterInstance, models: dg.AssetsDefinition, warehouse: str) -> bool:
    """Whether any unpartitioned model was never built on `warehouse`."""
    return any(not built_on(instance, key, warehouse) for key in models.keys)


def built_on(instance: dg.DagsterInstance, key: dg.AssetKey, warehouse: str) -> bool:
    """Whether `key` has a materialisation on `warehouse`."""
    records = newest_materializations(instance, key, page=100)
    return any(recorded_warehouse(record) == warehouse for record in records)


def stale_months(
    instance: dg.DagsterInstance,
    facts: dg.AssetsDefinition,
    loads: list[dg.EventLogRecord],
    warehouse: str,
) -> set[str]:
    """The months whose facts on `warehouse` miss a file of `loads` (all into it): each file's
    own month, and the month before it (trips that began on the evening before) if its facts
    were built; either one only if its last build began before that load."""
    keys = month_dimension.get_partition_keys()
    loaded = {
        load.storage_id: TaxiPartition.from_key(load.partition_key).month
        for load in loads
        if load.partition_key is not None
    }
    own = {load: month for load, month in loaded.items() if month in keys}
    before = {load: keys[keys.index(month) - 1] for load, month in own.items() if keys.index(month)}
    seen = facts_seen(instance, facts, {*own.values(), *before.values()}, warehouse)
    return {month for load, month in own.items() if seen.get(month, 0) < load} | {
        month for load, month in before.items() if month in seen and seen[month] < load
    }


def _after_loads(
    context: dg.SensorEvaluationContext,
    models: dg.AssetsDefinition,
    facts: dg.AssetsDefinition,
    warehouse: str,
) -> dg.SensorResult | dg.SkipReason:
    loading = loads_under_way(context.instance)
    if loading:
        return dg.SkipReason(f"waiting for {loading} trip load(s) to end")
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=TRIPS, after_storage_id=int(context.cursor or 0)),
        limit=1000,
        ascending=True,
    ).records
    if not records:
        return dg.SkipReason("no trip load since the last evaluation")
    cursor = str(records[-1].storage_id)
    loads = [
        record
        for record in records
        if record.partition_key and recorded_warehouse(record) == warehouse
    ]
    months = stale_months(context.instance, facts, loads, warehouse)
    if not months:
        return dg.SensorResult(
            skip_reason=f"the facts on {warehouse} are up to date with its loads", cursor=cursor
        )
    setup = never_built(context.instance, models, warehouse)
    selection = [*facts.keys, *(models.keys if setup else [])]
    keys = month_dimension.get_partition_keys()
    return dg.SensorResult(
        run_requests=[
            _rebuild_request(first, last, selection, records[-1].storage_id)
            for first, last in month_ranges(months, keys)
        ],
        cursor=cursor,
    )
