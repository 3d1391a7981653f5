"""The cloud path on local emulators: GCS (gcp-storage-emulator) and BigQuery (bqemulator)."""

import collections
import hashlib

import dagster as dg
import pytest
import sqlglot
from sqlglot import exp

from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import GREEN, TRIP_SCHEMAS, YELLOW, TripSchema
from taxi_assets.warehouses.bigquery import (
    TABLE_TYPES as BIGQUERY_TYPES,
)
from taxi_assets.warehouses.bigquery import (
    BigQueryWarehouse,
    _BigQueryPartitionLoad,
    gcp_setup_job,
)
from taxi_assets_testkit.local_servers import free_port as closed_port
from taxi_assets_testkit.synthetic import csv_lines, generate_rows, write_csv_gz, write_month
from taxi_assets_tests.databases import replaced, set_warehouse_env
from taxi_assets_tests.helpers import check_results, failure_message, metadata
from taxi_assets_tests.runs import materialize_dbt, materialize_load, taxi_dbt
from taxi_assets_tests.test_dbt import known_zones

pytestmark = pytest.mark.emulators


def emitted_statements(schema: TripSchema, partition: TaxiPartition) -> list[str]:
    """Every SQL statement a partition load sends (for the dialect test)."""
    warehouse = BigQueryWarehouse(project="p", dataset="d", bucket="b")
    load = _BigQueryPartitionLoad(warehouse, None, None, schema, partition)  # type: ignore[arg-type]
    return [
        *load.statements_for_tables(),
        *(load.add_column_sql(column) for column in schema.newer_columns),
        load.external_table_sql(f"gs://b/{partition.source_filename}"),
        load.staging_sql(),
        load.stats_sql(),
        load.merge_sql(),
    ]


@pytest.mark.parametrize("taxi", ["green", "yellow"])
def test_every_statement_is_bigquery_sql(taxi):
    """sqlglot (dialect bigquery) parses each one as a real statement, not an opaque command."""
    statements = emitted_statements(TRIP_SCHEMAS[taxi], TaxiPartition(taxi, "2019-01"))
    assert len(statements) == 6 + len(TRIP_SCHEMAS[taxi].newer_columns)
    for statement in statements:
        tree = sqlglot.parse_one(statement, read="bigquery", error_level=sqlglot.ErrorLevel.RAISE)
        assert not isinstance(tree, exp.Command), statement


def _rows_by_file(warehouse: BigQueryWarehouse, table: str) -> dict[str, int]:
    with warehouse.clients() as (bq, _):
        sql = f"SELECT filename, COUNT(*) AS n FROM {warehouse.table_id(table)} GROUP BY filename"
        return {row["filename"]: row["n"] for row in bq.query(sql).result()}


def _load(mirror, warehouse, key: str, **kwargs) -> dg.ExecuteInProcessResult:
    return materialize_load(key, mirror.source(), warehouse, **kwargs)


def test_setup_then_two_partitions_then_a_rerun(mirror, bigquery_warehouse):
    warehouse = bigquery_warehouse
    setup = gcp_setup_job.execute_in_process(resources={"warehouse": warehouse})
    with warehouse.clients() as (bq, gcs):
        assert gcs.lookup_bucket(warehouse.bucket) is not None
        assert bq.get_dataset(f"{warehouse.project}.{warehouse.dataset}")
    assert setup.success
    assert warehouse.ensure_bucket_and_dataset() == (False, False)  # ifExists: SKIP
    months = {TaxiPartition("green", "2019-01"): 300, TaxiPartition("yellow", "2019-02"): 250}
    written = {
        partition.taxi: write_month(mirror.directory, TRIP_SCHEMAS[partition.taxi], partition, n)
        for partition, n in months.items()
    }

    results = [_load(mirror, warehouse, str(p.key)) for p in months]
    again = _load(mirror, warehouse, "2019-01|green")

    assert all(result.success for result in results)
    assert _rows_by_file(warehouse, "green_tripdata") == {"green_tripdata_2019-01.csv": 300}
    assert _rows_by_file(warehouse, "yellow_tripdata") == {"yellow_tripdata_2019-02.csv": 250}
    assert metadata(again)["replaced_rows"] == 300 and metadata(again)["rows_in_table"] == 300
    assert all(check.passed for check in check_results(again).values())
    for taxi, rows in written.items():
        with warehouse.clients() as (bq, _):
            table = warehouse.table_id(f"{taxi}_tripdata")
            found = bq.query(f"SELECT TO_HEX(unique_row_id) AS id FROM {table}").result()
            ids = collections.Counter(row["id"] for row in found)
        assert ids == collections.Counter(kestra_bigquery_id(taxi, row) for row in rows)


