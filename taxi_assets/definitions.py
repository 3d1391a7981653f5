"""The load code location, `taxi_assets`: the trip assets, their checks, job, schedules and sensor
(`dagster asset materialize -m taxi_assets.definitions`, `dg launch`, and `make dev` beside the
dbt location, `dbt_definitions.py`), and the seeds' getting-started flow (`getting_started.py`)."""

import dagster as dg

from taxi_assets.assets import load_taxi_trips, taxi_source_file
from taxi_assets.checks import taxi_trip_checks
from taxi_assets.getting_started import getting_started_assets, getting_started_job
from taxi_assets.jobs import taxi_trips_job
from taxi_assets.resources import (
    duckdb_from_env,
    products_source_from_env,
    source_from_env,
    warehouse_from_env,
)
from taxi_assets.schedules import taxi_schedules
from taxi_assets.sensors import taxi_new_months

WAREHOUSE = warehouse_from_env()


def _warehouse_jobs() -> list[dg.JobDefinition]:
    """The setup job exists for the cloud warehouse only (and only it imports Google's code)."""
    if WAREHOUSE.kind != "bigquery":
        return []
    from taxi_assets.warehouses.bigquery import gcp_setup_job

    return [gcp_setup_job]


defs = dg.Definitions(
    assets=[taxi_source_file, load_taxi_trips, *getting_started_assets],
    asset_checks=taxi_trip_checks,
    jobs=[taxi_trips_job, getting_started_job, *_warehouse_jobs()],
    schedules=taxi_schedules,
    sensors=[taxi_new_months],
    resources={
        "source": source_from_env(),
        "warehouse": WAREHOUSE,
        # The getting-started group: its products, and the embedded DuckDB file it always uses.
        "products_source": products_source_from_env(),
        "duckdb_file": duckdb_from_env(),
    },
    # A partition run is a handful of steps that mostly wait on the database: one process is
    # enough, and a kill of the run process takes the whole run (and its transaction) with it.
    executor=dg.in_process_executor,
)
