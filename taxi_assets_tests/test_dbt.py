"""The dbt models as Dagster assets, built by `dbt build` on the test's own Postgres schema."""

import collections
import csv
import itertools
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest

from taxi_assets.assets import TRIPS
from taxi_assets.dagster_internals import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from taxi_assets.dagster_internals import ASSET_PARTITION_RANGE_START_TAG as RANGE_START
from taxi_assets.dbt_models import DBT_PROJECT_DIR, build_dbt_after_loads
from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import GREEN, YELLOW
from taxi_assets.warehouses.duckdb import DuckDBWarehouse
from taxi_assets_testkit.synthetic import (
    csv_lines,
    expected_unique_row_id,
    write_csv_gz,
    write_month,
)
from taxi_assets_tests.databases import Db, set_warehouse_env
from taxi_assets_tests.runs import materialize_dbt, materialize_load, taxi_dbt

pytestmark = pytest.mark.every_warehouse  # the dbt project builds on PostgreSQL and DuckDB alike
MONTHS = [("green", "2019-01", 900), ("green", "2019-02", 700),
          ("yellow", "2019-01", 800), ("yellow", "2019-02", 600)]  # fmt: skip
DBT_MODELS = {"stg_green_tripdata", "stg_yellow_tripdata", "stg_trips_without_vendor",
              "fact_trips", "dm_monthly_zone_revenue"}  # fmt: skip


@pytest.fixture
def dbt_env(monkeypatch, warehouse):
    """dbt reads the same variables as the Dagster resource: point them at the test's warehouse."""
    set_warehouse_env(monkeypatch, warehouse)


@pytest.fixture
def loaded_months(mirror, load):
    """Two generated months per colour, loaded through the core assets."""
    rows = {}
    for taxi, month, count in MONTHS:
        partition = TaxiPartition(taxi, month)
        schema = GREEN if taxi == "green" else YELLOW
        rows[partition] = write_month(mirror.directory, schema, partition, count)
        assert load(str(partition.key)).success
    return rows


def known_zones() -> dict[str, tuple[str, str]]:
    with (DBT_PROJECT_DIR / "seeds" / "taxi_zone_lookup.csv").open(newline="") as file:
        return {
            row["locationid"]: (row["zone"], row["borough"])
            for row in csv.DictReader(file)
            if row["borough"] != "Unknown"
        }


def _expected_fact_trips(loaded_months) -> list[tuple[str, dict]]:
    """(service type, row) per trip fact_trips must hold, computed here from the CSV rows."""
    zones, trips = known_zones(), {}
    for partition, rows in loaded_months.items():
        schema = GREEN if partition.taxi == "green" else YELLOW
        for row in rows:
            if row["VendorID"] and row["PULocationID"] in zones and row["DOLocationID"] in zones:
                trip = (partition.taxi.title(), expected_unique_row_id(schema, row))
                trips.setdefault(trip, (partition, row))
    return [(service, partition, row) for (service, _), (partition, row) in trips.items()]


def _build(warehouse, **kwargs) -> dg.ExecuteInProcessResult:
    """Every dbt model, the facts of the loaded months (one run of a range, as a backfill)."""
    first, last = min(month for _, month, _ in MONTHS), max(month for _, month, _ in MONTHS)
    return materialize_dbt(warehouse, tags={RANGE_START: first, RANGE_END: last}, **kwargs)


def test_dbt_build_makes_fact_trips_and_monthly_revenue(dbt_env, loaded_months, db, warehouse):
    result = _build(warehouse)

    assert result.success
    expected = _expected_fact_trips(loaded_months)
    assert db.execute("SELECT count(*) FROM fact_trips").fetchone()[0] == len(expected)
    without_vendor = sum(not row["VendorID"] for rows in loaded_months.values() for row in rows)
    assert (
        db.execute("SELECT sum(trips_without_vendor) FROM stg_trips_without_vendor").fetchone()[0]
        == without_vendor
        > 0
    )
    # Spot-check the biggest zone × month × service group against the CSV rows.
    zones = known_zones()
    groups = collections.defaultdict(list)
    for service, _, row in expected:
        pickup = GREEN.pickup if service == "Green" else YELLOW.pickup
        groups[(zones[row["PULocationID"]][0], row[pickup][:7], service)].append(row)
    (zone, month, service), rows = max(groups.items(), key=lambda item: len(item[1]))
    revenue = db.execute(
        "SELECT revenue_monthly_total_amount, total_monthly_trips, avg_monthly_trip_distance "
        "FROM dm_monthly_zone_revenue WHERE revenue_zone = %s "
        "AND revenue_month = %s AND service_type = %s",
        (zone, datetime.strptime(month, "%Y-%m"), service),
    ).fetchone()
    distances = [float(r["trip_distance"]) for r in rows if r["trip_distance"]]
    assert float(revenue[0]) == pytest.approx(sum(float(r["total_amount"] or 0) for r in rows))
    assert revenue[1] == len(rows)
    assert float(revenue[2]) == pytest.approx(sum(distances) / len(distances))


