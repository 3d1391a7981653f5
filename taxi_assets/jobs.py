"""The load as a job, for schedules, sensors and the launchpad."""

import dagster as dg

from taxi_assets.assets import STAGING, TRIPS
from taxi_assets.bigquery_warehouse import BigQueryWarehouse

taxi_trips_job = dg.define_asset_job(
    name="taxi_trips_job",
    description="Load one colour-month into the warehouse (staging, merge, checks).",
    selection=dg.AssetSelection.assets(STAGING, TRIPS),
)


@dg.op(description="Create the GCS bucket and BigQuery dataset if missing (Kestra's gcp_setup).")
def create_bucket_and_dataset(context: dg.OpExecutionContext, warehouse: BigQueryWarehouse) -> None:
    bucket_created, dataset_created = warehouse.ensure_bucket_and_dataset()
    for what, name, created in (
        ("bucket", f"gs://{warehouse.bucket}", bucket_created),
        ("dataset", f"{warehouse.project}.{warehouse.dataset}", dataset_created),
    ):
        context.log.info(f"{what} {name} {'created' if created else 'already exists, skipped'}")


@dg.job(description="BigQuery only: create the bucket and dataset the loads need.")
def gcp_setup_job() -> None:
    create_bucket_and_dataset()
