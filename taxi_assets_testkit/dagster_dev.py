"""A real `dagster dev` (webserver + daemon) for tests and benchmarks, driven over GraphQL the
way the UI drives it, and stopped by process group when done."""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from taxi_assets.backfill import DagsterServer
from taxi_assets.errors import ServerError
from taxi_assets_testkit.local_servers import free_port

ROOT = Path(__file__).resolve().parent.parent
DAGSTER = Path(sys.executable).parent / "dagster"

MATERIALIZED_PARTITIONS = """
query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { partitionStats { numMaterialized } }
  }
}"""
SET_POOL_LIMIT = """
mutation($pool: String!, $limit: Int!) { setConcurrencyLimit(concurrencyKey: $pool, limit: $limit) }
"""
LOCATIONS = """
{ workspaceOrError { ... on Workspace { locationEntries {
    loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


class DagsterDev:
    """`dagster dev` in `project` (the repository by default) with `home` as its Dagster home:
    set as DAGSTER_HOME (with this repository's dagster.yaml), or, with `home_from_env_file`,
    found as `make dev` finds it, through the project's `.env`."""

    def __init__(
        self,
        home: Path,
        env: dict[str, str],
        log: Path,
        project: Path = ROOT,
        home_from_env_file: bool = False,
    ):
        self.home = home
        self.project = project
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = DagsterServer(self.url)
        self.env = {**os.environ, **env}
        if home_from_env_file:
            self.env.pop("DAGSTER_HOME", None)
        else:
            home.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
            self.env["DAGSTER_HOME"] = str(home)
        self._log = log
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "DagsterDev":
        # As `make dev` starts it: both code locations of workspace.yaml, the load location under
        # the name the CLI's commands give it from [tool.dagster] (`taxi_assets`).
        command = [
            str(DAGSTER), "dev", "-w", str(ROOT / "workspace.yaml"),
            "-h", "127.0.0.1", "-p", str(self.port),
        ]  # fmt: skip
        with self._log.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=self.project, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() reaches every child
            )  # fmt: skip
        try:
            self._wait_until_loaded(self.process)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL to whatever is left."""
        if self.process is None:
            return
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=grace)
                os.killpg(self.process.pid, 0)  # children may outlive the leader
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        self.process = None

    def _wait_until_loaded(self, process: subprocess.Popen, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert process.poll() is None, self._log.read_text()[-3000:]
            try:
                entries = self.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
            except (ServerError, KeyError):
                entries = []
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                for entry in entries:
                    location = entry["locationOrLoadError"]
                    assert location["__typename"] == "RepositoryLocation", location
                return
            time.sleep(0.5)
        raise TimeoutError(
            f"dagster dev did not load in {timeout}s: {self._log.read_text()[-3000:]}"
        )

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return self.server.graphql(query, variables)

    def materialized_partitions(self, asset: str) -> int:
        """What the UI's asset page counts as materialised."""
        node = self.graphql(MATERIALIZED_PARTITIONS, {"path": [asset]})["assetNodeOrError"]
        return node["partitionStats"]["numMaterialized"]

    def set_pool_limit(self, pool: str, limit: int) -> None:
        assert self.graphql(SET_POOL_LIMIT, {"pool": pool, "limit": limit})["setConcurrencyLimit"]

    def launch_backfill(self, partition_keys: list[str], assets: list[str]) -> str:
        """What the UI's "Launch backfill" sends for a partition selection of these assets."""
        return self.server.launch_backfill(partition_keys, assets)

    def wait_for_backfill(self, backfill_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.server.backfill_status(backfill_id)
            if status.finished:
                return status.status
            time.sleep(1)
        raise TimeoutError(f"backfill {backfill_id} still running after {timeout}s")

    def wait_for_runs(
        self, backfill_id: str, count: int, timeout: float = 600
    ) -> Sequence[dg.DagsterRun]:
        """The backfill's runs once `count` of them exist and all have finished."""
        instance = self.instance()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            if len(runs) >= count and all(run.is_finished for run in runs):
                return runs
            time.sleep(1)
        raise TimeoutError(f"the runs of backfill {backfill_id} did not finish in {timeout}s")

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))


def load_step_windows(
    instance: dg.DagsterInstance, run_ids: list[str]
) -> list[tuple[float, float]]:
    """(start, end) of each run's `load_taxi_trips` step, from the event log."""
    windows = []
    for run_id in run_ids:
        times = {}
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            if (
                event
                and event.step_key == "load_taxi_trips"
                and event.event_type_value
                in (
                    "STEP_START",
                    "STEP_SUCCESS",
                )
            ):
                times[event.event_type_value] = entry.timestamp
        windows.append((times["STEP_START"], times["STEP_SUCCESS"]))
    return windows


def max_overlap(windows: list[tuple[float, float]]) -> int:
    """The largest number of windows open at one moment."""
    edges = sorted([(start, 1) for start, _ in windows] + [(end, -1) for _, end in windows])
    open_now = peak = 0
    for _, change in edges:
        open_now += change
        peak = max(peak, open_now)
    return peak
