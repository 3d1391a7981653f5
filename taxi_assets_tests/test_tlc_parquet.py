"""Months after the release: the TLC's own Parquet files, generated here in the TLC's layouts
(2019-style doubles for integers; 2024 with `Airport_fee`; 2025 with `cbd_congestion_fee`) and
served by the local HTTP server, loaded on PostgreSQL and DuckDB."""

from pathlib import Path

import dagster as dg
import duckdb
import pytest

from taxi_assets.partitions import TaxiPartition
from taxi_assets.resources import TaxiSource
from taxi_assets.trip_schema import GREEN, YELLOW, ColumnType, TripSchema
from taxi_assets_testkit.kestra_flow import GREEN_COLUMNS
from taxi_assets_testkit.synthetic import (
    csv_lines,
    expected_unique_row_id,
    generate_rows,
    write_csv_gz,
)
from taxi_assets_tests.databases import Db
from taxi_assets_tests.helpers import failure_message, fingerprint, rows_per_file
from taxi_assets_tests.runs import materialize_load

pytestmark = pytest.mark.every_warehouse  # the TLC's months load into PostgreSQL and DuckDB alike
IDS = {"VendorID", "PULocationID", "DOLocationID"}


def tlc_type(name: str, type_: ColumnType, style: int) -> str:
    """The column's Parquet type in the TLC's files of year `style`."""
    if type_ is ColumnType.TIMESTAMP:
        return "TIMESTAMP"
    if name in IDS:
        return "INTEGER"
    if name == "store_and_fwd_flag":
        return "VARCHAR"
    if type_ is ColumnType.FLOAT or style < 2023:  # 2019-style: RatecodeID, counts as doubles
        return "DOUBLE"
    return "BIGINT"


def write_parquet(
    path: Path,
    schema: TripSchema,
    rows: list[dict],
    *,
    style: int = 2024,
    extra: tuple[str, ...] = (),
    types: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
) -> Path:
    """`rows` (CSV text, as the generator writes them) as a TLC Parquet file; `extra` columns
    (each row's fare ÷ 4, as `newer_value` says), `types` overrides, `drop`ped columns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    csv = write_csv_gz(path.with_suffix(".csv.gz"), csv_lines(schema, rows))
    types = types or {}
    columns = [
        f"CAST(NULLIF(\"{c.name}\", '') AS {types.get(c.name, tlc_type(c.name, c.type, style))}) "
        f'AS "{c.name}"'
        for c in schema.columns
        if c.name not in drop
    ] + [f"CAST(NULLIF(fare_amount, '') AS DOUBLE) / 4 AS \"{name}\"" for name in extra]
    with duckdb.connect() as connection:
        connection.execute(
            f"COPY (SELECT {', '.join(columns)} FROM read_csv('{csv}', all_varchar = true)) "
            f"TO '{path}' (FORMAT parquet)"
        )
    csv.unlink()
    return path


def tlc_source(mirror, **kwargs) -> TaxiSource:
    """The mirror serves the TLC's flat layout too: `{url}/{taxi}_tripdata_{YYYY-MM}.parquet`."""
    return TaxiSource(base_url=mirror.url, tlc_url=mirror.url, **kwargs)


def load(source: TaxiSource, warehouse, partition: TaxiPartition) -> dg.ExecuteInProcessResult:
    return materialize_load(partition, source, warehouse, raise_on_error=False)


def newer_values(db, schema: TripSchema, filename: str) -> dict[str, str]:
    """For each newer column of the table: whether `filename`'s rows hold each row's fare ÷ 4
    (what `write_parquet` writes in its `extra` columns), are all NULL, or neither."""
    said = {}
    for column in schema.newer_columns:
        name = column.name.lower()
        fare_4, nulls, rows = db.execute(
            f"SELECT count(*) FILTER (WHERE {name} = fare_amount / 4), "
            f"count(*) FILTER (WHERE {name} IS NULL), count(*) FROM {schema.table} "
            "WHERE filename = %s AND fare_amount IS NOT NULL",
            (filename,),
        ).fetchone()
        said[name] = "fare/4" if fare_4 == rows else "null" if nulls == rows else "mixed"
    return said


def ids(db, schema: TripSchema) -> list[str]:
    return sorted(r[0] for r in db.execute(f"SELECT unique_row_id FROM {schema.table}").fetchall())


