"""The course's next module finds the tables: its dbt project (module 4, `taxi_rides_ny`) reads
source `raw` = database `taxi_rides_ny`, schema `prod`, tables `green_tripdata` /
`yellow_tripdata`, and its staging models cast the columns below. A small dbt project written
here imitates that lookup (it is not the course's project) and runs against this project's
DuckDB file, loaded with the default settings, beside this project's own dbt models."""

import subprocess
import sys
from pathlib import Path

import pytest

from taxi_assets.partitions import TaxiPartition
from taxi_assets.resources import duckdb_resource
from taxi_assets.settings import Settings
from taxi_assets.warehouses.duckdb import DuckDBWarehouse
from taxi_assets_tests.databases import Db, set_warehouse_env
from taxi_assets_tests.runs import materialize_dbt, materialize_load
from taxi_assets_tests.samples import real_sample

DBT = Path(sys.executable).parent / "dbt"
SAMPLES = {
    TaxiPartition("green", "2019-10"): "green_tripdata_2019-10_head1308.csv",
    TaxiPartition("yellow", "2021-01"): "yellow_tripdata_2021-01_head22792.csv",
}
# What the course's staging models select and cast (their names; our tables' lower-case columns).
COMMON = """cast(vendorid as integer) as vendor_id, cast(ratecodeid as integer) as rate_code_id,
    cast(pulocationid as integer) as pickup_location_id,
    cast(dolocationid as integer) as dropoff_location_id,
    cast({p}_pickup_datetime as timestamp) as pickup_datetime,
    cast({p}_dropoff_datetime as timestamp) as dropoff_datetime, store_and_fwd_flag,
    cast(passenger_count as integer) as passenger_count,
    cast(trip_distance as numeric) as trip_distance, cast(fare_amount as numeric) as fare_amount,
    cast(extra as numeric) as extra, cast(mta_tax as numeric) as mta_tax,
    cast(tip_amount as numeric) as tip_amount, cast(tolls_amount as numeric) as tolls_amount,
    cast(improvement_surcharge as numeric) as improvement_surcharge,
    cast(total_amount as numeric) as total_amount, cast(payment_type as integer) as payment_type"""
GREEN_ONLY = "cast(trip_type as integer) as trip_type, cast(ehail_fee as numeric) as ehail_fee"
SOURCES = """version: 2
sources:
  - name: raw
    database: taxi_rides_ny
    schema: prod
    tables: [{name: green_tripdata}, {name: yellow_tripdata}]
"""


def write_course_like_project(directory: Path, database_file: Path) -> None:
    """A dbt project that looks the tables up as the course's does, and whose `prod` target
    builds models named like the course's (and like ours) into schema `prod`."""
    models = directory / "models"
    models.mkdir(parents=True)
    (directory / "dbt_project.yml").write_text(
        "name: course_like\nversion: '1.0.0'\nprofile: course_like\n"
    )
    (directory / "profiles.yml").write_text(
        "course_like:\n  target: prod\n  outputs:\n    prod:\n      type: duckdb\n"
        f"      path: '{database_file}'\n      schema: prod\n      threads: 1\n"
    )
    (models / "sources.yml").write_text(SOURCES)
    green = f"{COMMON.format(p='lpep')}, {GREEN_ONLY}"
    for taxi, columns in (("green", green), ("yellow", COMMON.format(p="tpep"))):
        (models / f"stg_{taxi}_tripdata.sql").write_text(
            f"select {columns} from {{{{ source('raw', '{taxi}_tripdata') }}}} "
            "where vendorid is not null"
        )
    (models / "dim_zones.sql").write_text("select 1 as locationid")  # a name ours has too
    (models / "fct_trips.sql").write_text(
        "select 'Green' as service_type, * exclude (trip_type, ehail_fee) "
        "from {{ ref('stg_green_tripdata') }} union all "
        "select 'Yellow', * from {{ ref('stg_yellow_tripdata') }}"
    )


