"""The private Dagster names this project uses, each imported here and nowhere else.

Dagster keeps no promise about names under `dagster._…` or in `dagster_shared` from one release
to the next: a Dagster upgrade must check that each still imports and still means what is said
beside it (`test_dagster_internals.py` imports each, then the tests named there).
"""

import importlib
from typing import TYPE_CHECKING

# The config schema `configured` gives a definition; its `parent_def` holds the settings it fixed
# (resources.operator_settings; test_trust_boundaries.py).
from dagster._core.definitions.definition_config_schema import ConfiguredDefinitionConfigSchema

# What the run launcher's health check answers (run_launcher.py; test_stack.py).
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus

# The attribute of a log record that holds its Dagster event, where the terminal hooks find a
# failed step's error to print it in a line (terminal.py; test_terminal.py).
from dagster._core.log_manager import LOG_RECORD_METADATA_ATTR

# ASSET_PARTITION_RANGE_START_TAG, ASSET_PARTITION_RANGE_END_TAG: the tags of a run over a range
# of partitions; the dbt job's runs carry them to build a range of months in one run, as a
# single-run backfill does (dbt_models.py; test_dbt.py, test_dbt_manifest.py,
# test_dbt_sensor.py).
# GRPC_INFO_TAG: where a run started by a code server says which server that is; the run
# launcher asks that server whether it still runs the run, and an interrupted load tells a run
# whose server went away from one terminated in the UI (assets.py, run_launcher.py;
# test_stack.py).
# RETRY_ON_ASSET_OR_OP_FAILURE_TAG: set to "true" on such a run, so that `run_retries` retries
# it although a step failed (assets.py; test_stack.py).
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    GRPC_INFO_TAG,
    RETRY_ON_ASSET_OR_OP_FAILURE_TAG,
)

# Parse a dbt project in one process while the others wait for its manifest, as dagster-dbt's
# own preparer does (dbt_models.py; test_dbt_manifest.py).
from dagster._utils import run_with_concurrent_update_guard

# The type of a run's error in a Dagster event (terminal.py).
from dagster_shared.error import SerializableErrorInfo

# Imported when first used (`__getattr__`), not with this module: they bring gRPC and the UI's
# snapshots (about 12 MiB and 80 ms), which a run or a command loading the code location never
# uses.
# - How the run launcher asks a code server for its current runs, with a timeout: through
#   `DagsterGrpcClient._query`, as `get_current_runs` takes none (run_launcher.py;
#   test_stack.py): DagsterGrpcClient, GetCurrentRunsResult, dagster_api_pb2.
# - A repository's snapshot as the UI receives it, to measure what the code location sends
#   (test_trust_boundaries.py): RepositorySnap.
LAZY = {
    "DagsterGrpcClient": "dagster._grpc.client",
    "GetCurrentRunsResult": "dagster._grpc.types",
    "dagster_api_pb2": "dagster._grpc.__generated__",
    "RepositorySnap": "dagster._core.remote_representation.external_data",
}
if TYPE_CHECKING:
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._grpc.__generated__ import dagster_api_pb2
    from dagster._grpc.client import DagsterGrpcClient
    from dagster._grpc.types import GetCurrentRunsResult


def __getattr__(name: str) -> object:
    """A name of `LAZY`, imported now."""
    if name not in LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(LAZY[name])
    return getattr(module, name, None) or importlib.import_module(f"{LAZY[name]}.{name}")


__all__ = [
    "ASSET_PARTITION_RANGE_END_TAG",
    "ASSET_PARTITION_RANGE_START_TAG",
    "GRPC_INFO_TAG",
    "LOG_RECORD_METADATA_ATTR",
    "RETRY_ON_ASSET_OR_OP_FAILURE_TAG",
    "CheckRunHealthResult",
    "ConfiguredDefinitionConfigSchema",
    "DagsterGrpcClient",
    "GetCurrentRunsResult",
    "RepositorySnap",
    "SerializableErrorInfo",
    "WorkerStatus",
    "dagster_api_pb2",
    "run_with_concurrent_update_guard",
]
