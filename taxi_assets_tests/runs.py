"""Dagster runs in the test process, with the definitions built from the tests' settings
(retried steps wait 0.2 s instead of 5 s; a process of its own reads `warehouse_env`'s):
`materialize_load` loads a partition as a run does, `materialize_dbt` builds the dbt models."""

from functools import cache
from typing import TYPE_CHECKING

import dagster as dg

from taxi_assets.assets import build_load_taxi_trips
from taxi_assets.checks import taxi_trip_checks
from taxi_assets.partitions import TaxiPartition
from taxi_assets.resources import TaxiSource
from taxi_assets.schedules import build_taxi_schedules
from taxi_assets.settings import Settings
from taxi_assets.warehouses.base import TaxiWarehouse

if TYPE_CHECKING:
    from taxi_assets.dbt_models import TaxiDbt

SETTINGS = Settings.from_env({"TAXI_RETRY_DELAY_SECONDS": "0.2"})
load_taxi_trips = build_load_taxi_trips(SETTINGS)
taxi_schedules = build_taxi_schedules(SETTINGS)


def materialize_load(
    partition: str | TaxiPartition, source: TaxiSource, warehouse: TaxiWarehouse, **kwargs
) -> dg.ExecuteInProcessResult:
    """One partition's load and its checks, in this process, as a run does them. `kwargs` go
    to `dg.materialize` (`instance`, `raise_on_error`, `run_config`, …)."""
    key = str(partition.key) if isinstance(partition, TaxiPartition) else partition
    return dg.materialize(
        [load_taxi_trips, *taxi_trip_checks],
        partition_key=key,
        resources={"source": source, "warehouse": warehouse},
        **kwargs,
    )


@cache
def taxi_dbt() -> "TaxiDbt":
    """The dbt assets (DuckDB's manifest: `dbt.resource(target)` builds on another warehouse).
    Imported on first use: dbt costs seconds to import, and most tests need none."""
    from taxi_assets.dbt_models import build_taxi_dbt

    return build_taxi_dbt(SETTINGS)


def materialize_dbt(
    warehouse: TaxiWarehouse, *assets: dg.AssetsDefinition, **kwargs
) -> dg.ExecuteInProcessResult:
    """`dbt build` of `assets` (by default both dbt asset definitions, `taxi_dbt()`) on the
    warehouse, with its own dbt target, in this process. dbt reads the warehouse's settings from
    the environment: see `set_warehouse_env`. `kwargs` go to `dg.materialize`."""
    dbt = taxi_dbt()
    return dg.materialize(
        list(assets) or [dbt.models, dbt.months],
        resources={"dbt": dbt.resource(warehouse.kind), "warehouse": warehouse},
        **kwargs,
    )
