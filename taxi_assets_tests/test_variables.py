"""The table of variables (`variables.py`) is where configuration comes from: the shipped
`.env.example` is written from it, the settings parse every variable the code reads from it, and
the resources' defaults are its defaults."""

import re
from pathlib import Path

import dagster as dg
import pytest

from taxi_assets.errors import SettingError
from taxi_assets.resources import TaxiSource, source_resource
from taxi_assets.settings import Settings
from taxi_assets.variables import (
    BY_NAME,
    READ_BY_CODE,
    VARIABLES,
    any_text,
    env_example,
    markdown_table,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_is_written_from_the_table():
    assert (ROOT / ".env.example").read_text() == env_example(), (
        "run: python -m taxi_assets.variables env-example > .env.example"
    )


def test_the_code_reads_no_variable_outside_the_table():
    """`os.environ`/`getenv` appear only in the settings (and dbt's own manifest key)."""
    readers = {
        path.name
        for path in (ROOT / "taxi_assets").rglob("*.py")
        if re.search(r"os\.environ|getenv\(", path.read_text())
    }
    assert readers <= {"settings.py", "dbt_models.py", "dagster_home.py", "variables.py"}


def test_unset_and_empty_variables_take_the_tables_defaults():
    empty = Settings.from_env({name: "" for name in READ_BY_CODE})

    assert empty == Settings()
    assert empty.variables_set == frozenset()
    assert Settings().values["PGPORT"] == 5432
    assert Settings().values["TAXI_RETRY_DELAY_SECONDS"] == 5.0


def test_a_set_variable_is_bound_by_name_and_a_choice_by_value():
    settings = Settings.from_env(
        {"TAXI_DOWNLOAD_MIN_RATE": "0", "TAXI_SOURCE_KIND": "tlc", "TAXI_TLC_URL": "https://m/t"}
    )

    source = source_resource(settings)

    assert settings.bound("TAXI_DOWNLOAD_MIN_RATE") == dg.EnvVar.int("TAXI_DOWNLOAD_MIN_RATE")
    assert settings.bound("TAXI_TLC_URL") == dg.EnvVar("TAXI_TLC_URL")
    assert source.kind == "tlc"  # a Literal field: the value, checked at start-up
    default_rate = BY_NAME["TAXI_DOWNLOAD_MIN_RATE"].value(None)
    assert source_resource(Settings()).min_bytes_per_second == default_rate == 16384


def test_resource_defaults_and_descriptions_are_the_tables():
    fields = TaxiSource.model_fields
    assert fields["max_rows"].default == BY_NAME["TAXI_MAX_ROWS"].value(None)
    assert "(TAXI_SOURCE_KIND)" in fields["kind"].description


def test_a_secrets_bad_value_is_never_shown():
    checked = [v for v in VARIABLES if v.secret and v.parse is not any_text]

    assert [v.name for v in checked] == ["GCP_CREDENTIALS_JSON"]  # the others take any text
    for variable in checked:
        with pytest.raises(ValueError) as raised:
            variable.value("[s3cr3t]", "bigquery")
        assert "s3cr3t" not in str(raised.value)


def test_a_bad_choice_names_the_allowed_values():
    with pytest.raises(SettingError, match=r"TAXI_SCHEDULE_MONTH='next': one of previous, current"):
        Settings.from_env({"TAXI_SCHEDULE_MONTH": "next"})


def test_the_readmes_table_is_written_from_the_table():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("python -m taxi_assets.variables markdown -->\n")
    table = readme[start:].split("\n", 1)[1].split("<!-- end of the table -->")[0]

    assert table == markdown_table(), "run: python -m taxi_assets.variables markdown"


def test_duckdbs_memory_limit_is_a_size_duckdb_takes_and_enough_for_a_load():
    limit = BY_NAME["TAXI_DUCKDB_MEMORY_LIMIT"]

    assert [limit.value(size) for size in ("512MB", "2GB", "1.5GiB", "64 mb")] == [
        "512MB", "2GB", "1.5GiB", "64 mb"
    ]  # fmt: skip
    for size in ("lots", "80%", "1b", "63MB", "2 GBs"):
        with pytest.raises(ValueError, match="at least 64MB"):
            limit.value(size)
