"""Loading partitions into real PostgreSQL through real Dagster runs."""

import collections
import logging
import tempfile
import threading

import dagster as dg
import pytest

from taxi_assets.assets import TRIPS
from taxi_assets.checks import taxi_trip_checks
from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import GREEN, YELLOW
from taxi_assets_testkit.synthetic import (
    csv_lines,
    expected_unique_row_id,
    generate_rows,
    write_csv_gz,
    write_month,
)
from taxi_assets_tests.helpers import (
    check_results,
    delete_some_rows,
    failure_message,
    fingerprint,
    metadata,
    rows_per_file,
    staging_metadata,
    table_exists,
)
from taxi_assets_tests.runs import load_taxi_trips, materialize_load
from taxi_assets_tests.samples import REAL_DATA

JAN = TaxiPartition("green", "2019-01")
FEB = TaxiPartition("green", "2019-02")


pytestmark = pytest.mark.every_warehouse  # every test here holds for PostgreSQL and DuckDB alike


def test_month_loads_every_row_with_the_seed_ids(mirror, load, db):
    rows = write_month(mirror.directory, GREEN, JAN, 2_000)

    result = load("2019-01|green")

    assert result.success
    loaded = db.execute("SELECT unique_row_id, filename FROM green_tripdata").fetchall()
    assert collections.Counter(r[0] for r in loaded) == collections.Counter(
        expected_unique_row_id(GREEN, row) for row in rows
    )
    assert {r[1] for r in loaded} == {"green_tripdata_2019-01.csv"}
    assert metadata(result)["rows_in_table"] == 2_000
    assert metadata(result)["dagster/table_name"].endswith(".green_tripdata")


def test_values_load_as_typed_columns(mirror, load, db):
    rows = write_month(mirror.directory, GREEN, JAN, 500)
    load("2019-01|green")

    loaded = db.execute(
        "SELECT passenger_count, payment_type, trip_distance, vendorid, ehail_fee "
        "FROM green_tripdata"
    ).fetchall()

    def as_int(text):
        return int(float(text)) if text else None

    assert collections.Counter((r[0], r[1]) for r in loaded) == collections.Counter(
        (as_int(row["passenger_count"]), as_int(row["payment_type"])) for row in rows
    )
    assert any(row["passenger_count"].endswith(".0") for row in rows)  # `1.0` really occurs
    assert sorted(r[2] for r in loaded if r[2] is not None) == sorted(
        float(row["trip_distance"]) for row in rows if row["trip_distance"]
    )
    assert any(row["trip_distance"].startswith(".") for row in rows)  # `.79` really occurs
    assert sum(r[3] is None for r in loaded) == sum(not row["VendorID"] for row in rows) > 0
    assert {r[4] for r in loaded} == {None}


def test_rerun_leaves_the_table_exactly_as_it_was(mirror, load, db):
    write_month(mirror.directory, GREEN, JAN, 1_000)
    load("2019-01|green")
    before = fingerprint(db, "green_tripdata")

    result = load("2019-01|green")

    assert fingerprint(db, "green_tripdata") == before
    assert before[0] == 1_000
    assert metadata(result)["replaced_rows"] == 1_000


def test_next_month_is_added_beside_the_first(mirror, load, db):
    write_month(mirror.directory, GREEN, JAN, 700)
    write_month(mirror.directory, GREEN, FEB, 300)
    load("2019-01|green")
    load("2019-02|green")

    assert rows_per_file(db, "green_tripdata") == {
        "green_tripdata_2019-01.csv": 700,
        "green_tripdata_2019-02.csv": 300,
    }


def test_reloading_a_changed_file_leaves_no_stale_rows(mirror, load, db):
    write_month(mirror.directory, GREEN, JAN, 800, seed=1)
    load("2019-01|green")
    new_rows = write_month(mirror.directory, GREEN, JAN, 600, seed=2)

    load("2019-01|green")

    ids = [r[0] for r in db.execute("SELECT unique_row_id FROM green_tripdata").fetchall()]
    assert collections.Counter(ids) == collections.Counter(
        expected_unique_row_id(GREEN, row) for row in new_rows
    )


def test_exact_duplicate_rows_stay(mirror, load, db):
    rows = write_month(mirror.directory, GREEN, JAN, 3_000)
    duplicates = len(rows) - len({tuple(row.values()) for row in rows})
    assert duplicates > 0

    load("2019-01|green")

    assert db.execute("SELECT count(*) FROM green_tripdata").fetchone()[0] == 3_000
    ids = [r[0] for r in db.execute("SELECT unique_row_id FROM green_tripdata").fetchall()]
    assert len(ids) - len(set(ids)) >= duplicates


