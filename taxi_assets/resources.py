"""Resources: where files come from and where trips land, configured from the settings.

This is the analogue of Kestra's `pluginDefaults`: one place that says which server to use.
A variable that is set becomes a `dg.EnvVar` (the UI shows its name, never its value); an unset
one falls back to the libpq-style default. The code locations build them (`definitions.py`,
`dbt_definitions.py`) from the settings they read (`settings.py`), fixed by the operator
(`fixed_by_operator`): a run chooses its months and options, never where data comes from or
goes to, nor the credentials.
"""

from pathlib import Path

import dagster as dg
from dotenv import load_dotenv
from pydantic import Field

from taxi_assets.dagster_internals import ConfiguredDefinitionConfigSchema
from taxi_assets.download import (
    FetchedFile,
    MinimumRate,
    fetch,
    is_published,
    redact_url,
    source_url,
)
from taxi_assets.partitions import TaxiPartition
from taxi_assets.progress import Transfer
from taxi_assets.settings import Settings
from taxi_assets.trip_schema import TRIP_SCHEMAS
from taxi_assets.variables import SourceKind, variable_field
from taxi_assets.warehouses.base import TaxiWarehouse


class TaxiSource(dg.ConfigurableResource):
    """The monthly trip files: the DataTalksClub release's CSVs up to 2021-07
    (`{base_url}/{taxi}/{taxi}_tripdata_{YYYY-MM}.csv.gz`), the TLC's Parquet files after it
    (`{tlc_url}/{taxi}_tripdata_{YYYY-MM}.parquet`)."""

    base_url: str = variable_field("TAXI_SOURCE_URL")
    tlc_url: str = variable_field("TAXI_TLC_URL")
    kind: SourceKind = variable_field("TAXI_SOURCE_KIND")
    timeout_seconds: float = Field(
        default=60.0,
        description=(
            "Read timeout per request: the longest wait for a byte. No HTTP retries here: the "
            "load step's retry policy is the one retry layer."
        ),
    )
    min_bytes_per_second: int = variable_field("TAXI_DOWNLOAD_MIN_RATE")
    max_rows: int = variable_field("TAXI_MAX_ROWS")

    download_dir: str | None = Field(
        default=None,
        description="Where a run downloads its file to (a folder of its own in it); the "
        "system's temporary folder (TMPDIR) by default.",
    )

    def reads_parquet(self, partition: TaxiPartition) -> bool:
        return self.kind == "tlc" or (self.kind == "auto" and not partition.in_release)

    def url(self, partition: TaxiPartition) -> str:
        if self.reads_parquet(partition):
            return f"{self.tlc_url.rstrip('/')}/{partition.tlc_filename}"
        return source_url(self.base_url, partition.taxi, partition.source_filename)

    def file_name(self, partition: TaxiPartition) -> str:
        """The name of the file read, for messages."""
        return (
            partition.tlc_filename if self.reads_parquet(partition) else partition.source_filename
        )

    def safe_url(self, partition: TaxiPartition) -> str:
        return redact_url(self.url(partition))

    def is_published(self, partition: TaxiPartition) -> bool | None:
        """True or False when the source says so; None when it cannot be asked."""
        return is_published(self.url(partition), timeout_seconds=self.timeout_seconds)

    def fetch(
        self, partition: TaxiPartition, download_dir: Path, transfer: Transfer | None = None
    ) -> FetchedFile:
        return fetch(
            self.url(partition),
            download_dir,
            timeout_seconds=self.timeout_seconds,
            transfer=transfer,
            min_rate=MinimumRate(bytes_per_second=self.min_bytes_per_second),
        )

    def as_release_csv(
        self, fetched: FetchedFile, partition: TaxiPartition, download_dir: Path
    ) -> Path:
        """The fetched TLC Parquet file written out as the release's gzip CSV."""
        from taxi_assets.tlc_parquet import write_release_csv

        out = download_dir / f"converted_{partition.source_filename}"
        return write_release_csv(
            fetched.path, TRIP_SCHEMAS[partition.taxi], out, partition.tlc_filename, self.max_rows
        )


# Each warehouse's module is imported when that warehouse is chosen: a DuckDB or PostgreSQL run
# never loads Google's libraries. (DuckDB's is always imported: the getting-started group uses
# the DuckDB file whatever the warehouse.)


