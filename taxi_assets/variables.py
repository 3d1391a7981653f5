"""Every environment variable the project reads, in one table: name, default, parser, what it
does, whether its value is secret, and what reads it.

Everything about configuration comes from this table: the settings parse it (`settings.py`), the
resources bind their fields to it (`resources.py`), and `.env.example` and the README's table are
written from it (`python -m taxi_assets.variables env-example|markdown`; a test keeps both in
step). A parser turns a variable's text into its value or raises `ValueError` saying what the
value must be; the settings put the variable's name in front (`PGPORT='abc': a TCP port number,
at least 1`).
"""

import json
import math
import os
import re
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import Field

from taxi_assets.download import (
    DEFAULT_SOURCE_URL,
    DEFAULT_TLC_URL,
    fetch_path,
    redact_url,
    unreadable_scheme,
)
from taxi_assets.partitions import FIRST_MONTH, LAST_RELEASE_MONTH
from taxi_assets.trip_csv import DEFAULT_MAX_ROWS

Parser = Callable[[str], object]
# The choices: typed, so that pydantic and Dagster's UI show the allowed values.
Warehouse = Literal["duckdb", "postgres", "bigquery"]
SourceKind = Literal["auto", "release", "tlc"]
ScheduleMonth = Literal["previous", "current"]

MAX_PORT = 65535
# Less, and DuckDB cannot even hold a load's first batches.
MIN_MEMORY_BYTES = 64_000_000
MAX_RETRY_DELAY_SECONDS = 3600
# Half of it is the first keepalive's wait, which Linux caps at 32767 s: an hour is plenty.
MAX_DEAD_CONNECTION_SECONDS = 3600
# BigQuery's rule for a dataset's name, GCS's for a bucket's.
DATASET_NAME = re.compile(r"[A-Za-z0-9_]{1,1024}")
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")

# Who reads a variable: this project's code (checked at start-up), or only another tool.
CODE, DBT, COMPOSE, GOOGLE = "taxi_assets", "dbt", "docker compose", "Google's libraries"


def any_text(text: str) -> str:
    """Any text: a host, a role, a password; the server judges it."""
    return text


def choice(*allowed: str, normalise: Callable[[str], str] = str) -> Parser:
    """One of `allowed`, the values of a `Literal` type."""

    def parse(text: str) -> str:
        value = normalise(text)
        if value not in allowed:
            raise ValueError(f"one of {', '.join(allowed)}")
        return value

    parse.allowed = allowed  # type: ignore[attr-defined]
    return parse


def whole_number(what: str, least: int, most: int | None = None) -> Parser:
    """A whole number from `least` to `most`, read as `dg.EnvVar.int` reads it (`int()`)."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = None
        if number is None or number < least:
            raise ValueError(f"{what}, at least {least}")
        if most is not None and number > most:
            raise ValueError(f"{what}, at most {most}")
        return number

    parse.whole_number = True  # type: ignore[attr-defined]
    return parse


def retry_delay(text: str) -> float:
    """Seconds, from 0 to an hour (no `nan`, no `inf`)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= MAX_RETRY_DELAY_SECONDS:
        raise ValueError(f"a number of seconds from 0 to {MAX_RETRY_DELAY_SECONDS}")
    return seconds


def time_zone(text: str) -> str:
    """An IANA time zone the schedules can run in (`Europe/Paris`, `UTC`)."""
    try:
        ZoneInfo(text)
    except (ValueError, KeyError, OSError):
        raise ValueError("an IANA time zone such as UTC or Europe/Paris") from None
    return text


def schema_name(text: str) -> str:
    """A schema name every tool can quote: dbt writes `"{name}"` without doubling a `"` in it
    (the loads would work, the models would not)."""
    if '"' in text:
        raise ValueError("a schema name without double quotes (dbt cannot quote one)")
    return text


def duckdb_path(text: str) -> str:
    """The DuckDB file's path (relative to the repository): not a directory's."""
    from taxi_assets.warehouses.duckdb import resolve_path

    if resolve_path(text).is_dir():
        raise ValueError("a file's path, not an existing directory")
    return text


def readable_from(local: str) -> Parser:
    """A URL or path the project can read from; a local one (a path, `file://`) must exist, as a
    `local` ("folder" or "file"): else every month would read as "not published"."""

    def parse(text: str) -> str:
        reason = unreadable_scheme(text)
        if reason is not None:
            raise ValueError(reason)
        if urlsplit(text).scheme.lower() not in ("", "file"):
            return text
        path = fetch_path(text)
        if not (path.is_dir() if local == "folder" else path.is_file()):
            raise ValueError(f"no such {local} on this machine ({path.resolve()})")
        return text

    return parse


