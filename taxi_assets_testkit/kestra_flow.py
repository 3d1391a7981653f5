"""The Kestra flow's Postgres SQL, verbatim (02_postgres_taxi.yaml), as a test oracle.

Loading a file this way gives the ids a table loaded by the Kestra flow has; the product's ids
must equal them. Only the table names are parameters here.
"""

import gzip
from pathlib import Path
from typing import LiteralString, cast

import psycopg
from psycopg import sql

GREEN_COLUMNS = """VendorID text, lpep_pickup_datetime timestamp, lpep_dropoff_datetime timestamp,
  store_and_fwd_flag text, RatecodeID text, PULocationID text, DOLocationID text,
  passenger_count integer, trip_distance double precision, fare_amount double precision,
  extra double precision, mta_tax double precision, tip_amount double precision,
  tolls_amount double precision, ehail_fee double precision,
  improvement_surcharge double precision, total_amount double precision, payment_type integer,
  trip_type integer, congestion_surcharge double precision"""

YELLOW_COLUMNS = """VendorID text, tpep_pickup_datetime timestamp, tpep_dropoff_datetime timestamp,
  passenger_count integer, trip_distance double precision, RatecodeID text,
  store_and_fwd_flag text, PULocationID text, DOLocationID text, payment_type integer,
  fare_amount double precision, extra double precision, mta_tax double precision,
  tip_amount double precision, tolls_amount double precision,
  improvement_surcharge double precision, total_amount double precision,
  congestion_surcharge double precision"""

UNIQUE_ROW_ID = """UPDATE {staging}
SET
  unique_row_id = md5(
    COALESCE(CAST(VendorID AS text), '') ||
    COALESCE(CAST({p}_pickup_datetime AS text), '') ||
    COALESCE(CAST({p}_dropoff_datetime AS text), '') ||
    COALESCE(PULocationID, '') ||
    COALESCE(DOLocationID, '') ||
    COALESCE(CAST(fare_amount AS text), '') ||
    COALESCE(CAST(trip_distance AS text), '')
  ),
  filename = '{file}';"""

# The flow's last task: rows whose id the table already holds are skipped.
KESTRA_MERGE = """MERGE INTO {table} AS T
USING {staging} AS S
ON T.unique_row_id = S.unique_row_id
WHEN NOT MATCHED THEN
  INSERT (unique_row_id, filename, VendorID, {p}_pickup_datetime, {p}_dropoff_datetime,
    passenger_count, trip_distance, RatecodeID, store_and_fwd_flag, PULocationID, DOLocationID,
    payment_type, fare_amount, extra, mta_tax, tip_amount, tolls_amount, improvement_surcharge,
    total_amount, congestion_surcharge)
  VALUES (S.unique_row_id, S.filename, S.VendorID, S.{p}_pickup_datetime, S.{p}_dropoff_datetime,
    S.passenger_count, S.trip_distance, S.RatecodeID, S.store_and_fwd_flag, S.PULocationID,
    S.DOLocationID, S.payment_type, S.fare_amount, S.extra, S.mta_tax, S.tip_amount,
    S.tolls_amount, S.improvement_surcharge, S.total_amount, S.congestion_surcharge);"""


def kestra_ids(connection: psycopg.Connection, taxi: str, csv_gz: Path, file: str) -> list[str]:
    """Load `csv_gz` as the Kestra flow does (CopyIn with header, UPDATE md5); return the ids."""
    staging = f"kestra_{taxi}_tripdata_staging"
    columns = GREEN_COLUMNS if taxi == "green" else YELLOW_COLUMNS
    prefix = "lpep" if taxi == "green" else "tpep"
    connection.execute(statement(f"DROP TABLE IF EXISTS {staging}"))
    connection.execute(
        statement(f"CREATE TABLE {staging} (unique_row_id text, filename text, {columns})")
    )
    copy_in(connection, staging, column_names(columns), csv_gz)
    connection.execute(statement(UNIQUE_ROW_ID.format(staging=staging, p=prefix, file=file)))
    return [row[0] for row in connection.execute(statement(f"SELECT unique_row_id FROM {staging}"))]


def statement(text: str) -> sql.SQL:
    """`text` as a statement psycopg runs: the flow's SQL with this oracle's own table and file
    names put in, never outside input (psycopg's types ask for a literal string)."""
    return sql.SQL(cast(LiteralString, text))


def column_names(ddl: str) -> str:
    """`VendorID, lpep_pickup_datetime, …` of a column list such as `GREEN_COLUMNS`."""
    return ", ".join(line.split()[0] for line in ddl.replace("\n", " ").split(", "))


def copy_in(connection: psycopg.Connection, table: str, columns: str, csv_gz: Path) -> None:
    """The flow's CopyIn task: the gunzipped CSV, header and all, into `table`."""
    with (
        connection.cursor() as cursor,
        cursor.copy(
            statement(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv, HEADER true)")
        ) as copy,
        gzip.open(csv_gz, "rb") as source,
    ):
        while chunk := source.read(1 << 20):
            copy.write(chunk)
