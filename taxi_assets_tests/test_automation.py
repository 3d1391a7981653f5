"""Schedules and the new-month sensor, evaluated against the local HTTP source."""

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from taxi_assets.checks import taxi_trip_checks
from taxi_assets.jobs import taxi_trips_job
from taxi_assets.partitions import TaxiPartition
from taxi_assets.schedules import monthly_schedule
from taxi_assets.sensors import NewMonthCursor, new_month_sensor
from taxi_assets.trip_schema import GREEN, YELLOW
from taxi_assets_testkit.synthetic import write_month
from taxi_assets_tests.runs import load_taxi_trips, taxi_schedules


def _definitions(mirror, warehouse, schedules=(), sensors=()) -> dg.Definitions:
    return dg.Definitions(
        assets=[load_taxi_trips],
        asset_checks=taxi_trip_checks,
        jobs=[taxi_trips_job],
        schedules=list(schedules),
        sensors=list(sensors),
        resources={"source": mirror.source(), "warehouse": warehouse},
        executor=dg.in_process_executor,
    )


def _tick(defs: dg.Definitions, name: str, when: datetime, instance: dg.DagsterInstance):
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=when,
        repository_def=defs.get_repository_def(),
        resources=defs.resources,
    ) as context:
        return defs.get_schedule_def(name).evaluate_tick(context)


def test_green_tick_requests_last_month_for_green_only(mirror, warehouse):
    write_month(mirror.directory, GREEN, TaxiPartition("green", "2021-02"), 10)
    write_month(mirror.directory, YELLOW, TaxiPartition("yellow", "2021-02"), 10)
    defs = _definitions(mirror, warehouse, schedules=taxi_schedules)
    tick = datetime(2021, 3, 1, 9, tzinfo=ZoneInfo("UTC"))

    with dg.instance_for_test() as instance:
        result = _tick(defs, "green_taxi_monthly", tick, instance)

    assert [
        (r.partition_key, r.run_key, r.tags["taxi"], r.tags["file"]) for r in result.run_requests
    ] == [("2021-02|green", "2021-02|green", "green", "green_tripdata_2021-02.csv")]


def test_kestra_style_tick_loads_its_own_month(mirror, warehouse):
    write_month(mirror.directory, YELLOW, TaxiPartition("yellow", "2020-05"), 10)
    kestra_style = monthly_schedule("yellow", 10, month="current")
    defs = _definitions(mirror, warehouse, schedules=[kestra_style])
    tick = datetime(2020, 5, 1, 10, tzinfo=ZoneInfo("UTC"))

    with dg.instance_for_test() as instance:
        result = _tick(defs, "yellow_taxi_monthly", tick, instance)

    assert [r.partition_key for r in result.run_requests] == ["2020-05|yellow"]


def test_tick_for_an_unpublished_month_is_skipped_with_the_reason(mirror, warehouse):
    defs = _definitions(mirror, warehouse, schedules=taxi_schedules)
    tick = datetime(2026, 11, 1, 10, tzinfo=ZoneInfo("UTC"))

    with dg.instance_for_test() as instance:
        result = _tick(defs, "yellow_taxi_monthly", tick, instance)

    assert result.run_requests == []
    assert result.skip_message == (  # a month after the release: the TLC's file
        "yellow_tripdata_2026-10.parquet is not published at "
        f"{mirror.url}/yellow_tripdata_2026-10.parquet yet"
    )


def _evaluate(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None):
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        repository_def=defs.get_repository_def(),
        resources=defs.resources,
    ) as context:
        return defs.get_sensor_def("taxi_new_months").evaluate_tick(context)


def test_sensor_requests_exactly_the_published_unloaded_months_once(mirror, warehouse, load):
    published = [TaxiPartition("green", f"2019-0{m}") for m in (1, 2, 3)] + [
        TaxiPartition("yellow", "2019-02")
    ]
    for partition in published:
        schema = GREEN if partition.taxi == "green" else YELLOW
        write_month(mirror.directory, schema, partition, 20)
    sensor = new_month_sensor(max_probes=500, max_requests=10)
    defs = _definitions(mirror, warehouse, sensors=[sensor])

    with dg.instance_for_test() as instance:
        load("2019-01|green", instance=instance)
        first = _evaluate(defs, instance, None)
        second = _evaluate(defs, instance, first.cursor)

    assert sorted(r.partition_key for r in first.run_requests) == [
        "2019-02|green",
        "2019-02|yellow",
        "2019-03|green",
    ]
    assert second.run_requests == []
    assert sorted(NewMonthCursor.parse(second.cursor).requested) == [
        "2019-02|green",
        "2019-02|yellow",
        "2019-03|green",
    ]


def test_sensor_probes_a_bounded_number_of_months_and_continues(mirror, warehouse):
    write_month(mirror.directory, GREEN, TaxiPartition("green", "2019-05"), 5)
    defs = _definitions(mirror, warehouse, sensors=[new_month_sensor(max_probes=4)])
    cursors, found = [None], []
    with dg.instance_for_test() as instance:
        for _ in range(3):  # 2019-01..2019-06 of both colours = 12 keys, 4 per evaluation
            result = _evaluate(defs, instance, cursors[-1])
            cursors.append(result.cursor)
            found += [r.partition_key for r in result.run_requests]

    assert found == ["2019-05|green"]
    assert [NewMonthCursor.parse(c).probed_last for c in cursors[1:]] == [
        "2019-02|yellow",
        "2019-04|yellow",
        "2019-06|yellow",
    ]