@pytest.mark.parametrize(
    ("schema", "month", "style", "extra"),
    [
        (YELLOW, "2024-03", 2024, ("Airport_fee",)),
        (GREEN, "2025-01", 2019, ("cbd_congestion_fee",)),
        (YELLOW, "2025-02", 2025, ("airport_fee", "cbd_congestion_fee")),
    ],
)
def test_a_tlc_month_loads_from_parquet_with_the_release_ids(
    mirror, warehouse, db, schema, month, style, extra
):
    partition = TaxiPartition(schema.taxi, month)
    rows = list(generate_rows(schema, partition, 700))
    write_parquet(mirror.directory / partition.tlc_filename, schema, rows, style=style, extra=extra)

    result = load(tlc_source(mirror), warehouse, partition)

    assert result.success, failure_message(result)
    assert rows_per_file(db, schema.table) == {f"{schema.taxi}_tripdata_{month}.parquet": 700}
    assert ids(db, schema) == sorted(expected_unique_row_id(schema, row) for row in rows)
    first = rows[0]
    stored = db.execute(
        f"SELECT CAST({schema.dropoff} AS VARCHAR) FROM {schema.table} WHERE unique_row_id = %s",
        (expected_unique_row_id(schema, first),),
    ).fetchone()[0]
    assert str(stored)[:19] == first[schema.dropoff]
    given = {name.lower() for name in extra}
    assert newer_values(db, schema, partition.filename) == {
        column.name: "fare/4" if column.name in given else "null" for column in schema.newer_columns
    }


def test_a_table_of_an_earlier_version_gains_the_newer_columns_in_place(mirror, warehouse, db):
    """A table made before the newer columns existed (here: the release month loaded, then the
    columns dropped) gains them when a TLC month comes: the release month's rows stay as they
    were, with NULLs there; the TLC month's values arrive."""
    release, tlc = TaxiPartition("yellow", "2020-06"), TaxiPartition("yellow", "2025-02")
    write_csv_gz(mirror.path(release), csv_lines(YELLOW, generate_rows(YELLOW, release, 300)))
    assert load(tlc_source(mirror), warehouse, release).success
    for column in YELLOW.newer_columns:
        db.execute(f"ALTER TABLE yellow_tripdata DROP COLUMN {column.name}")
    release_rows = f"(SELECT * FROM {YELLOW.table} WHERE filename = '{release.filename}')"
    before = fingerprint(db, release_rows)
    rows = list(generate_rows(YELLOW, tlc, 400))
    write_parquet(mirror.directory / tlc.tlc_filename, YELLOW, rows, extra=("Airport_fee",))

    result = load(tlc_source(mirror), warehouse, tlc)

    assert result.success, failure_message(result)
    base = ", ".join(["unique_row_id", "filename", *(c.name for c in YELLOW.columns)])
    release_base = f"(SELECT {base} FROM {YELLOW.table} WHERE filename = '{release.filename}')"
    assert fingerprint(db, release_base) == before
    assert newer_values(db, YELLOW, release.filename) == {
        "airport_fee": "null",
        "cbd_congestion_fee": "null",
    }
    assert newer_values(db, YELLOW, tlc.filename) == {
        "airport_fee": "fare/4",
        "cbd_congestion_fee": "null",
    }
    assert rows_per_file(db, YELLOW.table) == {release.filename: 300, tlc.filename: 400}


def test_a_csv_may_carry_newer_columns_after_the_release_ones(mirror, warehouse, db):
    """The release's header followed by some of the newer columns: those are kept, the others
    NULL. Anything else after the release's columns is refused, naming it."""
    partition = TaxiPartition("yellow", "2019-04")
    rows = list(generate_rows(YELLOW, partition, 120))
    lines = csv_lines(YELLOW, rows)
    header = next(lines)
    quarters = [f"{float(row['fare_amount']) / 4}" if row["fare_amount"] else "" for row in rows]
    body = [f"{line},{quarter}" for line, quarter in zip(lines, quarters, strict=True)]
    write_csv_gz(mirror.path(partition), [f"{header},Airport_fee", *body])

    loaded = load(tlc_source(mirror), warehouse, partition)
    write_csv_gz(mirror.path(partition), [f"{header},tip_share", *body])
    refused = load(tlc_source(mirror), warehouse, partition)

    assert loaded.success, failure_message(loaded)
    assert newer_values(db, YELLOW, partition.filename) == {
        "airport_fee": "fare/4",
        "cbd_congestion_fee": "null",
    }
    assert "header does not match the yellow trip schema" in failure_message(refused)
    assert "unexpected tip_share" in failure_message(refused)


def test_a_kestra_table_gains_the_newer_columns_and_keeps_its_rows(mirror, postgres_warehouse):
    """The Kestra flow's plain table (the release's columns only) gains the CBD fee in place."""
    db = Db(postgres_warehouse)
    db.execute(f'CREATE SCHEMA "{postgres_warehouse.sql_schema}"')
    db.execute(f"CREATE TABLE green_tripdata (unique_row_id text, filename text, {GREEN_COLUMNS})")
    db.execute(
        "INSERT INTO green_tripdata (unique_row_id, filename, vendorid) "
        "VALUES ('kestra-id', 'green_tripdata_2018-12.csv', '2')"
    )
    partition = TaxiPartition("green", "2025-03")
    rows = list(generate_rows(GREEN, partition, 250))
    write_parquet(
        mirror.directory / partition.tlc_filename, GREEN, rows, extra=("cbd_congestion_fee",)
    )

    result = load(tlc_source(mirror), postgres_warehouse, partition)

    assert result.success, failure_message(result)
    assert newer_values(db, GREEN, partition.filename) == {"cbd_congestion_fee": "fare/4"}
    assert rows_per_file(db, GREEN.table) == {
        "green_tripdata_2018-12.csv": 1,
        partition.filename: 250,
    }
    db.close()


