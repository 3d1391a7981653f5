"""The sensor that rebuilds the facts after loads (`taxi_dbt_after_loads`), on real loads and
real dbt builds in one Dagster home shared by two warehouses, as `make demo`, `make dev` and a
load from a terminal share `.dagster_home`."""

import dagster as dg
import pytest

from taxi_assets.assets import WAREHOUSE_METADATA, WAREHOUSE_TAG
from taxi_assets.dagster_internals import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from taxi_assets.dagster_internals import ASSET_PARTITION_RANGE_START_TAG as RANGE_START
from taxi_assets.dbt_models import build_dbt_after_loads
from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import GREEN, YELLOW
from taxi_assets.warehouses.base import TaxiWarehouse
from taxi_assets_testkit.synthetic import write_month
from taxi_assets_tests.databases import set_warehouse_env
from taxi_assets_tests.runs import materialize_dbt, materialize_load, taxi_dbt

MONTH = "2019-02"  # its file holds trips of 2019-01 too, whose facts are never built here


@pytest.fixture
def both_warehouses(monkeypatch, mirror, duckdb_warehouse, postgres_warehouse):
    """DuckDB and PostgreSQL, with the environment dbt reads pointing at both; a month of each
    colour published."""
    for warehouse in (duckdb_warehouse, postgres_warehouse):
        set_warehouse_env(monkeypatch, warehouse)
    for schema in (GREEN, YELLOW):
        write_month(mirror.directory, schema, TaxiPartition(schema.taxi, MONTH), 300)
    return {"duckdb": duckdb_warehouse, "postgres": postgres_warehouse}


def _sensor(warehouse: str) -> dg.SensorDefinition:
    """`taxi_dbt_after_loads` of a code location whose settings name `warehouse`."""
    return build_dbt_after_loads(taxi_dbt().models, taxi_dbt().months, warehouse)


def _requests(instance: dg.DagsterInstance, warehouse: str, cursor: str | None = None):
    """One evaluation of the warehouse's sensor: its requests, as (partition, range start, range
    end, with the unpartitioned models), and its cursor."""
    result = _sensor(warehouse)(dg.build_sensor_context(instance=instance, cursor=cursor))
    if isinstance(result, dg.SkipReason):
        return [], cursor
    return [_summary(request) for request in result.run_requests or []], result.cursor


def _summary(request: dg.RunRequest) -> tuple:
    setup = any(key in request.asset_selection for key in taxi_dbt().models.keys)
    return request.partition_key, request.tags.get(RANGE_START), request.tags.get(RANGE_END), setup


def _load(key: str, mirror, warehouse: TaxiWarehouse, instance: dg.DagsterInstance) -> None:
    assert materialize_load(key, mirror.source(), warehouse, instance=instance).success


def _build(warehouse: TaxiWarehouse, instance: dg.DagsterInstance, **kwargs) -> None:
    """A dbt run (every dbt model by default) on the warehouse, as `dg launch` or the daemon."""
    assert materialize_dbt(warehouse, instance=instance, **kwargs).success


def _rebuild(requests: list[tuple], warehouse: TaxiWarehouse, instance: dg.DagsterInstance):
    """Run the sensor's requests (`_summary`) as the daemon would: a month or a range."""
    dbt = taxi_dbt()
    for month, first, last, setup in requests:
        assets = [dbt.months, *([dbt.models] if setup else [])]
        tags = {} if month else {RANGE_START: first, RANGE_END: last}
        _build(warehouse, instance, selection=assets, partition_key=month, tags=tags)


def test_after_make_demo_the_sensor_requests_nothing(both_warehouses, mirror):
    """`make demo` loads a month and builds its facts: the first `make dev` finds them built."""
    duckdb = both_warehouses["duckdb"]
    with dg.instance_for_test() as instance:
        _load(f"{MONTH}|green", mirror, duckdb, instance)
        _build(duckdb, instance, partition_key=MONTH)

        requests, _ = _requests(instance, "duckdb")
        [build] = instance.fetch_materializations(dg.AssetKey("fact_trips"), limit=10).records
        [run] = instance.get_runs(dg.RunsFilter(run_ids=[build.run_id]))

    assert requests == []
    assert build.asset_materialization.metadata[WAREHOUSE_METADATA].value == "duckdb"
    assert run.tags[WAREHOUSE_TAG] == "duckdb"


def test_a_postgres_load_is_rebuilt_by_the_postgres_sensor_alone(both_warehouses, mirror):
    """DuckDB's facts built (`make demo`), then a load into PostgreSQL from a terminal with the
    same home: DuckDB's sensor leaves it, PostgreSQL's rebuilds that month (and the models it
    never built there)."""
    duckdb, postgres = both_warehouses["duckdb"], both_warehouses["postgres"]
    with dg.instance_for_test() as instance:
        _load(f"{MONTH}|green", mirror, duckdb, instance)
        _build(duckdb, instance, partition_key=MONTH)
        _load(f"{MONTH}|yellow", mirror, postgres, instance)

        by_duckdb, _ = _requests(instance, "duckdb")
        by_postgres, _ = _requests(instance, "postgres")

    assert by_duckdb == []
    assert by_postgres == [(MONTH, None, None, True)]


def test_each_load_is_rebuilt_once(both_warehouses, mirror):
    """After the sensor's rebuild, nothing more (a cursor lost included); a later load of the
    same month is rebuilt once again."""
    postgres = both_warehouses["postgres"]
    with dg.instance_for_test() as instance:
        _load(f"{MONTH}|green", mirror, postgres, instance)
        first, cursor = _requests(instance, "postgres")
        _rebuild(first, postgres, instance)
        after_first, cursor = _requests(instance, "postgres", cursor)
        from_scratch, _ = _requests(instance, "postgres")

        _load(f"{MONTH}|yellow", mirror, postgres, instance)
        second, cursor = _requests(instance, "postgres", cursor)
        _rebuild(second, postgres, instance)
        after_second, _ = _requests(instance, "postgres", cursor)

    assert first == [(MONTH, None, None, True)]
    assert after_first == [] and from_scratch == []
    assert second == [(MONTH, None, None, False)]
    assert after_second == []
