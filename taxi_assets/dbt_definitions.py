"""The dbt code location, `taxi_dbt`: the dbt models downstream of `taxi_trips`, their job and
the sensor that rebuilds the loaded months' facts (`make dev` serves it beside `taxi_assets`).

A location of its own so that whatever loads trips (a run, each run of a backfill, a CLI
materialisation) imports no dbt: that is about 2.5 s of every such process on two cores. The UI
still shows one asset graph: `taxi_trips` (location `taxi_assets`) feeds the models here.
"""

import dagster as dg

from taxi_assets.dbt_models import (
    dbt_after_loads,
    dbt_resource,
    taxi_dbt_job,
    taxi_dbt_models,
    taxi_dbt_months,
)
from taxi_assets.resources import warehouse_from_env

defs = dg.Definitions(
    assets=[taxi_dbt_models, taxi_dbt_months],
    jobs=[taxi_dbt_job],
    sensors=[dbt_after_loads],
    resources={"dbt": dbt_resource(), "warehouse": warehouse_from_env()},
    executor=dg.in_process_executor,
)