def test_a_table_of_an_earlier_version_gains_the_newer_columns(mirror, bigquery_warehouse):
    """A yellow table made before `airport_fee` and `cbd_congestion_fee` existed gains them in
    place; a file that carries `airport_fee` after the release's columns fills it."""
    warehouse = bigquery_warehouse
    gcp_setup_job.execute_in_process(resources={"warehouse": warehouse})
    columns = ", ".join(f"{c.name} {BIGQUERY_TYPES[c.type]}" for c in YELLOW.columns)
    with warehouse.clients() as (bq, _):
        bq.query(
            f"CREATE TABLE {warehouse.table_id('yellow_tripdata')} "
            f"(unique_row_id BYTES, filename STRING, {columns})"
        ).result()
    partition = TaxiPartition("yellow", "2019-03")
    rows = list(generate_rows(YELLOW, partition, 40))
    lines = csv_lines(YELLOW, rows)
    header = next(lines)
    fees = [f"{row['fare_amount']}" for row in rows]
    write_csv_gz(
        mirror.path(partition),
        [
            f"{header},airport_fee",
            *(f"{line},{fee}" for line, fee in zip(lines, fees, strict=True)),
        ],
    )

    result = _load(mirror, warehouse, str(partition.key))

    assert result.success, failure_message(result)
    with warehouse.clients() as (bq, _):
        table = warehouse.table_id("yellow_tripdata")
        found = bq.query(
            f"SELECT COUNTIF(airport_fee = fare_amount) AS same, "
            f"COUNTIF(cbd_congestion_fee IS NULL) AS nulls, COUNT(*) AS n FROM {table}"
        ).result()
        same, nulls, n = next(iter(found)).values()
    assert n == 40 and nulls == 40
    assert same == sum(1 for fee in fees if fee)


def kestra_bigquery_id(taxi: str, row: dict[str, str]) -> str:
    """The Kestra flow's BigQuery id, written out here from its SQL: MD5 of five columns as BigQuery
    prints them (timestamps with `+00`), NULLs as ''."""
    prefix = "lpep" if taxi == "green" else "tpep"
    parts = [
        row["VendorID"],
        *(f"{row[f'{prefix}_{moment}_datetime']}+00" for moment in ("pickup", "dropoff")),
        row["PULocationID"],
        row["DOLocationID"],
    ]
    return hashlib.md5("".join(parts).encode()).hexdigest()


def test_missing_credentials_fail_before_any_upload(mirror, monkeypatch, gcs_emulator):
    write_month(mirror.directory, GREEN, TaxiPartition("green", "2019-01"), 10)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no gcloud application-default credentials
    no_credentials = BigQueryWarehouse(project="p", dataset="d", bucket="never-created")
    no_project = BigQueryWarehouse(project="", dataset="d", bucket="b", api_endpoint="http://x")

    messages = [
        failure_message(_load(mirror, w, "2019-01|green", raise_on_error=False))
        for w in (no_credentials, no_project)
    ]

    assert "no GCP credentials: set GOOGLE_APPLICATION_CREDENTIALS" in messages[0]
    assert "BigQuery needs GCP_PROJECT_ID" in messages[1]
    assert not list(gcs_emulator["root"].glob("never-created*"))  # nothing was uploaded


