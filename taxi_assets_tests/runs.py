"""The definitions as the tests build them, from the tests' settings: retried steps wait 0.2 s
instead of 5 s. (Subprocesses read theirs from the environment a test gives them.)"""

from functools import cache
from typing import TYPE_CHECKING

from taxi_assets.assets import build_load_taxi_trips
from taxi_assets.schedules import build_taxi_schedules
from taxi_assets.settings import Settings

if TYPE_CHECKING:
    from taxi_assets.dbt_models import TaxiDbt

SETTINGS = Settings(retry_delay_seconds=0.2)
load_taxi_trips = build_load_taxi_trips(SETTINGS)
taxi_schedules = build_taxi_schedules(SETTINGS)


@cache
def taxi_dbt() -> "TaxiDbt":
    """The dbt assets (DuckDB's manifest: `dbt.resource(target)` builds on another warehouse).
    Imported on first use: dbt costs seconds to import, and most tests need none."""
    from taxi_assets.dbt_models import build_taxi_dbt

    return build_taxi_dbt(SETTINGS)