def memory_size(text: str) -> str:
    """A size DuckDB's `memory_limit` takes (`512MB`, `2GB`, `1.5GiB`), enough for a load."""
    size = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B", text.strip(), re.IGNORECASE)
    if size is not None:
        number, unit, binary = size.groups()
        power = "KMGT".find(unit.upper()) + 1 if unit else 0
        enough = float(number) * (1024 if binary else 1000) ** power >= MIN_MEMORY_BYTES
    if size is None or not enough:
        raise ValueError("a size such as 512MB or 2GB, at least 64MB")
    return text


def dataset_name(text: str) -> str:
    if not DATASET_NAME.fullmatch(text):
        raise ValueError("a BigQuery dataset name (letters, digits, underscores)")
    return text


def bucket_name(text: str) -> str:
    if not BUCKET_NAME.fullmatch(text):
        raise ValueError(
            "a GCS bucket name (3 to 63 lowercase letters, digits, dashes, underscores, dots)"
        )
    return text


def http_url(text: str) -> str:
    if not re.fullmatch(r"https?://[^/\s]+/?\S*", text):
        raise ValueError("an http:// or https:// URL")
    return text


def key_file(text: str) -> str:
    if not os.path.isfile(text):
        raise ValueError("the path of a service-account key file")
    return text


def credentials_json(text: str) -> str:
    """A service-account key file's contents: a JSON object."""
    try:
        key = json.loads(text)
    except ValueError:
        key = None
    if not isinstance(key, dict):
        raise ValueError("a JSON object, a service-account key file's contents")
    return text


