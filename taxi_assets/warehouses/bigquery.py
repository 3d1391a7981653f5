"""BigQuery + GCS: the cloud warehouse (Kestra's gcp_taxi flow, with this project's semantics).

Per partition, as the Kestra flow does: upload the file to `gs://{bucket}/{file}.gz`, create the
main table if missing (partitioned by pickup date), an external table over the GCS file, and the
month's table with `unique_row_id` and `filename`; then replace the file's rows in the main table
with one MERGE statement (atomic: delete the file's old rows, insert the new), and drop the
month's tables. Each partition has its own tables, so partitions load in parallel.

`unique_row_id` is the Kestra flow's BigQuery expression: MD5 over five columns (no fare or
distance), as BYTES, with BigQuery's text for timestamps (`2019-01-01 00:10:16+00`). So BigQuery
ids differ from the PostgreSQL / DuckDB ones (md5 hex text over seven columns); within BigQuery
they are stable.
"""

import base64
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from typing import cast

import dagster as dg
import google.auth
import requests
from dagster_gcp import BigQueryResource, GCSResource
from google.api_core.client_options import ClientOptions
from google.api_core.exceptions import GoogleAPICallError, GoogleAPIError, NotFound
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import bigquery, storage
from google.cloud.bigquery.table import RowIterator
from pydantic import Field

from taxi_assets.errors import SourceError, WarehouseError, WarehouseMisconfigured
from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_csv import TripCsv
from taxi_assets.trip_schema import TRIP_SCHEMAS, Column, ColumnType, TripSchema
from taxi_assets.variables import variable_field
from taxi_assets.warehouses.base import (
    MergedPartition,
    PartitionLoad,
    StagedPartition,
    TaxiWarehouse,
    staging_table_label,
    staging_table_name,
)
from taxi_assets.warehouses.trip_queries import TripQueries

# The Kestra flow's BigQuery types (money and distances NUMERIC).
TABLE_TYPES = {
    ColumnType.TEXT: "STRING",
    ColumnType.TIMESTAMP: "TIMESTAMP",
    ColumnType.INTEGER: "INT64",
    ColumnType.FLOAT: "NUMERIC",
}
# What the external table reads: integers as FLOAT64, so `1.0` loads (then cast).
EXTERNAL_TYPES = {**TABLE_TYPES, ColumnType.INTEGER: "FLOAT64"}
# The Kestra flow's id columns in BigQuery: five, no fare or distance.
BIGQUERY_ID_COLUMNS = ("VendorID", "{pickup}", "{dropoff}", "PULocationID", "DOLocationID")


class EndpointBigQueryResource(BigQueryResource):
    """dagster-gcp's BigQuery resource, able to talk to another endpoint (an emulator)."""

    api_endpoint: str | None = Field(default=None, description="BigQuery API endpoint override.")

    @contextmanager
    def get_client(self) -> Iterator[bigquery.Client]:
        if not self.api_endpoint:
            with super().get_client() as client:
                yield client
            return
        yield bigquery.Client(
            project=self.project,
            location=self.location,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.api_endpoint),
        )