def test_a_trip_in_a_release_csv_and_in_a_tlc_parquet_gets_the_same_id(mirror, warehouse, db):
    """The same month from the release (CSV) and from the TLC (Parquet, forced by the setting):
    the same ids, and the re-load from Parquet replaces the CSV's rows."""
    partition = TaxiPartition("green", "2019-03")
    rows = list(generate_rows(GREEN, partition, 600))
    write_csv_gz(mirror.path(partition), csv_lines(GREEN, rows))
    write_parquet(mirror.directory / partition.tlc_filename, GREEN, rows, style=2019)

    from_csv = load(tlc_source(mirror), warehouse, partition)
    csv_ids = ids(db, GREEN)
    from_parquet = load(tlc_source(mirror, kind="tlc"), warehouse, partition)

    assert from_csv.success and from_parquet.success, failure_message(from_parquet)
    assert len(csv_ids) == 600
    assert ids(db, GREEN) == csv_ids
    assert rows_per_file(db, GREEN.table) == {"green_tripdata_2019-03.csv": 600}


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("truncated", "green_tripdata_2024-05.parquet is not a readable Parquet file"),
        ("csv", "green_tripdata_2024-05.parquet is not a readable Parquet file"),
        ("no_fare", "green_tripdata_2024-05.parquet: no column fare_amount"),
        ("text_pickup", "column lpep_pickup_datetime is VARCHAR, not a timestamp"),
        ("text_fare", "column fare_amount is VARCHAR, not a number"),
    ],
)
def test_a_bad_parquet_file_says_what_and_leaves_the_table_as_it_was(
    mirror, warehouse, db, bad, says
):
    partition = TaxiPartition("green", "2024-05")
    path = mirror.directory / partition.tlc_filename
    rows = list(generate_rows(GREEN, partition, 300))
    write_parquet(path, GREEN, rows)
    assert load(tlc_source(mirror), warehouse, partition).success
    before = fingerprint(db, GREEN.table)
    if bad == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif bad == "csv":
        path.write_text("VendorID,lpep_pickup_datetime\n2,2024-05-01 10:00:00\n")
    elif bad == "no_fare":
        write_parquet(path, GREEN, rows, drop=("fare_amount",))
    else:
        column = "lpep_pickup_datetime" if bad == "text_pickup" else "fare_amount"
        write_parquet(path, GREEN, rows, types={column: "VARCHAR"})

    result = load(tlc_source(mirror), warehouse, partition)

    assert not result.success
    message = failure_message(result)
    assert says in message and "\n" not in message.strip()
    assert fingerprint(db, GREEN.table) == before
    attempts = [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
    assert attempts == []  # a bad file is not retried


def test_a_parquet_file_with_too_many_rows_is_refused_from_its_footer(mirror, warehouse, db):
    partition = TaxiPartition("green", "2024-05")
    path = mirror.directory / partition.tlc_filename
    write_parquet(path, GREEN, list(generate_rows(GREEN, partition, 300)))
    assert load(tlc_source(mirror), warehouse, partition).success
    before = fingerprint(db, GREEN.table)

    result = load(tlc_source(mirror, max_rows=299), warehouse, partition)

    assert not result.success
    assert f"{partition.tlc_filename}: more than 299 rows" in failure_message(result)
    assert fingerprint(db, GREEN.table) == before
    assert not [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]


def test_each_month_reads_its_source_and_the_probe_asks_it(mirror):
    source = tlc_source(mirror)
    july, august = TaxiPartition("yellow", "2021-07"), TaxiPartition("yellow", "2021-08")
    write_parquet(mirror.directory / august.tlc_filename, YELLOW, [])

    assert source.url(july) == f"{mirror.url}/yellow/yellow_tripdata_2021-07.csv.gz"
    assert source.url(august) == f"{mirror.url}/yellow_tripdata_2021-08.parquet"
    assert source.is_published(august) is True
    assert source.is_published(TaxiPartition("green", "2021-08")) is False
    assert source.is_published(july) is False  # the mirror has no CSV for it
    assert (
        tlc_source(mirror, kind="release").url(august).endswith("/yellow_tripdata_2021-08.csv.gz")
    )