@dataclass(frozen=True)
class Variable:
    """One environment variable. Unset or empty, it has its `default` (None: no value)."""

    name: str
    default: str | None
    doc: str
    parse: Parser = any_text
    secret: bool = False
    read_by: str = CODE
    # Parsed only when that warehouse is chosen: only then does anything read the variable.
    only_for: str | None = None
    # A check beyond `parse` when that warehouse is chosen (a dbt schema is a dataset on BigQuery).
    check_on_bigquery: Parser | None = None
    # `.env.example`'s value, where it is not the default (and the doc says why).
    example: str | None = None
    # The comment above a group of variables in `.env.example` (the first of the group has it).
    section: str | None = None

    def value(self, text: str | None, warehouse: str = "duckdb") -> object:
        """The value of `text` (None or empty: the default), or a `ValueError` naming the
        variable and, unless secret, its text."""
        if not text:
            return self.parse(self.default) if self.default else self.default
        try:
            if warehouse == "bigquery" and self.check_on_bigquery is not None:
                self.check_on_bigquery(text)
            return self.parse(text) if self.only_for in (None, warehouse) else text
        except ValueError as error:
            raise ValueError(f"{self.name}={self.shown(text)}: {error}") from None

    def shown(self, text: str) -> str:
        """The text as a message may show it: a secret never, a URL without its query."""
        if self.secret:
            return "(not shown)"
        return repr(redact_url(text) if "://" in text else text)

    @property
    def is_choice(self) -> bool:
        """One of a few values (`choice`): a `Literal` resource field, which takes the value."""
        return hasattr(self.parse, "allowed")

    @property
    def is_whole_number(self) -> bool:
        """Bound as `dg.EnvVar.int`."""
        return hasattr(self.parse, "whole_number")

    @property
    def env_example_value(self) -> str:
        return (self.default or "") if self.example is None else self.example


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "TAXI_WAREHOUSE",
        "duckdb",
        "duckdb (an embedded file, no server), postgres or bigquery; the dbt target follows it.",
        choice(*get_args(Warehouse), normalise=lambda text: text.strip().lower()),
        section="The warehouse the loads and the dbt models write to.",
    ),
    Variable(
        "TAXI_DUCKDB_PATH",
        "data/taxi_rides_ny.duckdb",
        "The DuckDB file (relative paths: from the repository root), where the course's module-4 "
        "dbt project looks for it; not a directory.",
        duckdb_path,
        section="DuckDB (TAXI_WAREHOUSE=duckdb).",
    ),
    Variable(
        "TAXI_DUCKDB_SCHEMA",
        "prod",
        "The schema of the trip tables in the DuckDB file (module 4 reads taxi_rides_ny.prod).",
        schema_name,
    ),
    Variable(
        "TAXI_DUCKDB_MEMORY_LIMIT",
        "512MB",
        "DuckDB's memory for a load and its checks: past it, DuckDB spills to a folder beside the "
        "file, so a run's memory does not grow with the month (unset, DuckDB takes 80% of RAM).",
        memory_size,
    ),
    Variable(
        "TAXI_DBT_SCHEMA",
        "taxi_models",
        "Where this project's dbt models and seed go, on every warehouse (a dataset on BigQuery).",
        schema_name,
        check_on_bigquery=dataset_name,
    ),
    Variable(
        "PGHOST",
        "localhost",
        "The PostgreSQL warehouse's host, as for psql.",
        section="PostgreSQL (TAXI_WAREHOUSE=postgres), libpq style; docker compose's "
        "`warehouse` service uses them too.",
    ),
    Variable(
        "PGPORT",
        "5432",
        "Its port.",
        whole_number("a TCP port number", 1, MAX_PORT),
    ),
    Variable(
        "PGUSER",
        "postgres",
        "Its role (empty: postgres here, the compose stack's own role taxi, no superuser, there).",
        example="",
    ),
    Variable(
        "PGPASSWORD",
        None,
        "Its password: none works until you set one (docker compose refuses to start without it);"
        " never in logs, metadata or errors.",
        secret=True,
    ),
    Variable(
        "PGDATABASE",
        "postgres",
        "Its database (empty: postgres here, ny_taxi in the compose stack).",
        example="",
    ),
    Variable(
        "TAXI_PG_SCHEMA",
        "public",
        "The schema of the trip tables (created if missing); no double quote in it (dbt cannot "
        "quote one).",
        schema_name,
    ),
    Variable(
        "TAXI_PG_DEAD_CONNECTION_SECONDS",
        "60",
        "Seconds after which a silent PostgreSQL connection (a frozen network, a dead host) "
        "counts as dead on both ends: the load gives up and is retried, the server releases its "
        "locks.",
        whole_number("a whole number of seconds", 1, MAX_DEAD_CONNECTION_SECONDS),
    ),
    Variable(
        "GCP_PROJECT_ID",
        "",
        "BigQuery: the Google Cloud project.",
        only_for="bigquery",
        section="BigQuery + GCS (TAXI_WAREHOUSE=bigquery). Credentials: "
        "GOOGLE_APPLICATION_CREDENTIALS or GCP_CREDENTIALS_JSON.",
    ),
    Variable("GCP_LOCATION", "US", "BigQuery and GCS: the location.", only_for="bigquery"),
    Variable(
        "GCP_DATASET",
        "zoomcamp",
        "BigQuery: the dataset of the trip tables.",
        dataset_name,
        only_for="bigquery",
    ),
    Variable(
        "GCP_BUCKET_NAME",
        "",
        "GCS: the bucket the files are uploaded to.",
        bucket_name,
        only_for="bigquery",
    ),
    Variable(
        "GOOGLE_APPLICATION_CREDENTIALS",
        "",
        "A service-account key file's path (dbt signs in with it too).",
        key_file,
        only_for="bigquery",
    ),
    Variable(
        "GCP_CREDENTIALS_JSON",
        None,
        "The key file's contents instead (a secret: never logged).",
        credentials_json,
        secret=True,
        only_for="bigquery",
    ),
    Variable(
        "BIGQUERY_API_ENDPOINT",
        None,
        "BigQuery's endpoint, for an emulator only (unset: Google's).",
        http_url,
        only_for="bigquery",
    ),
    Variable(
        "STORAGE_EMULATOR_HOST",
        "",
        "The GCS emulator's address, for an emulator only.",
        read_by=GOOGLE,
    ),
    Variable(
        "DBT_BIGQUERY_METHOD",
        "oauth",
        "How dbt signs in to BigQuery; oauth-secrets (with a dummy token) against an emulator.",
        read_by=DBT,
    ),
    Variable("DBT_BIGQUERY_TOKEN", "", "dbt's token with oauth-secrets.", secret=True, read_by=DBT),
    Variable(
        "TAXI_SOURCE_URL",
        DEFAULT_SOURCE_URL,
        f"The DataTalksClub release's CSV files ({FIRST_MONTH} … {LAST_RELEASE_MONTH}): an "
        "https:// mirror, a "
        "file:// URL or a directory (offline: ${PWD}/sample_source).",
        readable_from("folder"),
        section="Where the monthly files come from.",
    ),
    Variable(
        "TAXI_TLC_URL",
        DEFAULT_TLC_URL,
        "The TLC's Parquet files (the months after the release): https://, file:// or a directory.",
        readable_from("folder"),
    ),
    Variable(
        "TAXI_SOURCE_KIND",
        "auto",
        f"Which files: auto (the release up to {LAST_RELEASE_MONTH}, the TLC's after it), "
        "release or tlc (that source every month).",
        choice(*get_args(SourceKind)),
    ),
    Variable(
        "TAXI_DOWNLOAD_MIN_RATE",
        "16384",
        "Bytes per second under which a download is given up, measured over a minute (retried "
        "like a dropped connection); 0: never.",
        whole_number("a whole number of bytes per second", 0),
    ),
    Variable(
        "TAXI_MAX_ROWS",
        str(DEFAULT_MAX_ROWS),
        "A file with more data lines (a Parquet file with more rows) is refused, not retried: far"
        " beyond any real month (the largest hold about 8 million).",
        whole_number("a whole number of rows", 1),
    ),
    Variable(
        "TAXI_SCHEDULE_TIMEZONE",
        "UTC",
        "The time zone of the monthly schedules (an IANA name).",
        time_zone,
        section="Schedules and retries.",
    ),
    Variable(
        "TAXI_SCHEDULE_MONTH",
        "previous",
        "The month a schedule tick loads: previous (just ended) or current (Kestra's choice).",
        choice(*get_args(ScheduleMonth)),
    ),
    Variable(
        "TAXI_RETRY_DELAY_SECONDS",
        "5",
        "The first delay of the load step's retries (then doubling), 0 to 3600 seconds.",
        retry_delay,
    ),
    Variable(
        "DAGSTER_PG_DB",
        "dagster",
        "Dagster's storage database, on the warehouse server.",
        read_by=COMPOSE,
        section="docker compose only.",
    ),
    Variable(
        "PUBLISH_ADDRESS",
        "127.0.0.1",
        "The host address the stack's ports are published on: this machine only. 0.0.0.0 opens "
        "the warehouse, pgAdmin and Dagster's UI to the network (the UI has no login: anyone "
        "who reaches it can launch runs).",
        read_by=COMPOSE,
    ),
    Variable("DAGSTER_PORT", "3000", "The host port of the UI.", read_by=COMPOSE),
    Variable("WAREHOUSE_PORT", "5432", "The host port of the warehouse.", read_by=COMPOSE),
    Variable(
        "PGADMIN_PORT", "8085", "The host port of pgAdmin (its compose profile).", read_by=COMPOSE
    ),
    Variable("PGADMIN_DEFAULT_EMAIL", "admin@admin.com", "pgAdmin's login.", read_by=COMPOSE),
    Variable(
        "PGADMIN_DEFAULT_PASSWORD",
        "",
        "pgAdmin's password (empty: PGPASSWORD's value).",
        secret=True,
        read_by=COMPOSE,
    ),
    Variable(
        "PRODUCTS_URL",
        "https://dummyjson.com/products",
        "The getting-started group's products: a URL, a file:// URL or a path (offline: "
        "${PWD}/sample_source/products.json).",
        readable_from("file"),
        section="The getting-started group (the Kestra course's first flow).",
    ),
)
BY_NAME = {variable.name: variable for variable in VARIABLES}
# What this project's code reads (and checks at start-up); the others are other tools'.
READ_BY_CODE = tuple(variable.name for variable in VARIABLES if variable.read_by == CODE)