class BigQueryWarehouse(TaxiWarehouse):
    """BigQuery tables fed from a GCS bucket (GCP_PROJECT_ID, GCP_DATASET, GCP_BUCKET_NAME, …)."""

    project: str = variable_field("GCP_PROJECT_ID")
    location: str = variable_field("GCP_LOCATION")
    dataset: str = variable_field("GCP_DATASET")
    bucket: str = variable_field("GCP_BUCKET_NAME")
    credentials_json: str | None = variable_field("GCP_CREDENTIALS_JSON")
    api_endpoint: str | None = variable_field("BIGQUERY_API_ENDPOINT")

    @property
    def single_file(self) -> bool:
        return False  # a server: loads and dbt share it

    def exclusive_access(self) -> AbstractContextManager[None]:
        return nullcontext()  # a server takes any number of writers

    @property
    def kind(self) -> str:
        return "bigquery"

    @property
    def table_types(self) -> Mapping[ColumnType, str]:
        return TABLE_TYPES

    def qualified_table(self, table: str) -> str:
        return f"{self.project}.{self.dataset}.{table}"

    def table_id(self, table: str) -> str:
        """The quoted table path BigQuery SQL takes."""
        return f"`{self.project}.{self.dataset}.{table}`"

    def check_settings(self) -> None:
        """Fail before any upload when the project, bucket or credentials are missing."""
        settings = {
            "GCP_PROJECT_ID": self.project,
            "GCP_DATASET": self.dataset,
            "GCP_BUCKET_NAME": self.bucket,
        }
        missing = [name for name, value in settings.items() if not value]
        if missing:
            raise WarehouseMisconfigured(
                f"BigQuery needs {', '.join(missing)}: set it in the environment"
            )
        if self.api_endpoint or self.credentials_json:
            return
        try:
            google.auth.default()
        except DefaultCredentialsError as error:
            raise WarehouseMisconfigured(
                "no GCP credentials: set GOOGLE_APPLICATION_CREDENTIALS to a service-account key "
                "file or GCP_CREDENTIALS_JSON to its contents"
            ) from error

    @contextmanager
    def clients(self) -> Iterator[tuple[bigquery.Client, storage.Client]]:
        self.check_settings()
        encoded = (
            base64.b64encode(self.credentials_json.encode()).decode()
            if self.credentials_json
            else None
        )
        resource = EndpointBigQueryResource(
            project=self.project,
            location=self.location,
            gcp_credentials=encoded,
            api_endpoint=self.api_endpoint,
        )
        with resource.get_client() as bq:
            # GCS: the stock resource (it follows STORAGE_EMULATOR_HOST for an emulator).
            yield bq, GCSResource(project=self.project).get_client()

    def ensure_bucket_and_dataset(self) -> tuple[bool, bool]:
        """Kestra's gcp_setup (`ifExists: SKIP`): create what is missing; say what was created."""
        with self.clients() as (bq, gcs):
            bucket_created = gcs.lookup_bucket(self.bucket) is None
            if bucket_created:
                gcs.create_bucket(self.bucket, location=self.location)
            dataset = bigquery.Dataset(f"{self.project}.{self.dataset}")
            dataset.location = self.location
            try:
                bq.get_dataset(dataset.dataset_id)
                dataset_created = False
            except NotFound:
                bq.create_dataset(dataset)
                dataset_created = True
        return bucket_created, dataset_created

    @contextmanager
    def open_partition(
        self, schema: TripSchema, partition: TaxiPartition
    ) -> Iterator[PartitionLoad]:
        with self.clients() as (bq, gcs):
            load = _BigQueryPartitionLoad(self, bq, gcs, schema, partition)
            load.ensure_tables()
            yield load

    @contextmanager
    def reading(self) -> Iterator[TripQueries]:
        """One client for the block, and no previews: BigQuery bills a SELECT of every column as
        a scan of the whole table, whatever its LIMIT."""
        with self.clients() as (bq, _):
            yield TripQueries(partial(self._query_on, bq), self.column_names, previews=False)

    def _query_on(
        self, bq: bigquery.Client, schema: TripSchema, query: str, params: Sequence[object]
    ) -> list[tuple]:
        try:
            bq.get_table(self.qualified_table(schema.table))
        except NotFound:
            return []
        sql = query.replace("%s", "?").format(table=self.table_id(schema.table))
        return [tuple(row.values()) for row in run_query(bq, sql, params)]


def _parameter(value: object) -> bigquery.ScalarQueryParameter:
    if isinstance(value, date):  # a month's bounds: the trip tables' times are TIMESTAMPs
        return bigquery.ScalarQueryParameter(
            None, "TIMESTAMP", datetime.combine(value, datetime.min.time(), tzinfo=UTC)
        )
    if isinstance(value, int):
        return bigquery.ScalarQueryParameter(None, "INT64", value)
    if isinstance(value, str):
        return bigquery.ScalarQueryParameter(None, "STRING", value)
    raise TypeError(f"no BigQuery parameter for a {type(value).__name__}: {value!r}")