def test_a_failed_upload_or_bad_file_leaves_the_main_table_as_it_was(mirror, bigquery_warehouse):
    warehouse = bigquery_warehouse
    warehouse.ensure_bucket_and_dataset()
    january = TaxiPartition("green", "2019-01")
    write_month(mirror.directory, GREEN, january, 120)
    assert _load(mirror, warehouse, "2019-01|green").success
    write_month(mirror.directory, GREEN, january, 90, seed=5)  # a new version of the file

    with pytest.MonkeyPatch.context() as patch:  # GCS unreachable for this run
        patch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{closed_port()}")
        upload_failed = _load(mirror, warehouse, "2019-01|green", raise_on_error=False)
    write_month(mirror.directory, YELLOW, TaxiPartition("yellow", "2019-01"), 5)
    mirror.put_gz(january, mirror.path(TaxiPartition("yellow", "2019-01")))
    wrong_header = _load(mirror, warehouse, "2019-01|green", raise_on_error=False)

    failure = next(e for e in upload_failed.all_events if e.is_step_failure)
    assert "upload to gs://" in failure.step_failure_data.error.cause.message
    assert "It is a yellow trip file" in failure_message(wrong_header)
    assert _rows_by_file(warehouse, "green_tripdata") == {"green_tripdata_2019-01.csv": 120}


def test_dbt_builds_on_the_emulator(mirror, bigquery_warehouse, monkeypatch):
    warehouse = bigquery_warehouse
    warehouse.ensure_bucket_and_dataset()
    months = {TaxiPartition("green", "2019-01"): 200, TaxiPartition("yellow", "2019-01"): 150}
    zones = known_zones()
    expected = set()  # trips fact_trips must hold: one per BigQuery id, known zones only
    for partition, count in months.items():
        schema = TRIP_SCHEMAS[partition.taxi]
        for row in write_month(mirror.directory, schema, partition, count):
            if row["VendorID"] and {row["PULocationID"], row["DOLocationID"]} <= zones.keys():
                key = ("VendorID", schema.pickup, schema.dropoff, "PULocationID", "DOLocationID")
                expected.add((partition.taxi, *(row[name] for name in key)))
        assert _load(mirror, warehouse, str(partition.key)).success
    set_warehouse_env(monkeypatch, warehouse)
    dbt = taxi_dbt()

    # The first build makes every model; the second replaces the month's facts in place
    # (incremental: the pre-hook's delete, then a merge that inserts).
    for assets in ([dbt.models, dbt.months], [dbt.months]):
        result = materialize_dbt(warehouse, *assets, partition_key="2019-01", raise_on_error=False)

        assert result.success, [
            e.check_name for e in result.get_asset_check_evaluations() if not e.passed
        ]
        with warehouse.clients() as (bq, _):
            models = f"{warehouse.project}.{warehouse.dataset}_dbt"
            fact = bq.query(f"SELECT COUNT(*) AS n FROM `{models}.fact_trips`").result()
            assert next(iter(fact))["n"] == len(expected)


def test_credentials_reach_no_log_or_metadata(mirror, bigquery_warehouse):
    secret = "-----BEGIN PRIVATE KEY-----never-print-me"
    credentials = f'{{"type": "service_account", "private_key": "{secret}"}}'
    warehouse = replaced(bigquery_warehouse, credentials_json=credentials)
    warehouse.ensure_bucket_and_dataset()
    write_month(mirror.directory, GREEN, TaxiPartition("green", "2019-01"), 20)

    with dg.instance_for_test() as instance:
        result = _load(mirror, warehouse, "2019-01|green", instance=instance)
        logs = instance.all_logs(result.run_id)

    assert result.success
    assert logs and all("never-print-me" not in str(entry) for entry in logs)
