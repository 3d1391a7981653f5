"""The dbt project (`dbt_project/`) as Dagster assets downstream of `taxi_trips`.

Both dbt sources (`green_tripdata`, `yellow_tripdata`) map to the one `taxi_trips` asset that
loads them. `dbt build` runs on all rows; dbt tests become asset checks. The manifest Dagster
reads is made by `dbt parse` whenever it is missing or older than a project file, so a fresh
checkout needs no manual step and an edited model is picked up on the next load.
"""

import os
import shutil
import sys
from collections.abc import Iterator, Mapping
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

from taxi_assets.assets import WAREHOUSE_KIND
from taxi_assets.duckdb_warehouse import DEFAULT_PATH, resolve_path
from taxi_assets.warehouse import TaxiWarehouse

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
DBT_GROUP = "taxi_dbt"

# dagster-dbt runs `dbt` from PATH (also when it prepares the manifest): when this environment
# is not activated (`.venv/bin/dagster dev`, `.venv/bin/pytest`), make its own dbt findable.
_ENV_BIN = Path(sys.executable).parent
if shutil.which("dbt") is None and (_ENV_BIN / "dbt").exists():
    os.environ["PATH"] = os.pathsep.join([str(_ENV_BIN), os.environ.get("PATH", "")])

# dbt reads the warehouse settings from the environment, as the Dagster resource does; give it
# the DuckDB file as an absolute path, so both open the same file from any working directory.
os.environ["TAXI_DUCKDB_PATH"] = str(
    resolve_path(os.environ.get("TAXI_DUCKDB_PATH", str(DEFAULT_PATH)))
)

# One manifest per target (`target/duckdb/manifest.json`, …): a manifest parsed for one warehouse
# names that warehouse's database, so switching TAXI_WAREHOUSE must not reuse another's.
dbt_project = DbtProject(
    project_dir=DBT_PROJECT_DIR,
    profiles_dir=DBT_PROJECT_DIR,
    target=WAREHOUSE_KIND,
    target_path=Path("target") / WAREHOUSE_KIND,
)


def manifest_is_stale() -> bool:
    """No manifest yet, or a project file changed since `dbt parse` wrote it."""
    manifest = dbt_project.manifest_path
    if not manifest.exists():
        return True
    sources = (
        path
        for path in DBT_PROJECT_DIR.rglob("*")
        if path.is_file() and not {"target", "logs", "dbt_packages"} & set(path.parts)
    )
    return max(path.stat().st_mtime for path in sources) > manifest.stat().st_mtime


# Instead of `prepare_if_dev()`, which parses again in every run process of `dagster dev`.
if manifest_is_stale():
    dbt_project.preparer.prepare(dbt_project)

# After trip loads, rebuild once nothing upstream is still loading. Like `eager()`, but an
# unpartitioned model must not wait for the many months nobody has loaded.
AFTER_TRIP_LOADS = (
    dg.AutomationCondition.eager()
    .without(~dg.AutomationCondition.any_deps_missing())
    .with_label("after trip loads")
)


class TaxiDbtTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return DBT_GROUP

    def get_automation_condition(
        self, dbt_resource_props: Mapping[str, Any]
    ) -> dg.AutomationCondition | None:
        return AFTER_TRIP_LOADS


translator = TaxiDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_duplicate_source_asset_keys=True)
)


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    pool=f"taxi_{WAREHOUSE_KIND}",
)
def taxi_dbt_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: TaxiWarehouse
) -> Iterator:
    with warehouse.exclusive_access():  # DuckDB: no load may write while dbt builds
        events = dbt.cli(["build"], context=context).stream()
        # Row counts come from a second, in-process connection: not for a single-file warehouse.
        yield from events if warehouse.single_file else events.fetch_row_counts()


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project)


taxi_dbt_job = dg.define_asset_job(
    name="taxi_dbt_job",
    description="Build the dbt models and run their tests (`dbt build`) on the loaded trips.",
    selection=dg.AssetSelection.groups(DBT_GROUP),
)

dbt_automation_sensor = dg.AutomationConditionSensorDefinition(
    "taxi_dbt_after_loads",
    target=dg.AssetSelection.groups(DBT_GROUP),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Rebuilds the dbt models after trip loads (their automation condition).",
)