def test_metadata_describes_the_source_and_the_month(mirror, load, db):
    march = TaxiPartition("yellow", "2019-03")
    rows = list(generate_rows(YELLOW, march, 1_500))
    # At both edges of the month: the last second inside it, the first seconds after it.
    edges = [
        "2019-03-31 23:59:59",
        "2019-04-01 00:00:00",
        "2019-04-01 00:00:01",
        "2019-04-15 12:00:00",
    ]
    for row, pickup in zip(rows, edges, strict=False):
        row["tpep_pickup_datetime"] = pickup
    write_csv_gz(mirror.path(march), csv_lines(YELLOW, rows))
    outside = sum(not row["tpep_pickup_datetime"].startswith("2019-03") for row in rows)
    assert outside > 3
    size = mirror.path(TaxiPartition("yellow", "2019-03")).stat().st_size

    result = load("2019-03|yellow")

    staged = staging_metadata(result)
    assert staged["source_rows"] == 1_500
    assert staged["source_bytes"] == size
    assert staged["pickup_outside_month"] == outside
    assert staged["source_url"] == f"{mirror.url}/yellow/yellow_tripdata_2019-03.csv.gz"
    trips = metadata(result)
    assert trips["dagster/partition_row_count"] == 1_500
    assert [c.name for c in trips["dagster/column_schema"].columns][:3] == [
        "unique_row_id",
        "filename",
        "vendorid",
    ]
    assert db.execute("SELECT count(*) FROM yellow_tripdata").fetchone()[0] == 1_500
    # The preview: five of the file's rows, as the table holds them.
    preview = trips["preview"]
    assert [c.name for c in preview.schema.columns][:3] == ["unique_row_id", "filename", "vendorid"]
    assert len(preview.records) == 5
    ids_in_table = {r[0] for r in db.execute("SELECT unique_row_id FROM yellow_tripdata")}
    for record in preview.records:
        assert record.data["filename"] == "yellow_tripdata_2019-03.csv"
        assert record.data["unique_row_id"] in ids_in_table
    # The staging asset names no table that outlives the run.
    assert "dagster/table_name" not in staged
    assert staged["staged_in"].endswith(
        "(this run's staging table, merged and then gone)"
        if db.warehouse.kind == "postgres"
        else "(this run's rows, committed by the merge)"
    )


def test_a_load_logs_each_phase_and_its_progress(mirror, load, monkeypatch):
    """One line as each phase ends, with its duration; in-phase lines while a phase runs."""
    monkeypatch.setattr("taxi_assets.progress.EVERY_SECONDS", 0.01)
    write_month(mirror.directory, GREEN, JAN, 30_000)
    instance = dg.DagsterInstance.ephemeral()

    result = load("2019-01|green", instance=instance)

    lines = [entry.user_message for entry in instance.all_logs(result.run_id)]
    name = "green_tripdata_2019-01.csv"
    for phase in ("download", "stage", "merge"):
        assert any(line.startswith(f"{name}: {phase} done in ") for line in lines), phase
    assert any(line.startswith(f"{name}: download done") and "MiB of" in line for line in lines)
    assert any(line.startswith(f"{name}: stage done") and "30,000 lines" in line for line in lines)
    ticks = [line for line in lines if line.startswith(f"{name}: stage: ")]
    assert ticks and all(" lines read" in line and line.endswith("s") for line in ticks)
    assert any(line.startswith(f"{name}: 30,000 rows in ") for line in lines)


def test_staging_table_is_dropped_once_merged(mirror, load, db, warehouse):
    write_month(mirror.directory, GREEN, JAN, 100)
    load("2019-01|green")

    assert table_exists(db, "green_tripdata")
    assert not table_exists(db, "green_tripdata_staging_2019_01")


def test_checks_pass_and_report_ids_shared_with_other_files(mirror, load, db):
    jan_rows = write_month(mirror.directory, GREEN, JAN, 400)
    load("2019-01|green")
    feb_rows = write_month(mirror.directory, GREEN, FEB, 300)
    # February's file repeats five of January's trips (a late correction, say).
    write_csv_gz(mirror.path(FEB), csv_lines(GREEN, feb_rows + jan_rows[:5]))

    result = load("2019-02|green")

    checks = check_results(result)
    assert checks["rows_match_source"].passed
    assert checks["rows_match_source"].metadata["loaded_rows"].value == 305
    assert checks["filename_not_null"].passed
    overlap = checks["ids_in_other_files"]
    assert not overlap.passed and overlap.severity == dg.AssetCheckSeverity.WARN
    shared = {expected_unique_row_id(GREEN, row) for row in jan_rows[:5]}
    assert overlap.metadata["ids_in_other_files"].value == len(shared)
    assert rows_per_file(db, "green_tripdata")["green_tripdata_2019-02.csv"] == 305


