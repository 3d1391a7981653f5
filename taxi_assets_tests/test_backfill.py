"""Backfills launched as the UI launches them (GraphQL `launchPartitionBackfill`) on a real
`dagster dev`: the daemon queues the runs, the pool throttles them, Postgres gets the rows."""

import http.server
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
from filelock import FileLock

from taxi_assets.assets import TRIPS
from taxi_assets.backfill import DagsterServer, follow
from taxi_assets.errors import ServerUnavailable
from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import GREEN
from taxi_assets.warehouses.duckdb import DuckDBWarehouse
from taxi_assets_testkit.dagster_dev import DAGSTER, DagsterDev, load_step_windows, max_overlap
from taxi_assets_testkit.local_servers import serve_directory
from taxi_assets_testkit.synthetic import write_month
from taxi_assets_tests.databases import Db, admin_connection, postgres_warehouse_at, warehouse_env
from taxi_assets_tests.helpers import fingerprint, rows_per_file
from taxi_assets_tests.mirror import Mirror

# Six months: enough for four loads at once, and CI time stays in bounds (a 12-month backfill
# is what benchmarks/backfill_benchmark.py runs).
MONTHS = [TaxiPartition("green", f"2019-{m:02d}") for m in range(1, 7)]
ROWS = {p.filename: 300 + 25 * i for i, p in enumerate(MONTHS)}
ASSETS = ["taxi_trips_staging", "taxi_trips"]
POOL = "taxi_postgres"


pytestmark = pytest.mark.dagster_dev


@pytest.fixture(scope="module")
def backfill_env(test_database, http_root, tmp_path_factory):
    mirror = Mirror.on(http_root)
    for i, partition in enumerate(MONTHS):
        write_month(mirror.directory, GREEN, partition, 300 + 25 * i)
    schema_name = f"t_{uuid.uuid4().hex[:10]}"
    home = tmp_path_factory.mktemp("dagster_home")
    warehouse = postgres_warehouse_at(test_database, schema_name)
    env = {"TAXI_SOURCE_URL": mirror.url, **warehouse_env(warehouse)}
    with (
        DagsterDev(home, env, home / "dagster_dev.log") as server,
        admin_connection(test_database) as db,
    ):
        db.execute(f'CREATE SCHEMA "{schema_name}"')
        db.execute(f'SET search_path = "{schema_name}"')
        yield server, db, mirror
        db.execute(f'DROP SCHEMA "{schema_name}" CASCADE')


def _backfill(server: DagsterDev, pool_limit: int):
    server.set_pool_limit(POOL, pool_limit)
    backfill_id = server.launch_backfill([str(p.key) for p in MONTHS], ASSETS)
    status = server.wait_for_backfill(backfill_id)
    runs = server.wait_for_runs(backfill_id, count=len(MONTHS))
    return backfill_id, status, server.instance(), runs


@pytest.fixture(scope="module")
def serial_backfill(backfill_env):
    server, db, _ = backfill_env
    backfill_id, status, instance, runs = _backfill(server, pool_limit=1)
    return backfill_id, status, instance, runs, fingerprint(db, "green_tripdata")


def test_a_backfill_loads_every_file(backfill_env, serial_backfill):
    _, db, _ = backfill_env
    backfill_id, status, instance, runs, _ = serial_backfill

    assert status == "COMPLETED_SUCCESS"
    assert len(runs) == len(MONTHS)
    assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert sorted(run.tags["dagster/partition"] for run in runs) == sorted(
        str(p.key) for p in MONTHS
    )
    assert {run.tags["taxi"] for run in runs} == {"green"}
    assert rows_per_file(db, "green_tripdata") == ROWS
    materializations = instance.fetch_materializations(TRIPS, limit=100).records
    assert {r.asset_materialization.metadata["launched_by"].value for r in materializations} == {
        f"backfill {backfill_id}"
    }


