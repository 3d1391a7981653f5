"""`cp .env.example .env`, as the README says, in a fresh copy of the project: what a user exports
for one command still wins over the file, and a command that lost the project's Dagster home
says so."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from taxi_assets.dagster_home import NO_HOME
from taxi_assets_tests.compose_stack import repository_copy

DG = Path(sys.executable).parent / "dg"
LAUNCH = [str(DG), "launch", "--job", "taxi_trips_job", "--partition", "2020-10|green"]


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the project, with `.env` copied from `.env.example` as shipped."""
    project = repository_copy(tmp_path / "project")
    shutil.copyfile(project / ".env.example", project / ".env")
    return project


def shell(**exported: str) -> dict[str, str]:
    """The user's shell: none of the project's variables, but these."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "CI")
    return {name: os.environ[name] for name in keep if name in os.environ} | exported


def test_an_exported_variable_wins_over_the_copied_env_file(project, tmp_path):
    """The README's offline form, `TAXI_SOURCE_URL=$PWD/sample_source …`, after `cp .env.example
    .env`: the month comes from the shipped folder, not the release the file names."""
    home = tmp_path / "home"
    home.mkdir()
    database = tmp_path / "exported.duckdb"
    env = shell(
        TAXI_SOURCE_URL=str(project / "sample_source"),
        TAXI_DUCKDB_PATH=str(database),
        DAGSTER_HOME=str(home),
    )

    launched = subprocess.run(
        LAUNCH, cwd=project, env=env, capture_output=True, text=True, timeout=300
    )

    assert launched.returncode == 0, launched.stderr[-3000:]
    with duckdb.connect(str(database), read_only=True) as connection:
        [(rows,)] = connection.execute("SELECT count(*) FROM prod.green_tripdata").fetchall()
    assert rows == 95_120
    assert len(dg.DagsterInstance.from_config(str(home)).get_runs()) == 1


def test_a_command_that_lost_the_project_home_says_so_until_make_home(project):
    env = shell(TAXI_SOURCE_URL=str(project / "sample_source"))

    lost = subprocess.run(LAUNCH, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    subprocess.run(["make", "home"], cwd=project, env=env, check=True, capture_output=True)
    found = subprocess.run(
        LAUNCH, cwd=project, env=env, capture_output=True, text=True, timeout=300
    )

    assert lost.returncode == 0, lost.stderr[-3000:]
    assert NO_HOME in lost.stderr
    assert found.returncode == 0, found.stderr[-3000:]
    assert NO_HOME not in found.stderr
    instance = dg.DagsterInstance.from_config(str(project / ".dagster_home"))
    assert [run.tags["dagster/partition"] for run in instance.get_runs()] == ["2020-10|green"]