def run_query(bq: bigquery.Client, sql: str, params: Sequence[object] = ()) -> RowIterator:
    """Run one statement and wait; BigQuery's error comes back as a WarehouseError."""
    config = bigquery.QueryJobConfig(query_parameters=[_parameter(p) for p in params])
    try:
        return bq.query(sql, job_config=config).result()
    except GoogleAPICallError as error:
        raise WarehouseError(f"BigQuery: {error.message}") from error


def unique_row_id_sql(schema: TripSchema) -> str:
    """The Kestra flow's BigQuery id: MD5(CONCAT(...)) over five columns, BYTES."""
    names = (n.format(pickup=schema.pickup, dropoff=schema.dropoff) for n in BIGQUERY_ID_COLUMNS)
    parts = ", ".join(f'COALESCE(CAST({name} AS STRING), "")' for name in names)
    return f"MD5(CONCAT({parts}))"


@dataclass
class _BigQueryPartitionLoad(PartitionLoad):
    warehouse: BigQueryWarehouse
    bq: bigquery.Client
    gcs: storage.Client
    schema: TripSchema
    partition: TaxiPartition

    def __post_init__(self) -> None:
        self.staging_name = staging_table_name(self.schema, self.partition)
        self.external_name = f"{self.staging_name}_ext"
        self.columns = ", ".join(c.name for c in self.schema.table_columns)
        # The file's columns (`TripCsv.columns`): the release's, or those and newer ones.
        self.file_columns = self.schema.columns

    def _table(self, name: str) -> str:
        return self.warehouse.table_id(name)

    def statements_for_tables(self) -> list[str]:
        """CREATE TABLE IF NOT EXISTS for both colours, partitioned by pickup date."""
        statements = []
        for schema in TRIP_SCHEMAS.values():
            columns = ", ".join(f"{c.name} {TABLE_TYPES[c.type]}" for c in schema.table_columns)
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {self._table(schema.table)} "
                f"(unique_row_id BYTES, filename STRING, {columns}) "
                f"PARTITION BY DATE({schema.pickup})"
            )
        return statements

    def add_column_sql(self, column: Column) -> str:
        """A newer column an existing table lacks, added in place (nullable)."""
        return (
            f"ALTER TABLE {self._table(self.schema.table)} "
            f"ADD COLUMN IF NOT EXISTS {column.name} {TABLE_TYPES[column.type]}"
        )

    def ensure_tables(self) -> None:
        for statement in self.statements_for_tables():
            run_query(self.bq, statement)
        table = self.bq.get_table(self.warehouse.qualified_table(self.schema.table))
        found = {field.name.lower() for field in table.schema}
        for column in self.schema.newer_columns:
            if column.name.lower() not in found:
                run_query(self.bq, self.add_column_sql(column))

    def external_table_sql(self, uri: str) -> str:
        columns = ", ".join(f"{c.name} {EXTERNAL_TYPES[c.type]}" for c in self.file_columns)
        return (
            f"CREATE OR REPLACE EXTERNAL TABLE {self._table(self.external_name)} ({columns}) "
            f"OPTIONS (format = 'CSV', compression = 'GZIP', uris = ['{uri}'], "
            "skip_leading_rows = 1)"
        )

    def staging_sql(self) -> str:
        typed = ", ".join(self._typed_sql(c) for c in self.schema.table_columns)
        return (
            f"CREATE OR REPLACE TABLE {self._table(self.staging_name)} AS "
            f"SELECT {unique_row_id_sql(self.schema)} AS unique_row_id, "
            f'"{self.partition.filename}" AS filename, {typed} '
            f"FROM {self._table(self.external_name)}"
        )

    def _typed_sql(self, column: Column) -> str:
        if column not in self.file_columns:  # a newer column this file lacks
            return f"CAST(NULL AS {TABLE_TYPES[column.type]}) AS {column.name}"
        if column.type is ColumnType.INTEGER:
            return f"CAST({column.name} AS INT64) AS {column.name}"
        return column.name

    def stats_sql(self) -> str:
        staging, pickup = self._table(self.staging_name), self.schema.pickup
        return (
            "SELECT COUNT(*), "
            f"COUNTIF({pickup} < TIMESTAMP(?) OR {pickup} >= TIMESTAMP(?)) FROM {staging} AS t"
        )

    def merge_sql(self) -> str:
        """Atomically replace the file's rows: delete what is only in the table, insert the rest."""
        return (
            f"MERGE {self._table(self.schema.table)} AS T "
            f"USING {self._table(self.staging_name)} AS S ON FALSE "
            "WHEN NOT MATCHED BY SOURCE AND T.filename = ? THEN DELETE "
            f"WHEN NOT MATCHED THEN INSERT (unique_row_id, filename, {self.columns}) "
            f"VALUES (S.unique_row_id, S.filename, "
            + ", ".join(f"S.{c.name}" for c in self.schema.table_columns)
            + ")"
        )

    def stage(self, csv: TripCsv) -> StagedPartition:
        """Build the month's staging table aside:

        1. check the whole gzip stream, then upload the file to `gs://{bucket}/{file}.gz`;
        2. an external table over it (the file's rows as BigQuery's CSV reader parses them);
        3. the staging table from it, with `unique_row_id` and `filename`;
        4. its rows and the pickups outside the month, checked against the lines counted.

        The external table goes whatever happens."""
        self.file_columns = csv.columns
        csv.count_rows()  # the whole gzip stream checked before anything is uploaded
        blob = self.gcs.bucket(self.warehouse.bucket).blob(self.partition.source_filename)
        try:
            # No retries inside the client: the step's retry policy is the one retry layer.
            # The client's `retry` is untyped, so a checker takes its default's type (a Retry);
            # its documented None turns retries off.
            blob.upload_from_filename(str(csv.path), retry=cast(Retry, None), timeout=300)
        except (GoogleAPIError, requests.RequestException) as error:
            # Not chained: the client's error quotes the upload's URL, whose query string may
            # hold a token.
            raise WarehouseError(
                f"upload to gs://{self.warehouse.bucket} failed: {type(error).__name__}"
            ) from None
        uri = f"gs://{self.warehouse.bucket}/{self.partition.source_filename}"
        try:
            run_query(self.bq, self.external_table_sql(uri))
            try:
                run_query(self.bq, self.staging_sql())
            except WarehouseError as error:
                raise SourceError(f"{csv.name}: {error}") from error
            month = [self.partition.month_start.isoformat(), self.partition.month_end.isoformat()]
            stats = run_query(self.bq, self.stats_sql(), month)
            rows, outside = next(iter(stats)).values()
        finally:
            run_query(self.bq, f"DROP TABLE IF EXISTS {self._table(self.external_name)}")
        csv.check_parsed_rows(rows)
        return StagedPartition(
            table=staging_table_label(f"{self.warehouse.dataset}.{self.staging_name}"),
            rows=rows,
            pickup_outside_month=outside,
        )

    def merge(self) -> MergedPartition:
        """Replace the file's rows in the main table with the staged ones:

        1. count the file's rows in the main table;
        2. one MERGE (atomic) deletes them and inserts the staged ones;
        3. count them again, and drop the staging table."""
        filename = self.partition.filename
        main = self._table(self.schema.table)
        count_sql = f"SELECT COUNT(*) FROM {main} WHERE filename = ?"
        before = next(iter(run_query(self.bq, count_sql, [filename]))).values()[0]
        run_query(self.bq, self.merge_sql(), [filename])
        after = next(iter(run_query(self.bq, count_sql, [filename]))).values()[0]
        run_query(self.bq, f"DROP TABLE IF EXISTS {self._table(self.staging_name)}")
        return MergedPartition(
            table=f"{self.warehouse.dataset}.{self.schema.table}", rows=after, replaced_rows=before
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
