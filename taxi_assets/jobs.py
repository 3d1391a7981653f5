"""The load as a job, for schedules, sensors and the launchpad. (BigQuery's setup job lives in
`warehouses/bigquery.py`: only that warehouse imports Google's libraries.)"""

import dagster as dg

from taxi_assets.assets import STAGING, TRIPS

taxi_trips_job = dg.define_asset_job(
    name="taxi_trips_job",
    description="Load one colour-month into the warehouse (staging, merge, checks).",
    selection=dg.AssetSelection.assets(STAGING, TRIPS),
)
