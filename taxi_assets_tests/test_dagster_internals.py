"""Every private Dagster name the project uses still imports (what a Dagster upgrade checks
first), and a code location does not import the heavy ones it never uses."""

import subprocess
import sys

import pytest

from taxi_assets import dagster_internals

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", dagster_internals.__all__)
def test_each_private_dagster_name_imports(name):
    assert getattr(dagster_internals, name) is not None


def test_loading_the_code_location_leaves_grpc_and_the_ui_snapshots_out():
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, taxi_assets.definitions, taxi_assets.dagster_internals as d; "
            "print(sorted(m for m in d.LAZY.values() if m in sys.modules))",
        ],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip

    assert loaded.stdout.strip().splitlines()[-1] == "[]"