def variable_field(name: str) -> Any:
    """A resource field set from a variable: its default and description are the table's."""
    variable = BY_NAME[name]
    return Field(default=variable.value(None), description=f"{variable.doc} ({name})")


ENV_EXAMPLE_HEAD = """\
# Every variable the project reads, written from taxi_assets/variables.py (`python -m
# taxi_assets.variables env-example > .env.example`). Copy to .env: every dagster/dg command run
# from this folder and docker compose load it. `make` adds one more line to .env, the project's
# Dagster home:
#   DAGSTER_HOME=${DAGSTER_HOME:-<this folder>/.dagster_home}
# Each line reads NAME=${NAME:-value}: a variable you export wins over the file (for one command:
# `TAXI_SOURCE_URL=$PWD/sample_source make demo`); a plain NAME=value line wins over the shell.
"""


def comment(text: str) -> list[str]:
    return textwrap.wrap(text, 97, initial_indent="# ", subsequent_indent="# ")


def env_example() -> str:
    """`.env.example`: every variable, its doc and its line `NAME=${NAME:-value}`."""
    lines = ENV_EXAMPLE_HEAD.splitlines()
    for variable in VARIABLES:
        if variable.section:
            lines += ["", *comment(variable.section)]
        lines += comment(variable.doc)
        lines.append(f"{variable.name}=${{{variable.name}:-{variable.env_example_value}}}")
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    """The README's table: variable, default, what it does."""
    rows = ["| Variable | Default | What it does |", "|---|---|---|"]
    for variable in VARIABLES:
        default = f"`{variable.default}`" if variable.default else "(none)"
        if variable.example is not None and variable.example != (variable.default or ""):
            default += " (empty in `.env.example`)"
        doc = (
            variable.doc
            if variable.read_by == CODE
            else f"{variable.doc} Read by {variable.read_by}."
        )
        rows.append(f"| `{variable.name}` | {default} | {doc} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    outputs = {"env-example": env_example, "markdown": markdown_table}
    if len(sys.argv) != 2 or sys.argv[1] not in outputs:
        sys.exit(f"usage: python -m taxi_assets.variables {'|'.join(outputs)}")
    sys.stdout.write(outputs[sys.argv[1]]())
