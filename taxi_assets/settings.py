"""The project's settings: the environment, read once into one frozen value, when a code
location's definitions are built (`definitions.py`, `dbt_definitions.py`) or a command starts
(`summary.py`). The definitions are made from that value; no other module reads the environment
(but for what dbt reads itself: `dbt_models.manifest_dir` keys the dbt manifest on it), and none
writes it.

What the definitions depend on is held as values: the warehouse (the assets' kind, their pool),
the retry delay, the schedules' timezone and month, the sources. The resources' own fields (the
PostgreSQL server, the DuckDB file, …) are bound to their variables as `dg.EnvVar` where set
(`resources.py`): the UI then shows a variable's name, never its value, and Dagster reads the
value when it starts the resource. `variables_set` says which are set.

Every variable that can hold a bad value is checked here, so that a bad setting stops the code
location from loading with one line naming it (`NAME='value': what it must be`; a secret's value
is never shown). The resources' fields carry no constraint of their own: pydantic would check
the `dg.EnvVar` object, not its value. BigQuery's own variables are checked when it is the
warehouse: only then does anything read them.
"""

import json
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from taxi_assets.errors import SettingError, SourceError
from taxi_assets.source import DEFAULT_SOURCE_URL, DEFAULT_TLC_URL, check_source_url, fetch_path

WAREHOUSE_KINDS = ("duckdb", "postgres", "bigquery")
SOURCE_KINDS = ("auto", "release", "tlc")
SCHEDULE_MONTHS = ("previous", "current")
# Every variable the project's code reads (`.env.example` has them all; dbt reads its own in
# dbt_project/profiles.yml). Empty counts as unset: the default applies.
VARIABLES = (
    "TAXI_WAREHOUSE",
    "TAXI_DUCKDB_PATH", "TAXI_DUCKDB_SCHEMA", "TAXI_DBT_SCHEMA",
    "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "TAXI_PG_SCHEMA",
    "TAXI_PG_DEAD_CONNECTION_SECONDS",
    "GCP_PROJECT_ID", "GCP_LOCATION", "GCP_DATASET", "GCP_BUCKET_NAME", "GCP_CREDENTIALS_JSON",
    "GOOGLE_APPLICATION_CREDENTIALS", "BIGQUERY_API_ENDPOINT",
    "TAXI_SOURCE_URL", "TAXI_TLC_URL", "TAXI_SOURCE_KIND", "TAXI_DOWNLOAD_MIN_RATE",
    "TAXI_MAX_ROWS",
    "TAXI_SCHEDULE_TIMEZONE", "TAXI_SCHEDULE_MONTH", "TAXI_RETRY_DELAY_SECONDS",
    "PRODUCTS_URL",
)  # fmt: skip
MAX_RETRY_DELAY_SECONDS = 3600
# Half of it is the first keepalive's wait, which Linux caps at 32767 s: an hour is plenty.
MAX_DEAD_CONNECTION_SECONDS = 3600
MAX_PORT = 65535
# BigQuery's rule for a dataset's name, GCS's for a bucket's.
DATASET_NAME = re.compile(r"[A-Za-z0-9_]{1,1024}")
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")


