"""What the UI shows: the code location loads, with partitions, assets, checks and the job."""

import contextlib
import http.server
import os
import pkgutil
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import yaml

from taxi_assets.assets import SOURCE_FILE, STAGING, TRIPS
from taxi_assets.checks import taxi_trip_checks_op
from taxi_assets.definitions import defs
from taxi_assets.download import MinimumRate, fetch, redact_url
from taxi_assets.errors import SourceError, SourceUnavailable
from taxi_assets.partitions import TaxiPartition, taxi_month_partitions
from taxi_assets.resources import TaxiSource
from taxi_assets.settings import Settings
from taxi_assets.trip_schema import GREEN, TRIP_SCHEMAS, YELLOW
from taxi_assets_testkit.local_servers import free_port
from taxi_assets_testkit.synthetic import write_month
from taxi_assets_tests.helpers import rows_per_file
from taxi_assets_tests.runs import materialize_load
from taxi_assets_tests.samples import real_sample

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


def test_partition_keys_read_month_then_colour_and_reach_the_current_month():
    keys = taxi_month_partitions.get_partition_keys()
    this_month = date.today().strftime("%Y-%m")
    assert keys[:2] == ["2019-01|yellow", "2019-01|green"]
    assert {f"{this_month}|green", f"{this_month}|yellow"} <= set(keys)
    assert "2021-07|green" in keys


def test_partition_names():
    december = TaxiPartition.from_key("2020-12|yellow")
    assert december.filename == "yellow_tripdata_2020-12.csv"
    assert december.source_filename == "yellow_tripdata_2020-12.csv.gz"
    assert (december.month_start, december.month_end) == (date(2020, 12, 1), date(2021, 1, 1))
    assert str(december.key) == "2020-12|yellow"


@pytest.mark.parametrize(
    ("schema", "sample", "columns"),
    [
        (YELLOW, "yellow_tripdata_2021-01_head22792.csv", 18),
        (GREEN, "green_tripdata_2020-10.csv.gz", 20),
    ],
)
def test_schemas_match_the_real_headers(schema, sample, columns):
    import gzip

    opener = gzip.open if sample.endswith(".gz") else open
    with opener(real_sample(sample), "rt") as file:
        header = file.readline().strip().split(",")
    assert list(schema.header) == header
    assert len(header) == columns
    assert TRIP_SCHEMAS[schema.taxi] is schema


def test_urls_lose_credentials_and_query_strings():
    url = "https://user:pa55@mirror.example:8443/a/green/f.csv.gz?sig=abc"
    assert redact_url(url) == "https://mirror.example:8443/a/green/f.csv.gz"


def test_a_failed_download_names_no_query_string_or_password(tmp_path):
    """The HTTP library's own message quotes the URL it tried: not its secrets."""
    url = "http://reader:pa55w0rd@127.0.0.1:9/green/f.csv.gz?sig=s3cr3t-token"
    with pytest.raises(SourceUnavailable) as failed:
        fetch(url, tmp_path, retries=0, timeout_seconds=5)
    message = str(failed.value)
    assert message.startswith("could not download http://127.0.0.1:9/green/f.csv.gz: ")
    assert "s3cr3t-token" not in message and "pa55w0rd" not in message
    assert "Max retries exceeded" in message  # the library's text is still there


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


@contextlib.contextmanager
def serving(do_get):
    """A real HTTP server on 127.0.0.1 answering every GET with `do_get(handler)`; its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            do_get(self)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_source_that_sends_a_byte_now_and_then_is_given_up(tmp_path):
    """Each byte resets the read timeout: only the minimum rate ends such a download."""

    def drip(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        for _ in range(200):  # 20 bytes/s for at most 10 s
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.05)

    started = time.monotonic()
    with (
        serving(drip) as base,
        pytest.raises(SourceUnavailable, match="arrives too slowly") as failed,
    ):
        fetch(
            f"{base}/green/f.csv.gz", tmp_path, retries=0,
            min_rate=MinimumRate(1_000, window_seconds=1.0),
        )  # fmt: skip

    assert time.monotonic() - started < 5
    assert "under the minimum of 1,000 bytes/s (TAXI_DOWNLOAD_MIN_RATE" in str(failed.value)


def test_a_download_that_fails_after_a_redirect_names_no_query_string(tmp_path):
    """A mirror that redirects to a signed URL (as S3 does), which then cannot be reached: the
    error names neither the original query string nor the target's signature."""
    target = f"http://127.0.0.1:{free_port()}/bucket/f.csv.gz?X-Amz-Credential=AKIA-secret&X-Amz-Signature=5ig-secret"

    def redirect(handler):
        handler.send_response(302)
        handler.send_header("Location", target)
        handler.end_headers()

    with serving(redirect) as base, pytest.raises(SourceUnavailable) as failed:
        fetch(f"{base}/green/f.csv.gz?token=t0ken-secret", tmp_path, retries=0, timeout_seconds=5)

    message = str(failed.value)
    assert "Max retries exceeded" in message
    assert not any(secret in message for secret in ("AKIA-secret", "5ig-secret", "t0ken-secret"))


@pytest.mark.parametrize("form", ["file-url", "directory"])
def test_a_local_directory_is_a_source_too(tmp_path, warehouse, db, form):
    write_month(tmp_path, GREEN, TaxiPartition("green", "2019-01"), 42)
    base = tmp_path.as_uri() if form == "file-url" else str(tmp_path)

    result = materialize_load("2019-01|green", TaxiSource(base_url=base), warehouse)

    assert result.success
    assert rows_per_file(db, "green_tripdata") == {"green_tripdata_2019-01.csv": 42}