def test_pool_limit_one_runs_loads_one_at_a_time(serial_backfill):
    _, _, instance, runs, _ = serial_backfill

    windows = load_step_windows(instance, [run.run_id for run in runs])

    assert len(windows) == len(MONTHS)
    assert max_overlap(windows) == 1


def cli_backfill(server: DagsterDev, partitions: list[TaxiPartition]) -> str:
    """`dagster job backfill`, as docs/operations.md runs it: the runs go straight to the run
    queue (no wait for the backfill daemon's 30-second loop); the backfill's id."""
    keys = ",".join(str(p.key) for p in partitions)
    done = subprocess.run(
        [str(DAGSTER), "job", "backfill", "-j", "taxi_trips_job", "--partitions", keys,
         "--noprompt"],
        env=server.env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return re.search(r"Launched backfill job `(\w+)`", done.stdout + done.stderr).group(1)


def test_the_readme_cli_backfill_queues_runs_for_the_daemon(backfill_env, serial_backfill):
    server, db, _ = backfill_env
    before = fingerprint(db, "green_tripdata")
    keys = ",".join(str(p.key) for p in MONTHS[:3])

    backfill_id = cli_backfill(server, MONTHS[:3])
    runs = server.wait_for_runs(backfill_id, count=3)
    # The runs belong to the server's code location (`make dev` names it `taxi_assets`).
    assert {run.remote_job_origin.location_name for run in runs} == {"taxi_assets"}
    assert sorted(run.tags["dagster/partition"] for run in runs) == keys.split(",")
    assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert fingerprint(db, "green_tripdata") == before  # the same files, loaded again


def test_a_duckdb_backfill_waits_for_the_file_instead_of_failing(http_root, tmp_path_factory):
    """Four runs at once on one DuckDB file: while the test holds the file, all four wait for it
    (and say so); once it is free, each loads in turn and none fails."""
    mirror = Mirror.on(http_root)
    months = MONTHS[:4]
    for i, partition in enumerate(months):
        write_month(mirror.directory, GREEN, partition, 200 + 10 * i)
    home = tmp_path_factory.mktemp("duck_home")
    warehouse = DuckDBWarehouse(path=str(home / "taxi.duckdb"))
    env = {"TAXI_SOURCE_URL": mirror.url, **warehouse_env(warehouse)}
    with DagsterDev(home / "dagster", env, home / "dagster_dev.log") as server:
        server.set_pool_limit("taxi_duckdb", 4)
        with FileLock(f"{warehouse.database_file}.lock"):  # another process has the file
            backfill_id = cli_backfill(server, months)
            waiting = runs_saying(server.instance(), backfill_id, "waiting for the DuckDB file", 4)
        runs = server.wait_for_runs(backfill_id, count=4)

    assert len(waiting) == 4
    assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert rows_per_file(Db(warehouse), "green_tripdata") == {
        p.filename: 200 + 10 * i for i, p in enumerate(months)
    }


def runs_saying(
    instance: dg.DagsterInstance, backfill_id: str, words: str, count: int, timeout: float = 300
) -> set[str]:
    """The backfill's runs whose log says `words`, once `count` of them do."""
    deadline = time.monotonic() + timeout
    while True:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        saying = {
            run.run_id
            for run in runs
            if any(words in (entry.user_message or "") for entry in instance.all_logs(run.run_id))
        }
        if len(saying) >= count:
            return saying
        assert time.monotonic() < deadline, f"{len(saying)} of {count} runs said {words!r}"
        time.sleep(1)


def test_a_terminal_backfill_in_parallel_gives_the_serial_table_and_shows_its_progress(
    backfill_env, serial_backfill
):
    """`python -m taxi_assets.backfill`, as the README runs it against `make dev`, with room for
    four loads at once: loads overlap, and the table is the serial backfill's; a month the
    mirror lacks fails alone and is named."""
    server, db, mirror = backfill_env
    serial_table = serial_backfill[-1]
    db.execute("TRUNCATE green_tripdata")  # (dbt's views may stand on it)

    def backfill(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "taxi_assets.backfill", *args],
            env=server.env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    server.set_pool_limit(POOL, 4)
    mirror.hold_until(2)  # the first two downloads wait for each other: two loads overlap
    try:
        # 2019-07 is not published at the mirror: that partition fails, the others load.
        done = backfill("2019-01", "2019-07", "--taxi", "green", "--url", server.url)
    finally:
        mirror.hold_until(0)
    no_server = backfill("2019-04", "2019-06", "--url", "http://127.0.0.1:9")
    bad_month = backfill("2019-13", "2019-14", "--url", server.url)

    assert done.returncode == 1, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    backfill_id = re.match(r"backfill (\w+): 7 partitions queued on ", lines[0]).group(1)
    assert any(re.fullmatch(rf"backfill {backfill_id}: \d of 7 partitions loaded, .*s\)", line)
               for line in lines[1:-2])  # fmt: skip
    assert lines[-2] == (
        f"backfill {backfill_id} completed with failures: 6 of 7 partitions loaded, 0 running, "
        "1 failed"
    )
    assert re.fullmatch(rf"  2019-07\|green failed: {server.url}/runs/[0-9a-f-]{{36}}", lines[-1])
    runs = server.wait_for_runs(backfill_id, count=7)
    assert {run.tags["dagster/partition"]: run.status for run in runs} == {
        **{str(p.key): dg.DagsterRunStatus.SUCCESS for p in MONTHS},
        "2019-07|green": dg.DagsterRunStatus.FAILURE,
    }
    loaded = [run.run_id for run in runs if run.status == dg.DagsterRunStatus.SUCCESS]
    assert max_overlap(load_step_windows(server.instance(), loaded)) >= 2
    assert fingerprint(db, "green_tripdata") == serial_table
    assert no_server.returncode == 2
    assert no_server.stderr.startswith("no Dagster server answers at http://127.0.0.1:9 ")
    assert bad_month.returncode == 2
    assert bad_month.stderr.strip() == "'2019-13' is not a month: YYYY-MM, e.g. 2019-01"


TERMINATE_RUN = """mutation Terminate($runId: String!) {
  terminateRun(runId: $runId) { __typename }
}"""


def test_terminate_in_the_ui_stops_a_load_without_a_retry(backfill_env, serial_backfill):
    """The UI's Terminate (GraphQL `terminateRun`) on a run that is downloading: the run ends
    canceled, its step is not started again by the retry policy, nothing is loaded."""
    server, db, mirror = backfill_env
    before = fingerprint(db, "green_tripdata")
    partition = TaxiPartition("green", "2020-06")
    write_month(mirror.directory, GREEN, partition, 100)
    mirror.slow_down(120)
    try:
        backfill_id = cli_backfill(server, [partition])
        instance = server.instance()
        deadline = time.monotonic() + 120
        while not (run_id := _step_started(instance, backfill_id)):
            assert time.monotonic() < deadline, "the run did not start its load step"
            time.sleep(0.5)
        time.sleep(1.0)
        assert server.graphql(TERMINATE_RUN, {"runId": run_id})["terminateRun"]
        [run] = server.wait_for_runs(backfill_id, count=1, timeout=120)
    finally:
        mirror.slow_down(0)

    assert run.status == dg.DagsterRunStatus.CANCELED
    events = {entry.dagster_event_type for entry in instance.all_logs(run.run_id)}
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in events
    assert dg.DagsterEventType.STEP_RESTARTED not in events
    assert fingerprint(db, "green_tripdata") == before


def _step_started(instance: dg.DagsterInstance, backfill_id: str) -> str | None:
    """The id of the backfill's run once its load step has started."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    for run in runs:
        events = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
        if events:
            return run.run_id
    return None


def test_the_facts_follow_the_backfills(backfill_env, serial_backfill):
    """The dbt location's sensor (on by default) saw the loads and rebuilt their months' facts
    in runs of consecutive months, through the daemon like any run."""
    server, db, _ = backfill_env
    instance = server.instance()
    deadline = time.monotonic() + 180
    while True:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="taxi_dbt_job"))
        done = [run for run in runs if run.status == dg.DagsterRunStatus.SUCCESS]
        if done or time.monotonic() > deadline:
            break
        time.sleep(2)

    assert done, [run.status for run in runs]
    assert not [run for run in runs if run.status == dg.DagsterRunStatus.FAILURE]
    ranges = {
        (run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/partition"))
        for run in done
    }
    assert ("2019-01", None) in ranges  # one run for the backfill's months
    facts = db.execute(
        f'SELECT count(*) FROM "{server.env["TAXI_DBT_SCHEMA"]}".fact_trips'
    ).fetchone()[0]
    assert facts > 0


class RestartingServer(http.server.SimpleHTTPRequestHandler):
    """A Dagster server whose storage restarts: HTTP 503 to the first `failures` requests, then
    a completed backfill of one partition."""

    failures = 2
    requests = 0

    def do_POST(self) -> None:
        type(self).requests += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.requests <= self.failures:
            self.send_response(503)
            self.end_headers()
            return
        status = {"status": "COMPLETED_SUCCESS", "assetBackfillData": {"assetBackfillStatuses": [
            {"assetKey": {"path": ["taxi_trips"]}, "numPartitionsTargeted": 1,
             "numPartitionsInProgress": 0, "numPartitionsMaterialized": 1,
             "numPartitionsFailed": 0}]}}  # fmt: skip
        status["__typename"] = "PartitionBackfill"
        body = {"data": {"partitionBackfillOrError": status, "runsOrError": {"results": []}}}
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(("failures", "patience", "follows"), [(2, 60.0, True), (99, 0.3, False)])
def test_following_a_backfill_waits_for_a_server_that_restarts(capsys, failures, patience, follows):
    """A server error while following (the server's storage restarting) is waited for, up to
    `patience` seconds; then the follower gives up, saying why."""
    handler = type("Handler", (RestartingServer,), {"failures": failures})
    server, url = serve_directory(Path("."), handler)
    try:
        if follows:
            assert follow(DagsterServer(url), "b1", every=0.05, patience=patience)
        else:
            with pytest.raises(ServerUnavailable, match="answered HTTP 503"):
                follow(DagsterServer(url), "b1", every=0.05, patience=patience)
    finally:
        server.shutdown()
        server.server_close()

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"backfill b1: {url} answered HTTP 503; asking again"
    if follows:
        assert lines[-1] == "backfill b1 completed: 1 of 1 partitions loaded, 0 running, 0 failed"


def test_a_backfill_cut_off_by_closing_make_dev_completes_when_it_is_back(
    http_root, tmp_path_factory
):
    """`make dev` closed while a backfill's load waits for the DuckDB file: its run ends with
    the server, and once the server is back the run is retried and the backfill completes by
    itself, the month loaded once."""
    mirror = Mirror.on(http_root)
    month = MONTHS[0]
    write_month(mirror.directory, GREEN, month, 250)
    home = tmp_path_factory.mktemp("closed_home")
    warehouse = DuckDBWarehouse(path=str(home / "taxi.duckdb"))
    env = {"TAXI_SOURCE_URL": mirror.url, **warehouse_env(warehouse)}
    with (
        FileLock(f"{warehouse.database_file}.lock"),  # the load waits for the file
        DagsterDev(home / "dagster", env, home / "dev_1.log") as server,
    ):
        backfill_id = server.launch_backfill([str(month.key)], ASSETS)  # as the UI does
        runs_saying(server.instance(), backfill_id, "waiting for the DuckDB file", 1)
    with DagsterDev(home / "dagster", env, home / "dev_2.log") as server:
        status = server.wait_for_backfill(backfill_id, timeout=300)
        runs = server.instance().get_runs(
            filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id})
        )

    assert status == "COMPLETED_SUCCESS"
    assert sorted(run.status.value for run in runs) == ["FAILURE", "SUCCESS"]
    assert rows_per_file(Db(warehouse), "green_tripdata") == {month.filename: 250}
