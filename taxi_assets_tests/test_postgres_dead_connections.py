"""A dead client's connection ends in bounded time on both ends (TAXI_PG_DEAD_CONNECTION_SECONDS):
a load whose network froze mid-COPY gives up and its retry loads the month; the server releases
a killed client's advisory lock. The network freezes for real: packets vanish in a router
between here and a PostgreSQL server of the test's own (`frozen_network.py`)."""

import gzip
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import GREEN
from taxi_assets.warehouses.postgres import PostgresWarehouse
from taxi_assets_testkit.synthetic import write_month
from taxi_assets_tests.databases import replaced
from taxi_assets_tests.frozen_network import FrozenNetwork, cannot_run
from taxi_assets_tests.helpers import under_ci
from taxi_assets_tests.runs import materialize_load

JAN = TaxiPartition("green", "2019-01")
DEAD_SECONDS = 3  # TAXI_PG_DEAD_CONNECTION_SECONDS, short for the test


@pytest.fixture(scope="module")
def network() -> Iterator[FrozenNetwork]:
    """Skipped where it cannot be built (no root, no `ip`/`tc`); under CI a failure."""
    reason = cannot_run()
    if reason:
        if under_ci():
            pytest.fail(f"the dead-connection tests cannot run: {reason}")
        pytest.skip(reason)
    network = FrozenNetwork()
    yield network
    network.close()


@pytest.fixture
def warehouse_behind(network: FrozenNetwork) -> Iterator[PostgresWarehouse]:
    """The warehouse resource on the server behind the router, a schema of the test's own."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    yield PostgresWarehouse(
        host=network.host, port=network.port, user="postgres", database="postgres",
        sql_schema=schema,
        dead_connection_seconds=DEAD_SECONDS,
    )  # fmt: skip
    with network.observer() as observer:
        observer.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _held_advisory_locks(network: FrozenNetwork, pid: int) -> int:
    with network.observer() as observer:
        return observer.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", [pid]
        ).fetchone()[0]


# A client that holds a month's advisory lock and waits: the project's load (its connection
# settings), or a plain libpq connection (the server's defaults), printing its port and pid.
HOLDER = """
import json, sys, time
import psycopg
from taxi_assets.partitions import TaxiPartition
from taxi_assets.settings import Settings
from taxi_assets.trip_schema import GREEN
from taxi_assets.warehouses.postgres import PostgresWarehouse
warehouse = PostgresWarehouse(**json.loads(sys.argv[1]))
if sys.argv[2] == "project":
    with warehouse.open_partition(GREEN, TaxiPartition("green", "2019-01")) as load:
        print(*load.connection.execute("SELECT inet_client_port(), pg_backend_pid()").fetchone())
        sys.stdout.flush()
        time.sleep(3600)
with psycopg.connect(host=warehouse.host, port=warehouse.port, user="postgres",
                     dbname="postgres") as plain:
    print(*plain.execute("SELECT inet_client_port(), pg_backend_pid(), pg_advisory_lock(1)")
          .fetchone()[:2])
    sys.stdout.flush()
    time.sleep(3600)
