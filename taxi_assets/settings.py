"""The project's settings: the environment, read once into one frozen value, when a code
location's definitions are built (`definitions.py`, `dbt_definitions.py`) or a command starts
(`summary.py`). The definitions are made from that value; no other module reads the environment,
and none writes it.

What the definitions depend on is held as values: the warehouse (the assets' kind, their pool),
the retry delay, the schedules' timezone and month, the sources (checked here, so that a bad
setting stops the code location from loading with one line saying which). The resources' own
fields (the PostgreSQL server, the DuckDB file, …) are bound to their variables as `dg.EnvVar`
where set (`resources.py`): the UI then shows a variable's name, never its value, and Dagster
reads the value when it starts the resource. `variables_set` says which are set.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass

from taxi_assets.source import DEFAULT_SOURCE_URL, DEFAULT_TLC_URL, SourceError, check_source_url

WAREHOUSE_KINDS = ("duckdb", "postgres", "bigquery")
SOURCE_KINDS = ("auto", "release", "tlc")
SCHEDULE_MONTHS = ("previous", "current")
# Every variable the project's code reads (`.env.example` has them all; dbt reads its own in
# dbt_project/profiles.yml). Empty counts as unset: the default applies.
VARIABLES = (
    "TAXI_WAREHOUSE",
    "TAXI_DUCKDB_PATH", "TAXI_DUCKDB_SCHEMA",
    "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "TAXI_PG_SCHEMA",
    "TAXI_PG_DEAD_CONNECTION_SECONDS",
    "GCP_PROJECT_ID", "GCP_LOCATION", "GCP_DATASET", "GCP_BUCKET_NAME", "GCP_CREDENTIALS_JSON",
    "BIGQUERY_API_ENDPOINT",
    "TAXI_SOURCE_URL", "TAXI_TLC_URL", "TAXI_SOURCE_KIND", "TAXI_DOWNLOAD_MIN_RATE",
    "TAXI_MAX_ROWS",
    "TAXI_SCHEDULE_TIMEZONE", "TAXI_SCHEDULE_MONTH", "TAXI_RETRY_DELAY_SECONDS",
    "PRODUCTS_URL",
)  # fmt: skip


def check_schema_name(variable: str, name: str) -> None:
    """A schema name every tool can quote: dbt writes `"{name}"` without doubling a `"` in it
    (the loads would work, the models would not)."""
    if '"' in name:
        raise ValueError(
            f"{variable}={name!r}: a schema name without double quotes (dbt cannot quote one)"
        )


@dataclass(frozen=True)
class Settings:
    """The settings; each field's default is the one an unset variable gets."""

    warehouse: str = "duckdb"  # TAXI_WAREHOUSE: duckdb (a file, no server), postgres, bigquery
    retry_delay_seconds: float = 5.0  # TAXI_RETRY_DELAY_SECONDS: the load's first retry delay
    schedule_timezone: str = "UTC"  # TAXI_SCHEDULE_TIMEZONE
    schedule_month: str = "previous"  # TAXI_SCHEDULE_MONTH: previous or current
    source_url: str = DEFAULT_SOURCE_URL  # TAXI_SOURCE_URL: the release's CSV files
    tlc_url: str = DEFAULT_TLC_URL  # TAXI_TLC_URL: the TLC's Parquet files
    source_kind: str = "auto"  # TAXI_SOURCE_KIND: auto, release or tlc
    variables_set: frozenset[str] = frozenset()  # which of VARIABLES the environment sets

    def __post_init__(self) -> None:
        if self.warehouse not in WAREHOUSE_KINDS:
            raise ValueError(
                f"TAXI_WAREHOUSE must be one of {', '.join(WAREHOUSE_KINDS)}, not "
                f"{self.warehouse!r}"
            )
        if self.schedule_month not in SCHEDULE_MONTHS:
            raise ValueError(
                f"TAXI_SCHEDULE_MONTH must be 'previous' or 'current', not {self.schedule_month!r}"
            )
        # Not "not published" later (the schedules would skip every month): said at start-up.
        for name, url in (("TAXI_SOURCE_URL", self.source_url), ("TAXI_TLC_URL", self.tlc_url)):
            try:
                check_source_url(url)
            except SourceError as error:
                raise ValueError(f"{name}={error}") from None
        if self.source_kind not in SOURCE_KINDS:
            raise ValueError(
                f"TAXI_SOURCE_KIND={self.source_kind!r}: one of {', '.join(SOURCE_KINDS)}"
            )

    @property
    def pool(self) -> str:
        """The concurrency pool of whatever writes to the warehouse (loads, dbt builds)."""
        return f"taxi_{self.warehouse}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """The settings `environ` (the process environment by default) gives."""
        environ = os.environ if environ is None else environ
        values = {name: environ[name] for name in VARIABLES if environ.get(name)}
        delay = values.get("TAXI_RETRY_DELAY_SECONDS", "5")
        try:
            retry_delay_seconds = float(delay)
        except ValueError:
            raise ValueError(f"TAXI_RETRY_DELAY_SECONDS={delay!r}: a number of seconds") from None
        check_schema_name("TAXI_PG_SCHEMA", values.get("TAXI_PG_SCHEMA", ""))
        dead = values.get("TAXI_PG_DEAD_CONNECTION_SECONDS", "60")
        if not dead.strip().isdigit() or int(dead) < 1:
            raise ValueError(
                f"TAXI_PG_DEAD_CONNECTION_SECONDS={dead!r}: a whole number of seconds, at least 1"
            )
        return cls(
            warehouse=values.get("TAXI_WAREHOUSE", "duckdb").strip().lower() or "duckdb",
            retry_delay_seconds=retry_delay_seconds,
            schedule_timezone=values.get("TAXI_SCHEDULE_TIMEZONE", "UTC"),
            schedule_month=values.get("TAXI_SCHEDULE_MONTH", "previous"),
            source_url=values.get("TAXI_SOURCE_URL", DEFAULT_SOURCE_URL),
            tlc_url=values.get("TAXI_TLC_URL", DEFAULT_TLC_URL),
            source_kind=values.get("TAXI_SOURCE_KIND", "auto"),
            variables_set=frozenset(values),
        )