@pytest.mark.parametrize(
    "shared_pickup",
    [
        "2019-01-15 10:00:00",  # February repeats a mid-January trip
        "2019-01-31 23:50:00",  # ... a trip of January's last day
        "2019-02-01 00:05:00",  # January holds a February trip that February has too
        "2019-02-14 12:00:00",  # ... a mid-February one
        "2019-03-10 08:00:00",  # both hold a March trip (March is not loaded)
        "",  # both hold the same trip without a pickup time
    ],
)
def test_ids_shared_with_another_month_are_found_wherever_the_pickup_falls(
    mirror, load, shared_pickup
):
    jan_rows = list(generate_rows(GREEN, JAN, 200, seed=1))
    feb_rows = list(generate_rows(GREEN, FEB, 150, seed=2))
    shared = {**jan_rows[0], "lpep_pickup_datetime": shared_pickup}
    write_csv_gz(mirror.path(JAN), csv_lines(GREEN, [*jan_rows, shared]))
    write_csv_gz(mirror.path(FEB), csv_lines(GREEN, [*feb_rows, shared]))
    load("2019-01|green")

    overlap = check_results(load("2019-02|green"))["ids_in_other_files"]

    assert overlap.metadata["ids_in_other_files"].value == 1
    assert expected_unique_row_id(GREEN, shared) in overlap.metadata["sample"].value
    assert "green_tripdata_2019-01.csv" in overlap.metadata["sample"].value


def test_rows_check_fails_when_rows_go_missing(mirror, load, db, warehouse):
    write_month(mirror.directory, GREEN, JAN, 200)
    defs = dg.Definitions(
        assets=[load_taxi_trips],
        asset_checks=taxi_trip_checks,
        resources={"source": mirror.source(), "warehouse": warehouse},
    )
    # Only the check, as the UI's "Execute checks" runs it.
    check_only = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(),
        asset_check_selection={dg.AssetCheckKey(TRIPS, "rows_match_source")},
    )
    with dg.instance_for_test() as instance:
        load("2019-01|green", instance=instance)
        delete_some_rows(db, "green_tripdata", 3)
        result = check_only.execute_in_process(
            partition_key="2019-01|green", instance=instance, raise_on_error=False
        )

    assert list(check_results(result)) == ["rows_match_source"]  # that check alone
    evaluation = check_results(result)["rows_match_source"]
    assert not evaluation.passed
    assert evaluation.metadata["loaded_rows"].value == 197
    assert evaluation.metadata["source_rows"].value == 200


def test_runs_carry_taxi_and_file_tags(mirror, load):
    write_month(mirror.directory, GREEN, JAN, 50)
    with dg.instance_for_test() as instance:
        result = load("2019-01|green", instance=instance)
        tags = instance.get_run_by_id(result.run_id).tags
    assert tags["taxi"] == "green"
    assert tags["file"] == "green_tripdata_2019-01.csv"


def test_partitions_of_one_colour_load_in_parallel(mirror, load, db):
    months = [TaxiPartition("green", f"2019-{m:02d}") for m in range(1, 7)]
    expected = {p.filename: 1_000 + 100 * i for i, p in enumerate(months)}
    for i, partition in enumerate(months):
        write_month(mirror.directory, GREEN, partition, 1_000 + 100 * i)
    results = {}

    def run(partition):
        results[partition.month] = load(str(partition.key))

    threads = [threading.Thread(target=run, args=(p,)) for p in months]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(result.success for result in results.values())
    assert rows_per_file(db, "green_tripdata") == expected


def test_temporary_files_are_removed_whatever_the_outcome(mirror, load, tmp_path, monkeypatch):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    write_month(mirror.directory, GREEN, JAN, 100)
    assert load("2019-01|green").success
    mirror.put_bytes(JAN, b"not gzip at all")
    assert not load("2019-01|green", raise_on_error=False).success

    assert list(temporary.iterdir()) == []


def test_real_yellow_sample_with_empty_tail_loads(mirror, load, db):
    partition = TaxiPartition("yellow", "2020-01")
    mirror.put_csv(partition, REAL_DATA / "yellow_tripdata_2020-01_sample999.csv")

    result = load("2020-01|yellow")

    lines = (REAL_DATA / "yellow_tripdata_2020-01_sample999.csv").read_text().splitlines()[1:]
    fields = [line.split(",") for line in lines]
    assert metadata(result)["rows_in_table"] == len(lines) == 999
    assert db.execute(
        "SELECT count(*) FILTER (WHERE vendorid IS NULL), count(*) FILTER "
        "(WHERE tpep_pickup_datetime < '2020-01-01') FROM yellow_tripdata"
    ).fetchone() == (
        sum(f[0] == "" for f in fields),
        sum(f[1] < "2020-01-01" for f in fields),
    )
    assert staging_metadata(result)["pickup_outside_month"] == sum(
        not f[1].startswith("2020-01") for f in fields
    )


