"""The dbt code location, `taxi_dbt`: the dbt models downstream of `taxi_trips`, their job and
the sensor that rebuilds the loaded months' facts (`make dev` serves it beside `taxi_assets`).

A location of its own so that whatever loads trips (a run, each run of a backfill, a CLI
materialisation) imports no dbt: that is about 2.5 s of every such process on two cores. The UI
still shows one asset graph: `taxi_trips` (location `taxi_assets`) feeds the models here.
The settings are read here, once, when the location loads (`settings.py`).
"""

import dagster as dg

from taxi_assets.dagster_home import say_when_history_is_temporary
from taxi_assets.dbt_models import build_taxi_dbt, taxi_dbt_job
from taxi_assets.resources import fixed_by_operator, warehouse_resource
from taxi_assets.settings import Settings
from taxi_assets.terminal import install_terminal_hooks


def build_dbt_definitions(settings: Settings) -> dg.Definitions:
    dbt = build_taxi_dbt(settings)
    return dg.Definitions(
        assets=[dbt.models, dbt.months],
        jobs=[taxi_dbt_job],
        sensors=[dbt.after_loads],
        # Fixed by the operator, as in the load location: a run's config cannot move them.
        resources={
            "dbt": fixed_by_operator(dbt.resource()),
            "warehouse": fixed_by_operator(warehouse_resource(settings)),
        },
        executor=dg.in_process_executor,
    )


defs = build_dbt_definitions(Settings.for_code_location())
say_when_history_is_temporary()
install_terminal_hooks()
