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

from taxi_assets.partitions import LAST_RELEASE_MONTH, TaxiPartition
from taxi_assets.progress import Transfer
from taxi_assets.settings import VARIABLES, Settings
from taxi_assets.source import (
    DEFAULT_MAX_ROWS,
    DEFAULT_SOURCE_URL,
    DEFAULT_TLC_URL,
    FetchedFile,
    MinimumRate,
    fetch,
    is_published,
    redact_url,
    source_url,
)
from taxi_assets.trip_schema import TRIP_SCHEMAS
from taxi_assets.warehouses.base import TaxiWarehouse


class TaxiSource(dg.ConfigurableResource):
    """The monthly trip files: the DataTalksClub release's CSVs up to 2021-07
    (`{base_url}/{taxi}/{taxi}_tripdata_{YYYY-MM}.csv.gz`), the TLC's Parquet files after it
    (`{tlc_url}/{taxi}_tripdata_{YYYY-MM}.parquet`)."""

    base_url: str = Field(
        default=DEFAULT_SOURCE_URL,
        description="Release base URL (TAXI_SOURCE_URL): https://, file:// or a directory.",
    )
    tlc_url: str = Field(
        default=DEFAULT_TLC_URL,
        description="The TLC's Parquet files (TAXI_TLC_URL): https://, file:// or a directory.",
    )
    kind: str = Field(
        default="auto",
        description=(
            "Which files to read (TAXI_SOURCE_KIND): auto (the release up to "
            f"{LAST_RELEASE_MONTH}, the TLC's after it), release or tlc for every month."
        ),
    )
    timeout_seconds: float = Field(
        default=60.0,
        description=(
            "Read timeout per request: the longest wait for a byte. No HTTP retries here: the "
            "load step's retry policy is the one retry layer."
        ),
    )
    min_bytes_per_second: int = Field(
        default=16 * 1024,
        description=(
            "Bytes per second under which a download is given up, over a minute "
            "(TAXI_DOWNLOAD_MIN_RATE; 0: never)."
        ),
    )

    max_rows: int = Field(
        default=DEFAULT_MAX_ROWS,
        description=(
            "A file with more rows than this is refused (TAXI_MAX_ROWS): far beyond any real "
            "month, the largest of which hold about 8 million."
        ),
    )

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


def _env(settings: Settings, name: str, default: object, as_int: bool = False) -> object:
    """The variable as a `dg.EnvVar` where the environment sets it, else the default."""
    if name not in VARIABLES:  # else it would never count as set
        raise ValueError(f"{name} is not among the VARIABLES that settings.py reads")
    if name not in settings.variables_set:
        return default
    return dg.EnvVar.int(name) if as_int else dg.EnvVar(name)


# Each warehouse's module is imported when that warehouse is chosen: a DuckDB or PostgreSQL run
# never loads Google's libraries. (DuckDB's is always imported: the getting-started group uses
# the DuckDB file whatever the warehouse.)


def postgres_resource(settings: Settings) -> TaxiWarehouse:
    from taxi_assets.warehouses.postgres import DEAD_CONNECTION_SECONDS, PostgresWarehouse

    return PostgresWarehouse(
        host=_env(settings, "PGHOST", "localhost"),
        port=_env(settings, "PGPORT", 5432, as_int=True),
        user=_env(settings, "PGUSER", "postgres"),
        password=_env(settings, "PGPASSWORD", None),
        database=_env(settings, "PGDATABASE", "postgres"),
        sql_schema=_env(settings, "TAXI_PG_SCHEMA", "public"),
        dead_connection_seconds=_env(
            settings, "TAXI_PG_DEAD_CONNECTION_SECONDS", DEAD_CONNECTION_SECONDS, as_int=True
        ),
    )


def duckdb_resource(settings: Settings) -> TaxiWarehouse:
    from taxi_assets.warehouses.duckdb import DEFAULT_PATH, DEFAULT_SCHEMA, DuckDBWarehouse

    return DuckDBWarehouse(
        path=_env(settings, "TAXI_DUCKDB_PATH", str(DEFAULT_PATH)),
        sql_schema=_env(settings, "TAXI_DUCKDB_SCHEMA", DEFAULT_SCHEMA),
    )


def bigquery_resource(settings: Settings) -> TaxiWarehouse:
    from taxi_assets.warehouses.bigquery import BigQueryWarehouse

    return BigQueryWarehouse(
        project=_env(settings, "GCP_PROJECT_ID", ""),
        location=_env(settings, "GCP_LOCATION", "US"),
        dataset=_env(settings, "GCP_DATASET", "zoomcamp"),
        bucket=_env(settings, "GCP_BUCKET_NAME", ""),
        credentials_json=_env(settings, "GCP_CREDENTIALS_JSON", None),
        api_endpoint=_env(settings, "BIGQUERY_API_ENDPOINT", None),
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
        base_url=_env(settings, "TAXI_SOURCE_URL", DEFAULT_SOURCE_URL),
        tlc_url=_env(settings, "TAXI_TLC_URL", DEFAULT_TLC_URL),
        kind=_env(settings, "TAXI_SOURCE_KIND", "auto"),
        min_bytes_per_second=_env(settings, "TAXI_DOWNLOAD_MIN_RATE", 16 * 1024, as_int=True),
        max_rows=_env(settings, "TAXI_MAX_ROWS", DEFAULT_MAX_ROWS, as_int=True),
    )


def products_source_resource(settings: Settings) -> dg.ConfigurableResource:
    """The getting-started group's products (PRODUCTS_URL)."""
    from taxi_assets.getting_started import DEFAULT_PRODUCTS_URL, ProductsSource

    return ProductsSource(url=_env(settings, "PRODUCTS_URL", DEFAULT_PRODUCTS_URL))


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
    return fixed.config_schema.parent_def.config_schema.default_value


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
