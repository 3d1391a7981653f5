"""What the UI shows: the code location loads, with partitions, assets, checks and the job."""

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from taxi_assets.assets import SOURCE_FILE, STAGING, TRIPS
from taxi_assets.checks import taxi_trip_checks_op
from taxi_assets.definitions import defs
from taxi_assets.errors import SourceError
from taxi_assets.partitions import TaxiPartition
from taxi_assets.resources import TaxiSource
from taxi_assets.settings import Settings
from taxi_assets.trip_schema import GREEN
from taxi_assets_testkit.synthetic import write_month
from taxi_assets_tests.helpers import rows_per_file
from taxi_assets_tests.runs import materialize_load

ROOT = Path(__file__).resolve().parent.parent


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("taxi_trips_job")


def test_the_dbt_models_are_a_location_of_their_own_downstream_of_the_trips():
    """What loads trips imports no dbt; the dbt location's models read `taxi_trips`."""
    from taxi_assets.dbt_definitions import defs as dbt_defs

    dg.Definitions.validate_loadable(dbt_defs)
    assert dbt_defs.resolve_job_def("taxi_dbt_job")
    graph = dbt_defs.resolve_asset_graph()
    staging_models = [
        key for key in graph.materializable_asset_keys if key.path[0].startswith("stg_")
    ]
    assert staging_models and all(TRIPS in graph.get(key).parent_keys for key in staging_models)
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, taxi_assets.definitions; print('dbt' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert imported.stdout.strip() == "False"
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"]
    assert [(entry["python_module"]["location_name"], entry["python_module"]["module_name"])
            for entry in workspace] == [("taxi_assets", "taxi_assets.definitions"),
                                        ("taxi_dbt", "taxi_assets.dbt_definitions")]  # fmt: skip


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )


def test_the_settings_are_read_when_the_definitions_are_built_not_on_import():
    """Every module imports whatever the environment says (they read no setting); building the
    load location then stops at the first bad setting, naming it."""
    modules = [
        module.name
        for module in pkgutil.walk_packages([str(ROOT / "taxi_assets")], "taxi_assets.")
        if module.name not in ("taxi_assets.definitions", "taxi_assets.dbt_definitions")
    ]
    nonsense = {"TAXI_WAREHOUSE": "oracle", "TAXI_RETRY_DELAY_SECONDS": "soon",
                "TAXI_SCHEDULE_MONTH": "next"}  # fmt: skip

    imported = _python(f"import {', '.join(modules)}", {**os.environ, **nonsense})
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert "taxi_assets.dbt_models" in modules and "taxi_assets.assets" in modules
    for name, says in (
        ("TAXI_WAREHOUSE", "TAXI_WAREHOUSE='oracle': one of duckdb, postgres, bigquery"),
        (
            "TAXI_RETRY_DELAY_SECONDS",
            "TAXI_RETRY_DELAY_SECONDS='soon': a number of seconds from 0 to 3600",
        ),
        ("TAXI_SCHEDULE_MONTH", "TAXI_SCHEDULE_MONTH='next': one of previous, current"),
    ):
        loaded = _python("import taxi_assets.definitions", {**os.environ, name: nonsense[name]})
        assert loaded.stderr.strip() == says  # one line, no traceback


@pytest.mark.parametrize(
    "command",
    [
        ["dg", "launch", "--job", "taxi_trips_job", "--partition", "2020-10|green"],
        ["dg", "launch", "-m", "taxi_assets.dbt_definitions", "--job", "taxi_dbt_job",
         "--partition", "2020-10"],  # as `make demo` builds the facts
        ["dagster", "asset", "materialize", "-m", "taxi_assets.definitions",
         "--select", "taxi_trips", "--partition", "2020-10|green"],
    ],
)  # fmt: skip
def test_a_bad_setting_is_one_line_in_a_terminal(tmp_path, command):
    """No traceback around it: what is wrong, in which variable, what it must be."""
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "TAXI_RETRY_DELAY_SECONDS": "nan"}
    executable = str(Path(sys.executable).parent / command[0])

    ran = subprocess.run(
        [executable, *command[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert ran.returncode != 0
    said = [line for line in ran.stderr.splitlines() if "SupersessionWarning" not in line]
    assert said[-1:] == ["TAXI_RETRY_DELAY_SECONDS='nan': a number of seconds from 0 to 3600"]
    assert "Traceback" not in ran.stderr, ran.stderr[-3000:]


def test_loading_both_code_locations_leaves_the_environment_as_it_was():
    """Not even PATH or TAXI_DUCKDB_PATH for dbt: the dbt location finds this environment's dbt
    without PATH (as `.venv/bin/dagster dev` runs it) and dbt reads the DuckDB path itself."""
    env = {**os.environ, "PATH": "/usr/bin:/bin", "TAXI_DUCKDB_PATH": "data/elsewhere.duckdb"}
    code = (
        "import os, dagster as dg; before = dict(os.environ); "
        "import taxi_assets.definitions as a, taxi_assets.dbt_definitions as b; "
        "dg.Definitions.validate_loadable(a.defs); dg.Definitions.validate_loadable(b.defs); "
        "print(dict(os.environ) == before)"
    )

    loaded = _python(code, env)

    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip() == "True"


def test_assets_are_described_grouped_and_kinded():
    graph = defs.resolve_asset_graph()
    for key in (SOURCE_FILE, STAGING, TRIPS):
        node = graph.get(key)
        assert node.description
        assert node.group_name == "taxi"
        assert node.kinds
    assert graph.get(TRIPS).kinds == {Settings.from_env().warehouse}
    assert graph.get(TRIPS).parent_keys == {STAGING}
    assert graph.get(STAGING).parent_keys == {SOURCE_FILE}
    check_names = {key.name for key in graph.asset_check_keys if key.asset_key == TRIPS}
    assert check_names == {
        "rows_match_source",
        "filename_not_null",
        "ids_in_other_files",
        "rows_against_previous_load",
    }
    blocking = {spec.name for spec in taxi_trip_checks_op.check_specs if spec.blocking}
    assert blocking == {"rows_match_source", "filename_not_null"}


@pytest.mark.parametrize(
    "url", ["ftp://mirror.example/nyc", "s3://bucket/nyc", "htp://typo.example"]
)
def test_a_source_url_of_another_kind_is_a_setting_error(tmp_path, url):
    """Not "not published" (the schedules would skip every month): said when the definitions
    load, and by the load and the published-probe too."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import taxi_assets.definitions"],
        env={**os.environ, "TAXI_SOURCE_URL": url}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    source = TaxiSource(base_url=url)
    partition = TaxiPartition("green", "2019-01")

    assert loaded.returncode != 0
    scheme = url.split(":")[0]
    assert loaded.stderr.strip() == (
        f"TAXI_SOURCE_URL={url!r}: {scheme}:// is not a source this project reads; "
        "use https://, http://, file:// or a directory"
    )
    for attempt in (
        lambda: source.fetch(partition, tmp_path),
        lambda: source.is_published(partition),
    ):
        with pytest.raises(SourceError, match=f"{scheme}:// is not a source this project reads"):
            attempt()


@pytest.mark.parametrize("form", ["file-url", "directory"])
def test_a_local_directory_is_a_source_too(tmp_path, warehouse, db, form):
    write_month(tmp_path, GREEN, TaxiPartition("green", "2019-01"), 42)
    base = tmp_path.as_uri() if form == "file-url" else str(tmp_path)

    result = materialize_load("2019-01|green", TaxiSource(base_url=base), warehouse)

    assert result.success
    assert rows_per_file(db, "green_tripdata") == {"green_tripdata_2019-01.csv": 42}
