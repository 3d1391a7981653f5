"""What a run may choose and what it may not: runs of the code location's own job, built from the
operator's settings (the environment), with run config and tags as the UI's launchpad sends them.
A run chooses its month and options; where data comes from or goes to is the operator's."""

import shutil
import socket
import threading
import uuid
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster_graphql.client.query import LAUNCH_PIPELINE_EXECUTION_MUTATION
from dagster_graphql.test.utils import (
    define_out_of_process_context,
    execute_dagster_graphql,
    infer_job_selector,
)

from taxi_assets.dagster_internals import RepositorySnap
from taxi_assets.definitions import build_definitions
from taxi_assets.partitions import TaxiPartition
from taxi_assets.settings import Settings
from taxi_assets.trip_schema import GREEN
from taxi_assets.warehouses.base import TaxiWarehouse
from taxi_assets.warehouses.postgres import PostgresWarehouse
from taxi_assets_testkit.local_servers import serve_directory
from taxi_assets_testkit.synthetic import write_month
from taxi_assets_tests.helpers import failure_message, fingerprint
from taxi_assets_tests.mirror import Mirror, SourceHandler

JAN = TaxiPartition("green", "2019-01")
TABLE = "green_tripdata"

pytestmark = pytest.mark.every_warehouse


def _warehouse_variables(warehouse: TaxiWarehouse) -> dict[str, str]:
    """The variables an operator sets for the test's warehouse."""
    if isinstance(warehouse, PostgresWarehouse):
        variables = {
            "PGHOST": warehouse.host,
            "PGPORT": str(warehouse.port),
            "PGUSER": warehouse.user,
            "PGDATABASE": warehouse.database,
            "TAXI_PG_SCHEMA": warehouse.sql_schema,
        }
        return variables | ({"PGPASSWORD": warehouse.password} if warehouse.password else {})
    return {"TAXI_DUCKDB_PATH": warehouse.path, "TAXI_DUCKDB_SCHEMA": warehouse.sql_schema}