@pytest.fixture
def default_duckdb(tmp_path, monkeypatch):
    """The DuckDB warehouse as the default settings make it, in a folder of the test's own."""
    for name in ("TAXI_DUCKDB_PATH", "TAXI_DUCKDB_SCHEMA", "TAXI_DBT_SCHEMA"):
        monkeypatch.delenv(name, raising=False)
    default = duckdb_resource(Settings.from_env())
    # Where docs/course.md points the course's profile: the repository's data/ folder.
    repository = Path(__file__).resolve().parent.parent
    assert default.database_file == repository / "data" / "taxi_rides_ny.duckdb"
    assert default.sql_schema == "prod"
    warehouse = DuckDBWarehouse(
        path=str(tmp_path / Path(default.path).name), sql_schema=default.sql_schema
    )
    set_warehouse_env(monkeypatch, warehouse)
    return warehouse


def test_the_course_dbt_lookup_reads_our_tables_beside_our_models(mirror, default_duckdb, tmp_path):
    warehouse = default_duckdb
    for partition, sample in SAMPLES.items():
        mirror.put_csv(partition, real_sample(sample))
        assert materialize_load(partition, mirror.source(), warehouse).success
    assert materialize_dbt(warehouse, partition_key=next(iter(SAMPLES)).month).success
    course = tmp_path / "course_like"
    write_course_like_project(course, Path(warehouse.path))

    built = subprocess.run(
        [str(DBT), "build", "--project-dir", str(course), "--profiles-dir", str(course)],
        cwd=course, capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert built.returncode == 0, built.stdout[-3000:]
    db = Db(warehouse)
    with_vendor = {
        taxi: db.execute(
            f"SELECT count(*) FROM prod.{taxi}_tripdata WHERE vendorid IS NOT NULL"
        ).fetchone()[0]
        for taxi in ("green", "yellow")
    }
    assert min(with_vendor.values()) > 0
    assert db.execute(
        "SELECT service_type, count(*) FROM taxi_rides_ny.prod.fct_trips GROUP BY 1 ORDER BY 1"
    ).fetchall() == [("Green", with_vendor["green"]), ("Yellow", with_vendor["yellow"])]
    # Both projects' models live side by side: theirs in prod, ours in taxi_models.
    assert db.execute("SELECT count(*) FROM prod.dim_zones").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM taxi_models.dim_zones").fetchone()[0] == 265
    assert db.execute("SELECT count(*) FROM taxi_models.fact_trips").fetchone()[0] > 0


def test_postgres_tables_have_the_columns_the_course_casts(mirror, load, db):
    for partition, sample in SAMPLES.items():
        mirror.put_csv(partition, real_sample(sample))
        assert load(str(partition.key)).success

    for taxi, columns in (
        ("green", f"{COMMON.format(p='lpep')}, {GREEN_ONLY}"),
        ("yellow", COMMON.format(p="tpep")),
    ):
        rows = db.execute(
            f"SELECT {columns} FROM {taxi}_tripdata WHERE vendorid IS NOT NULL"
        ).fetchall()
        expected = db.execute(
            f"SELECT count(*) FROM {taxi}_tripdata WHERE vendorid IS NOT NULL"
        ).fetchone()[0]
        assert len(rows) == expected > 0


def test_the_docs_load_the_courses_months_in_one_command():
    """The recipe's command (docs/course.md) names the 48 files of the course's local setup:
    2019-01 … 2020-12, both colours."""
    from taxi_assets.backfill import partition_keys

    course = (Path(__file__).resolve().parent.parent / "docs" / "course.md").read_text()
    recipe = course[course.index("## Continue with module 4") :]
    command = next(line for line in recipe.splitlines() if "-m taxi_assets.backfill" in line)
    first, last, _, colours = command.split("taxi_assets.backfill ")[1].split()

    keys = partition_keys(first, last, ["green", "yellow"] if colours == "both" else [colours])

    assert len(keys) == 48
    assert {key.split("|")[0][:4] for key in keys} == {"2019", "2020"}
    assert {key.split("|")[1] for key in keys} == {"green", "yellow"}
