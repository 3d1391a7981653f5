"""The run launcher of `make dev` and the compose stack (`dagster.yaml`): Dagster's default one,
which starts each run in a process of the code server, plus a health check, so that run
monitoring can tell a run whose process is gone (its daemon restarted, its server stopped) from
one that is running. Such a run is marked failed and, as a run whose process died, retried once
(`run_retries`): a backfill goes on by itself once the daemon is back."""

import json

import grpc
from dagster import DagsterRun, DefaultRunLauncher, deserialize_value

from taxi_assets.dagster_internals import (
    GRPC_INFO_TAG,
    CheckRunHealthResult,
    DagsterGrpcClient,
    GetCurrentRunsResult,
    WorkerStatus,
    dagster_api_pb2,
)

# How long the code server has to answer: a busy one is taken as alive, never as gone.
ANSWER_SECONDS = 10


class TaxiRunLauncher(DefaultRunLauncher):
    """`DefaultRunLauncher`, whose runs' health the run monitoring daemon can check."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        """Running while the code server that started the run still runs it; gone when that
        server no longer answers (its container or `dagster dev` restarted) or no longer
        has it. Anything uncertain counts as running."""
        info = json.loads(run.tags.get(GRPC_INFO_TAG) or "null")
        if not info:  # not started by a code server (a terminal's run): not ours to judge
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        client = DagsterGrpcClient(
            host=info.get("host"),
            port=info.get("port"),
            socket=info.get("socket"),
            use_ssl=bool(info.get("use_ssl")),
        )
        try:
            answer = client._query(  # (`get_current_runs` takes no timeout)
                "GetCurrentRuns", dagster_api_pb2.Empty, timeout=ANSWER_SECONDS
            )
        except Exception as error:  # Dagster wraps gRPC's errors in its own
            if _server_is_gone(error):
                return CheckRunHealthResult(WorkerStatus.NOT_FOUND, "its code server is gone")
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        current = deserialize_value(answer.serialized_current_runs, GetCurrentRunsResult)
        if run.run_id in current.current_runs:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.NOT_FOUND, "its code server no longer runs it")


def _server_is_gone(error: BaseException | None) -> bool:
    """Whether gRPC said that nothing listens there (not that it was slow)."""
    while error is not None:
        if isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNAVAILABLE:
            return True
        error = error.__cause__ or error.__context__
    return False