def test_dbt_tests_are_asset_checks_and_a_failing_one_shows(dbt_env, loaded_months, db, warehouse):
    db.execute(  # bad data: a payment type the TLC does not have
        "UPDATE green_tripdata SET payment_type = 9 WHERE unique_row_id IN "
        "(SELECT unique_row_id FROM green_tripdata WHERE vendorid IS NOT NULL "
        "GROUP BY 1 HAVING count(*) = 1 ORDER BY 1 LIMIT 2)"
    )

    result = _build(warehouse, raise_on_error=False)

    evaluations = result.get_asset_check_evaluations()
    failed = [e for e in evaluations if not e.passed]
    assert [(e.asset_key.to_user_string(), e.check_name[:47]) for e in failed] == [
        ("stg_green_tripdata", "accepted_values_stg_green_tripdata_payment_type")
    ]
    assert failed[0].metadata["dagster_dbt/failed_row_count"].value == 1  # the value 9
    passed = {e.asset_key.to_user_string() for e in evaluations if e.passed}
    assert {"stg_yellow_tripdata", "taxi_zone_lookup", "dim_zones"} <= passed
    assert not result.success  # an error-severity test fails `dbt build`


def _run_requests(instance: dg.DagsterInstance, cursor: str | None, warehouse: str = "duckdb"):
    """One evaluation of the sensor that rebuilds facts after loads into `warehouse`."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    dbt = taxi_dbt()
    result = build_dbt_after_loads(dbt.models, dbt.months, warehouse)(context)
    if isinstance(result, dg.SkipReason):
        return [], cursor
    return result.run_requests or [], result.cursor


@pytest.mark.parametrize("selection", [frozenset({TRIPS}), None])  # the UI's; `dg launch --job`
def test_the_facts_wait_for_loads_under_way_then_rebuild_their_months_once(selection):
    with dg.instance_for_test() as instance:
        for key in ("2019-05|green", "2019-06|yellow", "2019-09|green"):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(TRIPS, partition=key, metadata={"warehouse": "duckdb"})
            )
        loading = dg.DagsterRun(job_name="taxi_trips_job", status=dg.DagsterRunStatus.STARTED,
                               asset_selection=selection)  # fmt: skip
        instance.add_run(loading)

        waiting, cursor = _run_requests(instance, None)
        instance.report_run_canceled(loading)
        requests, cursor = _run_requests(instance, cursor)
        again, _ = _run_requests(instance, cursor)

    assert waiting == [] and cursor is not None
    assert [_summary(request) for request in requests] == [
        (None, "2019-05", "2019-06", True),  # (April's facts, never built, are not rebuilt)
        ("2019-09", None, None, True),
    ]
    assert again == []


def _execute(request: dg.RunRequest, warehouse, instance) -> None:
    """Run a sensor's request as the daemon would: its assets, its partition or range."""
    result = materialize_dbt(
        warehouse,
        selection=request.asset_selection,
        partition_key=request.partition_key,
        tags=request.tags,
        instance=instance,
    )
    assert result.success


def _summary(request: dg.RunRequest) -> tuple:
    """(partition, range start, range end, with the unpartitioned models)."""
    setup = any(key in request.asset_selection for key in taxi_dbt().models.keys)
    tags = request.tags
    return request.partition_key, tags.get(RANGE_START), tags.get(RANGE_END), setup


def _table(db, table: str, order: str) -> list[tuple]:
    return [tuple(row) for row in db.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()]