"""


def _holder(warehouse: PostgresWarehouse, kind: str) -> tuple[subprocess.Popen, int, int]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, json.dumps(warehouse.model_dump()), kind],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    port, pid = (int(value) for value in process.stdout.readline().split())
    return process, port, pid


def test_a_killed_clients_lock_is_released_within_the_dead_connection_time(
    network, warehouse_behind
):
    """The issue's case: the network froze, the client was killed (its FIN never arrived). The
    project's session ends within TAXI_PG_DEAD_CONNECTION_SECONDS; a session with the server's
    defaults keeps its lock (for the two hours of the system's keepalive)."""
    project, project_port, project_pid = _holder(warehouse_behind, "project")
    plain, plain_port, plain_pid = _holder(warehouse_behind, "plain")
    time.sleep(0.5)  # every acknowledgement delivered: the sessions are idle
    network.freeze([project_port, plain_port])
    for process in (project, plain):
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed = time.monotonic()

    while _held_advisory_locks(network, project_pid) and time.monotonic() - killed < 30:
        time.sleep(0.2)
    released_after = time.monotonic() - killed
    plain_still_holds = _held_advisory_locks(network, plain_pid)
    with network.observer() as observer:
        observer.execute("SELECT pg_terminate_backend(%s)", [plain_pid])

    assert released_after < DEAD_SECONDS + 3
    assert plain_still_holds


def _repeated_month(directory: Path, rows: int, times: int) -> int:
    """A month of `rows` generated rows written `times` over (identical trips are allowed): a
    file big enough that its COPY lasts a while, made in a fraction of the time."""
    write_month(directory, GREEN, JAN, rows, seed=7)
    path = directory / "green" / JAN.source_filename
    header, _, lines = gzip.decompress(path.read_bytes()).partition(b"\n")
    path.write_bytes(gzip.compress(header + b"\n" + lines * times, compresslevel=1))
    return rows * times


def _ports_when_copying(network: FrozenNetwork, deadline: float) -> list[int]:
    """The client ports of the load's sessions, once one of them is in a COPY."""
    with network.observer() as observer:
        while time.monotonic() < deadline:
            sessions = observer.execute(
                "SELECT client_port, query FROM pg_stat_activity "
                "WHERE application_name = 'taxi_assets' AND client_port IS NOT NULL"
            ).fetchall()
            if any(query.startswith("COPY") for _, query in sessions):
                return [port for port, _ in sessions]
            time.sleep(0.01)
    raise AssertionError("the load never started its COPY")


def test_a_load_frozen_mid_copy_gives_up_and_its_retry_loads_the_month(
    network, warehouse_behind, mirror
):
    rows = _repeated_month(mirror.directory, 5_000, 60)
    results: list[dg.ExecuteInProcessResult] = []
    instance = dg.DagsterInstance.ephemeral()
    run = threading.Thread(
        target=lambda: results.append(
            materialize_load(
                JAN, mirror.source(), warehouse_behind, raise_on_error=False, instance=instance
            )
        ),
        daemon=True,
    )
    run.start()
    frozen_ports = _ports_when_copying(network, time.monotonic() + 60)
    network.freeze(frozen_ports)
    frozen = time.time()  # (the events' clock)
    run.join(timeout=120)

    assert not run.is_alive()
    (result,) = results
    retried = [
        entry.timestamp
        for entry in instance.all_logs(result.run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    ]
    reasons = [
        str(e.step_failure_data.error.message) for e in result.all_events if e.is_step_failure
    ]
    assert result.success and len(retried) == 1, (retried, reasons)
    # The writers' COPY and then the main session's clean-up each wait one dead-connection
    # time; the retry then finds the month's lock released by the server.
    assert retried[0] - frozen < 2 * DEAD_SECONDS + 10
    with network.observer() as observer:
        count = observer.execute(
            f'SELECT count(*) FROM "{warehouse_behind.sql_schema}".green_tripdata'
        ).fetchone()[0]
        left = observer.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE client_port = ANY(%s)", [frozen_ports]
        ).fetchone()[0]
    assert (count, left) == (rows, 0)


def test_the_sessions_carry_the_dead_connection_settings(postgres_warehouse):
    """On the tests' own server too: every session of the project has them."""
    with replaced(postgres_warehouse, dead_connection_seconds=60).connect() as connection:
        shown = connection.execute(
            "SELECT current_setting('tcp_keepalives_idle'), "
            "current_setting('tcp_keepalives_interval'), current_setting('tcp_keepalives_count'), "
            "current_setting('tcp_user_timeout'), "
            "current_setting('idle_in_transaction_session_timeout')"
        ).fetchone()
    assert shown == ("30", "10", "3", "60000", "1min")