def test_an_empty_or_cut_off_file_does_not_replace_a_loaded_month(mirror, load, db, warehouse):
    """A header-only file, or one with less than half the month's rows, fails (not retried) and
    leaves the table as it was; half the rows is a change it accepts; the config allow_shrink
    replaces the month anyway, and the check against the previous load warns."""
    key = str(JAN.key)
    allow = {"ops": {"load_taxi_trips": {"config": {"allow_shrink": True}}}}
    write_month(mirror.directory, GREEN, JAN, 300)
    with dg.instance_for_test() as instance:
        assert load(key, instance=instance).success
        before = fingerprint(db, "green_tripdata")
        write_csv_gz(mirror.path(JAN), csv_lines(GREEN, []))
        empty = load(key, instance=instance, raise_on_error=False)
        after_empty = fingerprint(db, "green_tripdata")
        write_month(mirror.directory, GREEN, JAN, 149)
        cut_off = load(key, instance=instance, raise_on_error=False)
        after_cut_off = fingerprint(db, "green_tripdata")
        write_month(mirror.directory, GREEN, JAN, 150)
        half = load(key, instance=instance)
        write_csv_gz(mirror.path(JAN), csv_lines(GREEN, []))
        allowed = load(key, instance=instance, run_config=allow)

    assert not empty.success and not cut_off.success
    assert (
        failure_message(empty)
        .strip()
        .endswith(
            ": green_tripdata_2019-01.csv: 0 rows where its last load had 300: not replaced "
            "(an empty or cut-off file?); to replace the month anyway, run with the config "
            "allow_shrink: true"
        )
    )
    assert "149 rows where its last load had 300" in failure_message(cut_off)
    assert after_empty == after_cut_off == before
    restarts = [e for e in empty.all_events if e.event_type_value == "STEP_RESTARTED"]
    assert restarts == []
    assert half.success and check_results(half)["rows_against_previous_load"].passed
    assert rows_per_file(db, "green_tripdata") == {}
    report = check_results(allowed)["rows_against_previous_load"]
    assert not report.passed and report.severity == dg.AssetCheckSeverity.WARN
    assert report.metadata["previous_load_rows"].value == 150
    assert report.metadata["rows"].value == 0


def test_the_shrink_guard_compares_loads_into_the_same_table_only(
    mirror, postgres_warehouse, duckdb_warehouse
):
    """One Dagster home, two warehouses: a small month in one is no shrink of the other's."""
    write_month(mirror.directory, GREEN, JAN, 300)

    def load_into(warehouse) -> dg.ExecuteInProcessResult:
        return materialize_load(
            JAN, mirror.source(), warehouse, instance=instance, raise_on_error=False
        )

    with dg.instance_for_test() as instance:
        assert load_into(duckdb_warehouse).success
        write_month(mirror.directory, GREEN, JAN, 100)
        other = load_into(postgres_warehouse)
        again = load_into(duckdb_warehouse)

    assert other.success
    assert (
        check_results(other)["rows_against_previous_load"].metadata["previous_load_rows"].value
        == -1
    )
    assert not again.success and "100 rows where its last load had 300" in failure_message(again)


def test_a_load_waiting_for_the_duckdb_file_says_so(mirror, duckdb_warehouse, monkeypatch, caplog):
    """Another process (here: a thread with the file lock) has the DuckDB file: the load waits
    for it, saying so in its log, then loads."""
    from taxi_assets.warehouses import duckdb as duckdb_module

    monkeypatch.setattr(duckdb_module, "LOCK_LOG_SECONDS", 0.2)
    caplog.set_level(logging.INFO)
    write_month(mirror.directory, GREEN, JAN, 50)
    holding, release = threading.Event(), threading.Event()

    def hold_the_file() -> None:
        with duckdb_warehouse.exclusive_access():
            holding.set()
            release.wait(timeout=60)

    holder = threading.Thread(target=hold_the_file)
    holder.start()
    holding.wait(timeout=60)
    threading.Timer(1.5, release.set).start()
    result = materialize_load(JAN, mirror.source(), duckdb_warehouse)
    holder.join()

    assert result.success
    assert f"waiting for the DuckDB file {duckdb_warehouse.database_file}" in caplog.text