def test_facts_rebuilt_month_by_month_in_any_order_equal_a_full_rebuild(
    dbt_env, mirror, load, db, warehouse
):
    """Loads out of order and a re-load, each followed by the sensor's rebuild of the months that
    file touches; then `dbt build --full-refresh` must give the very same facts and revenue.
    A wrong clock in one file (2088, the next month) is dropped from the facts and counted."""
    # Each step: the files loaded (month, generator seed), then the sensor's runs. Seed 1 gives
    # the re-loaded month other rows.
    steps = [[("2019-03", 0)], [("2019-01", 0), ("2019-02", 0)], [("2019-02", 1)]]
    cursor, requested = None, []
    with dg.instance_for_test() as instance:
        for step in steps:
            for (month, seed), schema in itertools.product(step, (GREEN, YELLOW)):
                partition = TaxiPartition(schema.taxi, month)
                rows = write_month(mirror.directory, schema, partition, 400, seed=seed)
                if schema is GREEN and month == "2019-02":
                    rows[7][GREEN.pickup] = "2088-02-01 10:00:00"
                    rows[8][GREEN.pickup] = "2019-03-01 00:00:05"  # after its month
                    write_csv_gz(mirror.path(partition), csv_lines(GREEN, rows))
                assert load(str(partition.key), instance=instance).success
            requests, cursor = _run_requests(instance, cursor, warehouse.kind)
            requested.append([_summary(request) for request in requests])
            for request in requests:
                _execute(request, warehouse, instance)
        built_monthly = _table(db, "fact_trips", "tripid")
        revenue_monthly = _table(db, "dm_monthly_zone_revenue", "1, 2, 3")

    assert requested == [
        [("2019-03", None, None, True)],  # (its file's trips of 2019-02: with 2019-02's file)
        [(None, "2019-01", "2019-02", False)],  # (2019-01: the first month, none before it)
        [(None, "2019-01", "2019-02", False)],  # the re-load, and the month before it, built
    ]
    taxi_dbt().resource(warehouse.kind).cli(["build", "--full-refresh"]).wait()

    assert _table(db, "fact_trips", "tripid") == built_monthly
    assert _table(db, "dm_monthly_zone_revenue", "1, 2, 3") == revenue_monthly
    assert len(built_monthly) > 1500
    months_with_trips = {row[1].strftime("%Y-%m") for row in revenue_monthly}
    assert months_with_trips == {"2018-12", "2019-01", "2019-02", "2019-03"}
    assert db.execute(
        "SELECT filename, trips_outside_file_months FROM stg_trips_outside_file_months"
    ).fetchall() == [("green_tripdata_2019-02.csv", 2)]


def test_dbt_builds_in_the_duckdb_file_a_relative_path_names(mirror, duckdb_warehouse, monkeypatch):
    """TAXI_DUCKDB_PATH relative to the repository, as `.env.example` has it: dbt, which runs in
    dbt_project/, builds its models in the very file the loads wrote."""
    relative = os.path.relpath(duckdb_warehouse.database_file, DBT_PROJECT_DIR.parent)
    warehouse = DuckDBWarehouse(path=relative)
    assert not Path(relative).is_absolute()
    assert warehouse.database_file.resolve() == duckdb_warehouse.database_file
    set_warehouse_env(monkeypatch, warehouse)
    monkeypatch.setenv("TAXI_DUCKDB_PATH", relative)  # as the user wrote it
    rows = write_month(mirror.directory, GREEN, TaxiPartition("green", "2019-01"), 200)
    assert materialize_load("2019-01|green", mirror.source(), warehouse).success

    built = materialize_dbt(warehouse, taxi_dbt().models)

    assert built.success
    staged = Db(warehouse).execute("SELECT count(*) FROM stg_green_tripdata").fetchone()[0]
    assert staged == len({expected_unique_row_id(GREEN, row) for row in rows if row["VendorID"]})


def test_definitions_load_in_a_fresh_checkout_with_a_manifest_per_warehouse(tmp_path):
    """No manifest in a fresh clone: importing the definitions runs `dbt parse` itself, into the
    chosen warehouse's own target folder; switching warehouses parses for the new one instead of
    reusing the other's manifest (whose SQL names the other's database)."""
    root = Path(__file__).resolve().parent.parent
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for name in files:
        if (root / name).is_file():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes((root / name).read_bytes())
    assert not (tmp_path / "dbt_project" / "target").exists()

    def load(warehouse: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", "import taxi_assets.dbt_definitions as d, dagster as dg; "
             "dg.Definitions.validate_loadable(d.defs); print(d.__file__)"],
            cwd=tmp_path, env={"PATH": str(Path(sys.executable).parent),
                               "PYTHONPATH": str(tmp_path), "HOME": str(tmp_path),
                               "TAXI_WAREHOUSE": warehouse},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    for warehouse in ("duckdb", "postgres"):
        loaded = load(warehouse)
        assert loaded.returncode == 0, loaded.stderr[-3000:]
        assert loaded.stdout.strip().startswith(str(tmp_path))
    for warehouse in ("duckdb", "postgres"):
        [manifest] = (tmp_path / "dbt_project" / "target").glob(f"{warehouse}-*/manifest.json")
        assert json.loads(manifest.read_text())["metadata"]["adapter_type"] == warehouse
