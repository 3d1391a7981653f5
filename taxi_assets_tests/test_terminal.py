"""What a user sees in a terminal: a wrong partition key or a failed load as its cause in a few
lines (no traceback, no stack trace: the run's events keep them), and commands that say what they
need. Real CLI subprocesses, from the project folder."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from taxi_assets_testkit.dagster_dev import ROOT

BIN = Path(sys.executable).parent
REVERSED_KEY = "'green|2019-01' is not a partition key: month first, then colour (2019-01|green)"
WRONG_KEY_COMMANDS = {
    "dg launch --job": ["dg", "launch", "--job", "taxi_trips_job", "--partition"],
    "dg launch --assets": ["dg", "launch", "--assets", "taxi_trips_staging,taxi_trips",
                           "--partition"],
    "dagster asset materialize": ["dagster", "asset", "materialize", "-m",
                                  "taxi_assets.definitions", "--select", "taxi_trips",
                                  "--partition"],
}  # fmt: skip


def _env(tmp_path: Path) -> dict[str, str]:
    """A Dagster home of the test's own (with the project's dagster.yaml), the offline source,
    a DuckDB file of the test's own."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    return {
        **{name: value for name, value in os.environ.items() if not name.startswith("TAXI_")},
        "DAGSTER_HOME": str(home),
        "TAXI_SOURCE_URL": str(ROOT / "sample_source"),
        "TAXI_DUCKDB_PATH": str(tmp_path / "taxi.duckdb"),
    }


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("command", WRONG_KEY_COMMANDS.values(), ids=WRONG_KEY_COMMANDS.keys())
def test_a_reversed_partition_key_is_one_line_saying_the_right_form(command, tmp_path):
    done = _run([*command, "green|2019-01"], _env(tmp_path))

    assert done.returncode == 1
    # (`dagster asset materialize` first warns that `dg launch` supersedes it, in two lines.)
    assert done.stderr.splitlines()[-1] == REVERSED_KEY, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) <= 3


def test_a_key_outside_the_months_says_which_months_exist(tmp_path):
    done = _run([*WRONG_KEY_COMMANDS["dg launch --job"], "2099-01|green"], _env(tmp_path))

    assert done.returncode == 1
    last = dg.MonthlyPartitionsDefinition(start_date="2019-01", fmt="%Y-%m", end_offset=1)
    assert done.stderr == (
        f"'2099-01|green' is not a partition key: months run from 2019-01 to "
        f"{last.get_last_partition_key()}\n"
    )


def test_a_failed_load_is_its_cause_in_a_line_and_the_run_keeps_the_stack_trace(tmp_path):
    """A month the source does not have (the offline source has 2020-10 only)."""
    env = _env(tmp_path)

    done = _run([*WRONG_KEY_COMMANDS["dg launch --job"], "2019-01|green"], env)

    assert done.returncode == 1
    lines = done.stderr.splitlines()
    cause = (
        "green_tripdata_2019-01.csv.gz is not published: no such file "
        f"{ROOT}/sample_source/green/green_tripdata_2019-01.csv.gz"
    )
    event = r"\S+ \S+ \+0000 - dagster - ERROR - taxi_trips_job - (?P<run>[0-9a-f-]{36}) - "
    assert len(lines) == 4, done.stderr[-3000:]
    step_failure = re.fullmatch(
        rf'{event}\d+ - load_taxi_trips - STEP_FAILURE - Execution of step "load_taxi_trips" '
        rf"failed: {re.escape(cause)}",
        lines[0],
    )
    assert step_failure, lines[0]
    run_id = step_failure["run"]
    assert re.fullmatch(
        rf"{event}taxi_trip_checks - Dependencies for step taxi_trip_checks failed: "
        r"\['load_taxi_trips'\]. Not executing.",
        lines[1],
    )
    assert re.fullmatch(
        rf'{event}\d+ - RUN_FAILURE - Execution of run for "taxi_trips_job" failed. Steps '
        rf"failed: \['load_taxi_trips'\]: {re.escape(cause)}",
        lines[2],
    )
    assert lines[3] == f"Error: Run {run_id} resulted in failure."
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    failures = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.STEP_FAILURE
    ).records
    error = failures[0].event_log_entry.dagster_event.event_specific_data.error
    assert cause in error.message
    assert any("load_partition" in frame for frame in error.stack)  # what the run page shows


def test_any_other_error_keeps_its_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "import taxi_assets.definitions; raise RuntimeError('a bug')"],
        cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert done.returncode == 1
    assert done.stderr.startswith("Traceback (most recent call last):")
    assert done.stderr.endswith("RuntimeError: a bug\n")


def test_summary_without_a_partition_says_what_it_needs(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "taxi_assets.summary"],
        cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "usage: python -m taxi_assets.summary [-h] partition",
        "python -m taxi_assets.summary: error: the following arguments are required: partition",
    ]


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("green|2019-01", "2019-03",
         "'green|2019-01' is not a month: YYYY-MM, e.g. 2019-01; the colour goes in --taxi"),
        ("2019-01", "2019-13", "'2019-13' is not a month: YYYY-MM, e.g. 2019-01"),
        ("2018-12", "2019-03", "'2018-12': months start at 2019-01"),
    ],
)  # fmt: skip
def test_backfill_names_the_month_the_user_typed(first, last, message, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "taxi_assets.backfill", first, last, "--url", "http://127.0.0.1:9"],
        cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert done.returncode == 2
    assert done.stderr == f"{message}\n"


def test_the_install_recipe_prints_no_editable_install_warning(tmp_path):
    """The recipe's own commands (`make -n`), into a new venv: pip shows setuptools'
    "Editable installation" block unless the recipe silences it. (--no-deps: the project only.)"""
    venv = tmp_path / "venv"
    dry_run = subprocess.run(
        ["make", "-n", f"VENV={venv}", f"{venv}/bin/.installed"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    pip_lines = [line for line in dry_run.stdout.splitlines() if "/bin/pip install" in line]
    assert len(pip_lines) == 2  # pip itself, then the project

    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for line in pip_lines:
        done = subprocess.run(
            f"{line} --no-deps", shell=True, cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Editable installation" not in done.stderr, done.stderr


def test_ctrl_c_during_a_dbt_build_is_its_cause_in_a_line(tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) while dbt runs: the run fails with one
    line saying so, and nothing of this project or dagster-dbt prints a traceback."""
    command = [str(BIN / "dg"), "launch", "-m", "taxi_assets.dbt_definitions", "--job",
               "taxi_dbt_job", "--partition", "2020-10"]  # fmt: skip
    log = tmp_path / "out.log"
    with log.open("w") as out:
        launched = subprocess.Popen(
            command, cwd=ROOT, env=_env(tmp_path), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's process group, for the Ctrl-C
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while "Running dbt command" not in log.read_text():
        assert launched.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(launched.pid, signal.SIGINT)
    launched.wait(timeout=120)

    output = log.read_text()
    assert launched.returncode != 0
    assert "dbt build interrupted (Ctrl-C, SIGTERM or Terminate); not retried" in output
    frames = [line for line in output.splitlines() if line.lstrip().startswith('File "')]
    assert not [frame for frame in frames if "taxi_assets" in frame or "dagster_dbt" in frame]