@pytest.fixture
def job(monkeypatch, warehouse, mirror) -> dg.JobDefinition:
    """`taxi_trips_job` of the code location, built from the operator's environment."""
    variables = _warehouse_variables(warehouse) | {
        "TAXI_SOURCE_URL": mirror.url,
        "TAXI_TLC_URL": mirror.url,
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env(
        variables | {"TAXI_WAREHOUSE": warehouse.kind, "TAXI_RETRY_DELAY_SECONDS": "0.2"}
    )
    return build_definitions(settings).resolve_job_def("taxi_trips_job")


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


@pytest.fixture
def other_mirror(tmp_path) -> Iterator[Mirror]:
    """A second HTTP server, somewhere a run's config might point the source to."""
    root = tmp_path / "other_server"
    server, url = serve_directory(root, SourceHandler)
    name = uuid.uuid4().hex[:10]
    (root / name).mkdir(parents=True)
    yield Mirror(root / name, f"{url}/{name}")
    server.shutdown()
    server.server_close()


class _Listener:
    """A plain TCP server on 127.0.0.1 that counts the connections it gets and closes them."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()


@pytest.fixture
def listener() -> Iterator[_Listener]:
    server = _Listener()
    yield server
    server.socket.close()


def _loaded_january(job, instance, mirror, db) -> tuple[int, str | None]:
    """January loaded by the operator's settings; the table's fingerprint."""
    write_month(mirror.directory, GREEN, JAN, 400)
    assert job.execute_in_process(partition_key=str(JAN.key), instance=instance).success
    return fingerprint(db, TABLE)


def _launch(job, instance, resources: dict) -> None:
    """A run of January with the launchpad's options and `resources` in its config."""
    job.execute_in_process(
        partition_key=str(JAN.key),
        instance=instance,
        run_config={
            "ops": {"load_taxi_trips": {"config": {"allow_shrink": True}}},
            "resources": resources,
        },
        raise_on_error=False,
    )


def test_a_run_cannot_point_the_source_elsewhere(job, instance, mirror, other_mirror, db):
    before = _loaded_january(job, instance, mirror, db)
    write_month(other_mirror.directory, GREEN, JAN, 1, seed=1)

    with pytest.raises(dg.DagsterInvalidConfigError, match="base_url"):
        _launch(job, instance, {"source": {"config": {"base_url": other_mirror.url}}})

    assert fingerprint(db, TABLE) == before
    assert other_mirror.hits(JAN) == 0


def test_a_run_cannot_point_the_warehouse_elsewhere(
    job, instance, mirror, db, warehouse, listener, tmp_path
):
    before = _loaded_january(job, instance, mirror, db)
    elsewhere = tmp_path / "elsewhere.duckdb"
    if isinstance(warehouse, PostgresWarehouse):
        config = {"host": "127.0.0.1", "port": listener.port}
    else:
        config = {"path": str(elsewhere)}

    with pytest.raises(dg.DagsterInvalidConfigError, match=next(iter(config))):
        _launch(job, instance, {"warehouse": {"config": config}})

    assert fingerprint(db, TABLE) == before
    assert listener.connections == 0
    assert not elsewhere.exists()


def _launch_with_key(job, instance, key: str) -> dg.ExecuteInProcessResult:
    """A run whose tags name `key` as its partition, as a launch with run tags does."""
    month, _, taxi = key.partition("|")
    tags = {"dagster/partition": key, "dagster/partition/month": month}
    return job.execute_in_process(
        instance=instance, tags=tags | {"dagster/partition/taxi": taxi}, raise_on_error=False
    )


def _mirror_requests(mirror: Mirror) -> int:
    return sum(
        count
        for path, count in SourceHandler.hits.items()
        if path.startswith(f"/{mirror.directory.name}/")
    )


@pytest.mark.parametrize(
    "key", ["2019-1|green", "2019-01|green'; DROP TABLE green_tripdata; --", "../x|green"]
)
def test_a_key_that_is_not_a_partition_fails_at_once(job, instance, mirror, db, key):
    before = _loaded_january(job, instance, mirror, db)
    requests = _mirror_requests(mirror)
    # The file `2019-1|green` would ask for, so that only the check can keep it out.
    january = mirror.path(JAN)
    shutil.copyfile(january, january.with_name("green_tripdata_2019-1.csv.gz"))

    result = _launch_with_key(job, instance, key)

    assert not result.success
    message = failure_message(result).removeprefix("dagster._core.definitions.events.Failure: ")
    assert message.strip() == f"{key!r} is not a partition key: MONTH|COLOUR, e.g. 2019-01|green"
    assert not any(
        event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for event in result.all_events
    )
    assert fingerprint(db, TABLE) == before
    assert _mirror_requests(mirror) == requests


def test_the_ui_names_the_variables_never_their_values(monkeypatch):
    """What the UI reads of the code location (its snapshot) names PGPASSWORD, never the
    password; the launchpad's config schema offers no resource settings to set."""
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv("PGPASSWORD", secret)
    settings = Settings.from_env({"TAXI_WAREHOUSE": "postgres", "PGPASSWORD": secret})
    repository = build_definitions(settings).get_repository_def()

    snapshot = dg.serialize_value(RepositorySnap.from_def(repository))

    assert secret not in snapshot
    assert "password (PGPASSWORD)" in repository.get_top_level_resources()["warehouse"].description
    job = repository.get_job("taxi_trips_job")
    with pytest.raises(dg.DagsterInvalidConfigError, match="host"):
        dg.validate_run_config(job, {"resources": {"warehouse": {"config": {"host": "x"}}}})


IS_CONFIG_VALID = """
query($selector: PipelineSelector!, $runConfigData: RunConfigData) {
  isPipelineConfigValid(pipeline: $selector, runConfigData: $runConfigData, mode: "default") {
    __typename
  }
}"""


def _ui_launch(context, selector: dict, run_config: dict) -> dict:
    """The launchpad's Launch: the job, its run config and the partition's tag, over GraphQL."""
    tags = [{"key": "dagster/partition", "value": str(JAN.key)}]
    params = {"selector": selector, "runConfigData": run_config, "mode": "default"}
    result = execute_dagster_graphql(
        context,
        LAUNCH_PIPELINE_EXECUTION_MUTATION,
        variables={"executionParams": params | {"executionMetadata": {"tags": tags}}},
    )
    return result.data["launchPipelineExecution"]


@pytest.mark.parametrize(
    ("kind", "setting"),
    [("postgres", {"host": "127.0.0.1"}), ("duckdb", {"path": "elsewhere.duckdb"})],
)
def test_the_ui_launchpad_refuses_resource_settings(monkeypatch, tmp_path, kind, setting):
    """Through the webserver's GraphQL, with the code location in a code server of its own: the
    launchpad may set the load's options, never a resource's settings; nothing is launched."""
    monkeypatch.chdir(tmp_path)  # no project `.env` for the code server
    monkeypatch.setenv("TAXI_WAREHOUSE", kind)
    location = tmp_path / "location.py"
    location.write_text("from taxi_assets.definitions import defs\n")
    options = {"ops": {"load_taxi_trips": {"config": {"allow_shrink": True}}}}
    with (
        dg.instance_for_test() as instance,
        define_out_of_process_context(str(location), "defs", instance) as context,
    ):
        selector = infer_job_selector(context, "taxi_trips_job")
        valid = execute_dagster_graphql(
            context, IS_CONFIG_VALID, {"selector": selector, "runConfigData": options}
        )
        for resources in (
            {"source": {"config": {"base_url": "http://127.0.0.1:9/elsewhere"}}},
            {"warehouse": {"config": setting}},
        ):
            launched = _ui_launch(context, selector, options | {"resources": resources})

            assert launched["__typename"] == "RunConfigValidationInvalid"
            assert "unexpected config entry" in launched["errors"][0]["message"]
        assert instance.get_runs_count() == 0
    assert valid.data["isPipelineConfigValid"]["__typename"] == "PipelineConfigValidationValid"


@pytest.mark.parametrize("resource", ["warehouse", "dbt"])
def test_a_dbt_run_cannot_point_the_warehouse_or_the_project_elsewhere(tmp_path, resource):
    """The dbt location's resources are the operator's too: run config naming them is refused
    before the run starts."""
    from taxi_assets.dbt_definitions import build_dbt_definitions

    settings = Settings.from_env({"TAXI_WAREHOUSE": "duckdb"})
    job_def = build_dbt_definitions(settings).resolve_job_def("taxi_dbt_job")
    setting = {"warehouse": {"path": str(tmp_path / "elsewhere.duckdb")},
               "dbt": {"project_dir": str(tmp_path)}}[resource]  # fmt: skip

    with pytest.raises(dg.DagsterInvalidConfigError, match="unexpected config entry"):
        job_def.execute_in_process(
            run_config={"resources": {resource: {"config": setting}}}, partition_key="2020-10"
        )
    assert not (tmp_path / "elsewhere.duckdb").exists()