def check_schema_name(variable: str, name: str) -> None:
    """A schema name every tool can quote: dbt writes `"{name}"` without doubling a `"` in it
    (the loads would work, the models would not)."""
    if '"' in name:
        raise SettingError(
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
            raise SettingError(
                f"TAXI_WAREHOUSE={self.warehouse!r}: one of {', '.join(WAREHOUSE_KINDS)}"
            )
        if self.schedule_month not in SCHEDULE_MONTHS:
            raise SettingError(
                f"TAXI_SCHEDULE_MONTH={self.schedule_month!r}: one of {', '.join(SCHEDULE_MONTHS)}"
            )
        # Not "not published" later (the schedules would skip every month): said at start-up.
        for name, url in (("TAXI_SOURCE_URL", self.source_url), ("TAXI_TLC_URL", self.tlc_url)):
            check_url(name, url)
        if self.source_kind not in SOURCE_KINDS:
            raise SettingError(
                f"TAXI_SOURCE_KIND={self.source_kind!r}: one of {', '.join(SOURCE_KINDS)}"
            )

    @classmethod
    def for_code_location(cls) -> "Settings":
        """The process environment's settings. A value that cannot be used stops the code location
        with its one line: the UI shows it as the location's error, and a terminal (`dg launch`,
        `dagster asset materialize`) prints that line alone, without a traceback."""
        try:
            return cls.from_env()
        except SettingError:
            sys.excepthook = _settings_errors_in_one_line(sys.excepthook)
            raise

    @property
    def pool(self) -> str:
        """The concurrency pool of whatever writes to the warehouse (loads, dbt builds)."""
        return f"taxi_{self.warehouse}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """The settings `environ` (the process environment by default) gives."""
        environ = os.environ if environ is None else environ
        values = {name: environ[name] for name in VARIABLES if environ.get(name)}
        warehouse = values.get("TAXI_WAREHOUSE", "duckdb").strip().lower() or "duckdb"
        check_variables(values)
        if warehouse == "bigquery":
            check_bigquery_variables(values)
        return cls(
            warehouse=warehouse,
            retry_delay_seconds=float(values.get("TAXI_RETRY_DELAY_SECONDS", "5")),
            schedule_timezone=values.get("TAXI_SCHEDULE_TIMEZONE", "UTC"),
            schedule_month=values.get("TAXI_SCHEDULE_MONTH", "previous"),
            source_url=values.get("TAXI_SOURCE_URL", DEFAULT_SOURCE_URL),
            tlc_url=values.get("TAXI_TLC_URL", DEFAULT_TLC_URL),
            source_kind=values.get("TAXI_SOURCE_KIND", "auto"),
            variables_set=frozenset(values),
        )


def check_variables(values: Mapping[str, str]) -> None:
    """Refuse a bad value of any variable every warehouse may read, naming it."""
    check_whole_number(values, "PGPORT", "a TCP port number", 1, MAX_PORT)
    check_whole_number(
        values, "TAXI_PG_DEAD_CONNECTION_SECONDS", "a whole number of seconds", 1,
        MAX_DEAD_CONNECTION_SECONDS,
    )  # fmt: skip
    check_whole_number(values, "TAXI_DOWNLOAD_MIN_RATE", "a whole number of bytes per second", 0)
    check_whole_number(values, "TAXI_MAX_ROWS", "a whole number of rows", 1)
    check_retry_delay(values.get("TAXI_RETRY_DELAY_SECONDS", "5"))
    check_time_zone(values.get("TAXI_SCHEDULE_TIMEZONE", "UTC"))
    for name in ("TAXI_PG_SCHEMA", "TAXI_DUCKDB_SCHEMA", "TAXI_DBT_SCHEMA"):
        check_schema_name(name, values.get(name, ""))
    check_duckdb_path(values.get("TAXI_DUCKDB_PATH"))
    if "PRODUCTS_URL" in values:
        check_url("PRODUCTS_URL", values["PRODUCTS_URL"], local="file")


def check_whole_number(
    values: Mapping[str, str], name: str, what: str, least: int, most: int | None = None
) -> None:
    """A whole number from `least` to `most`, read as `dg.EnvVar.int` reads it (`int()`)."""
    if name not in values:
        return
    text = values[name]
    try:
        number = int(text)
    except ValueError:
        number = None
    if number is None or number < least:
        raise SettingError(f"{name}={text!r}: {what}, at least {least}")
    if most is not None and number > most:
        raise SettingError(f"{name}={text!r}: {what}, at most {most}")


def check_retry_delay(text: str) -> None:
    """The load's first retry delay: seconds, 0 to an hour (no `nan`, no `inf`)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= MAX_RETRY_DELAY_SECONDS:
        raise SettingError(
            f"TAXI_RETRY_DELAY_SECONDS={text!r}: a number of seconds from 0 to "
            f"{MAX_RETRY_DELAY_SECONDS}"
        )


def check_time_zone(name: str) -> None:
    """An IANA time zone the schedules can run in (`Europe/Paris`, `UTC`)."""
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        raise SettingError(
            f"TAXI_SCHEDULE_TIMEZONE={name!r}: an IANA time zone such as UTC or Europe/Paris"
        ) from None


def check_duckdb_path(path: str | None) -> None:
    """The DuckDB file's path (relative to the repository): not a directory's."""
    from taxi_assets.warehouses.duckdb import resolve_path

    if path is not None and resolve_path(path).is_dir():
        raise SettingError(f"TAXI_DUCKDB_PATH={path!r}: a file's path, not an existing directory")


def check_url(name: str, url: str, local: str = "folder") -> None:
    """A URL or path the project can read from (`check_source_url`), named after its variable; a
    local one (a path, `file://`) must exist, as a `local` ("folder" or "file"): else every
    month would read as "not published"."""
    try:
        check_source_url(url)
    except SourceError as error:
        raise SettingError(f"{name}={error}") from None
    if urlsplit(url).scheme.lower() not in ("", "file"):
        return
    path = fetch_path(url)
    if not (path.is_dir() if local == "folder" else path.is_file()):
        raise SettingError(f"{name}={url!r}: no such {local} on this machine ({path.resolve()})")


def check_bigquery_variables(values: Mapping[str, str]) -> None:
    """Refuse a bad value of a variable only BigQuery reads, naming it (never a secret's)."""
    check_credentials_json(values.get("GCP_CREDENTIALS_JSON"))
    for name in ("GCP_DATASET", "TAXI_DBT_SCHEMA"):
        if name in values and not DATASET_NAME.fullmatch(values[name]):
            raise SettingError(
                f"{name}={values[name]!r}: a BigQuery dataset name (letters, digits, underscores)"
            )
    bucket = values.get("GCP_BUCKET_NAME")
    if bucket is not None and not BUCKET_NAME.fullmatch(bucket):
        raise SettingError(
            f"GCP_BUCKET_NAME={bucket!r}: a GCS bucket name (3 to 63 lowercase letters, digits, "
            "dashes, underscores, dots)"
        )
    endpoint = values.get("BIGQUERY_API_ENDPOINT")
    if endpoint is not None and not re.fullmatch(r"https?://[^/\s]+/?\S*", endpoint):
        raise SettingError(f"BIGQUERY_API_ENDPOINT={endpoint!r}: an http:// or https:// URL")
    key_file = values.get("GOOGLE_APPLICATION_CREDENTIALS")
    if key_file is not None and not os.path.isfile(key_file):
        raise SettingError(
            f"GOOGLE_APPLICATION_CREDENTIALS={key_file!r}: the path of a service-account key file"
        )


def check_credentials_json(text: str | None) -> None:
    """A service-account key file's contents: a JSON object. A secret: its value is not shown."""
    if text is None:
        return
    try:
        key = json.loads(text)
    except ValueError:
        key = None
    if not isinstance(key, dict):
        raise SettingError(
            "GCP_CREDENTIALS_JSON=(not shown): a JSON object, a service-account key file's contents"
        )


def _settings_errors_in_one_line(excepthook: Callable) -> Callable:
    """`excepthook`, except that a `SettingError` (or one that caused the error) is printed as
    its message alone."""

    def hook(kind: type[BaseException], error: BaseException, traceback: object) -> None:
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, SettingError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            excepthook(kind, error, traceback)
        else:
            print(cause, file=sys.stderr)

    return hook
