"""The load code location, `taxi_assets`: the trip assets, their checks, job, schedules and sensor
(`dagster asset materialize -m taxi_assets.definitions`, `dg launch`, and `make dev` beside the
dbt location, `dbt_definitions.py`), and the course's getting-started flow (`getting_started.py`).

The settings are read here, once, when the location loads (`settings.py`); what depends on them
(the load step's kind, pool and retries, the schedules, the resources) is built from them. Loading
it also sets what a terminal shows of a user error (a wrong partition key) and of a failed run:
their cause in a line, not a stack trace (`terminal.py`).
"""

import dagster as dg

from taxi_assets.assets import build_load_taxi_trips, taxi_source_file
from taxi_assets.checks import taxi_trip_checks
from taxi_assets.dagster_home import say_when_history_is_temporary
from taxi_assets.getting_started import getting_started_assets, getting_started_job
from taxi_assets.jobs import taxi_trips_job
from taxi_assets.resources import (
    duckdb_resource,
    fixed_by_operator,
    products_source_resource,
    source_resource,
    warehouse_resource,
)
from taxi_assets.schedules import build_taxi_schedules
from taxi_assets.sensors import taxi_new_months
from taxi_assets.settings import Settings
from taxi_assets.terminal import install_terminal_hooks


def _warehouse_jobs(settings: Settings) -> list[dg.JobDefinition]:
    """The setup job exists for the cloud warehouse only (and only it imports Google's code)."""
    if settings.warehouse != "bigquery":
        return []
    from taxi_assets.warehouses.bigquery import gcp_setup_job

    return [gcp_setup_job]


def build_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[taxi_source_file, build_load_taxi_trips(settings), *getting_started_assets],
        asset_checks=taxi_trip_checks,
        jobs=[taxi_trips_job, getting_started_job, *_warehouse_jobs(settings)],
        schedules=build_taxi_schedules(settings),
        sensors=[taxi_new_months],
        # The operator's settings: a run's config cannot point them elsewhere.
        resources={
            name: fixed_by_operator(resource)
            for name, resource in {
                "source": source_resource(settings),
                "warehouse": warehouse_resource(settings),
                # The getting-started group: its products, and the embedded DuckDB file it always
                # uses.
                "products_source": products_source_resource(settings),
                "duckdb_file": duckdb_resource(settings),
            }.items()
        },
        # A partition run is a handful of steps that mostly wait on the database: one process is
        # enough, and a kill of the run process takes the whole run (and its transaction) with
        # it.
        executor=dg.in_process_executor,
    )


install_terminal_hooks()
defs = build_definitions(Settings.for_code_location())
say_when_history_is_temporary()