def postgres_resource(settings: Settings) -> TaxiWarehouse:
    from taxi_assets.warehouses.postgres import PostgresWarehouse

    return PostgresWarehouse(
        host=settings.bound("PGHOST"),
        port=settings.bound("PGPORT"),
        user=settings.bound("PGUSER"),
        password=settings.bound("PGPASSWORD"),
        database=settings.bound("PGDATABASE"),
        sql_schema=settings.bound("TAXI_PG_SCHEMA"),
        dead_connection_seconds=settings.bound("TAXI_PG_DEAD_CONNECTION_SECONDS"),
    )


def duckdb_resource(settings: Settings) -> TaxiWarehouse:
    from taxi_assets.warehouses.duckdb import DuckDBWarehouse

    return DuckDBWarehouse(
        path=settings.bound("TAXI_DUCKDB_PATH"),
        sql_schema=settings.bound("TAXI_DUCKDB_SCHEMA"),
        memory_limit=settings.bound("TAXI_DUCKDB_MEMORY_LIMIT"),
    )


def bigquery_resource(settings: Settings) -> TaxiWarehouse:
    from taxi_assets.warehouses.bigquery import BigQueryWarehouse

    return BigQueryWarehouse(
        project=settings.bound("GCP_PROJECT_ID"),
        location=settings.bound("GCP_LOCATION"),
        dataset=settings.bound("GCP_DATASET"),
        bucket=settings.bound("GCP_BUCKET_NAME"),
        credentials_json=settings.bound("GCP_CREDENTIALS_JSON"),
        api_endpoint=settings.bound("BIGQUERY_API_ENDPOINT"),
    )


WAREHOUSES = {
    "duckdb": duckdb_resource,
    "postgres": postgres_resource,
    "bigquery": bigquery_resource,
}


def warehouse_resource(settings: Settings) -> TaxiWarehouse:
    """The warehouse resource TAXI_WAREHOUSE names."""
    return WAREHOUSES[settings.warehouse](settings)


def source_resource(settings: Settings) -> TaxiSource:
    """The trip files (TAXI_SOURCE_URL, TAXI_TLC_URL, TAXI_SOURCE_KIND, checked by `Settings`)."""
    return TaxiSource(
        base_url=settings.bound("TAXI_SOURCE_URL"),
        tlc_url=settings.bound("TAXI_TLC_URL"),
        kind=settings.source_kind,
        min_bytes_per_second=settings.bound("TAXI_DOWNLOAD_MIN_RATE"),
        max_rows=settings.bound("TAXI_MAX_ROWS"),
    )


def products_source_resource(settings: Settings) -> dg.ConfigurableResource:
    """The getting-started group's products (PRODUCTS_URL)."""
    from taxi_assets.getting_started import ProductsSource

    return ProductsSource(url=settings.bound("PRODUCTS_URL"))


def fixed_by_operator(resource: dg.ConfigurableResource) -> dg.ResourceDefinition:
    """The resource with its settings fixed: a run's config cannot set any of them."""
    definition = resource.get_resource_definition()
    settings = definition.config_schema.default_value
    description = " ".join(
        filter(None, [definition.description, _where_settings_come_from(settings)])
    )
    return definition.configured(settings, config_schema={}, description=description)


def operator_settings(fixed: dg.ResourceDefinition) -> dict[str, object]:
    """The settings `fixed_by_operator` fixed: a value, or `{"env": NAME}` for a variable."""
    schema = fixed.config_schema
    parent = schema.parent_def if isinstance(schema, ConfiguredDefinitionConfigSchema) else None
    if parent is None or parent.config_schema is None:
        raise TypeError(f"{fixed} is not a resource fixed by `fixed_by_operator`")
    return parent.config_schema.default_value


def _where_settings_come_from(settings: dict[str, object]) -> str:
    """For the UI: the variables the resource's settings come from (names, never values)."""
    variables = [
        f"{field} ({value['env']})"
        for field, value in settings.items()
        if isinstance(value, dict) and "env" in value
    ]
    read = f" Read from the environment: {', '.join(variables)}." if variables else ""
    return f"Set by the operator; a run's config cannot change it.{read}"


def load_env_file() -> None:
    """Read `.env` from the working directory, its values over the environment's, as every
    dagster and dg command does first: the summary then reads the warehouse the runs loaded."""
    load_dotenv(Path.cwd() / ".env", override=True)
