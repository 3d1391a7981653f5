"""PostgreSQL: the main warehouse. COPY streams the file in, set-based SQL does the rest.

Per partition, on one connection holding a session advisory lock on the file (so two runs of the
same partition queue instead of colliding; other partitions never wait):

1. stage (one transaction): COPY the gzip stream into a session-private temp table, check that
   integer columns hold whole numbers, then build `{taxi}_tripdata_staging_{YYYY_MM}` with the
   seed flow's md5 `unique_row_id` and the `filename`.
2. merge (one transaction): delete the file's previous rows from `{taxi}_tripdata`, insert the
   staged rows, drop the staging table. Readers see the old month or the new one, never a mix.
A failure or a killed process rolls back the open transaction; the main table is untouched.
"""

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import psycopg
from psycopg import sql
from pydantic import Field

from taxi_assets.partitions import TaxiPartition
from taxi_assets.source import SourceError, TripCsv
from taxi_assets.trip_schema import TRIP_SCHEMAS, ColumnType, TripSchema, id_columns
from taxi_assets.warehouse import (
    MergedPartition,
    PartitionLoad,
    StagedPartition,
    TaxiWarehouse,
    WarehouseError,
    staging_table_name,
)

# The Kestra DDL's types for the main and staging tables.
TABLE_TYPES = {
    ColumnType.TEXT: "text",
    ColumnType.TIMESTAMP: "timestamp",
    ColumnType.INTEGER: "integer",
    ColumnType.FLOAT: "double precision",
}
# What COPY parses into: integers as numeric, so `1.0` loads (then checked and cast).
COPY_TYPES = {**TABLE_TYPES, ColumnType.INTEGER: "numeric"}
INT4_MAX = 2_147_483_647


class PostgresWarehouse(TaxiWarehouse):
    """PostgreSQL, configured like libpq (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)."""

    host: str = Field(default="localhost", description="Server host (PGHOST).")
    port: int = Field(default=5432, description="Server port (PGPORT).")
    user: str = Field(default="postgres", description="Role to connect as (PGUSER).")
    password: str | None = Field(default=None, description="Password (PGPASSWORD); never logged.")
    database: str = Field(default="postgres", description="Database (PGDATABASE).")
    target_schema: str = Field(
        default="public", description="Schema of the trip tables (TAXI_PG_SCHEMA)."
    )

    @property
    def kind(self) -> str:
        return "postgres"

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection; callers open explicit transactions."""
        try:
            connection = psycopg.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                dbname=self.database,
                autocommit=True,
                connect_timeout=10,
                application_name="taxi_assets",
            )
        except psycopg.OperationalError as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "no reason given"
            raise WarehouseError(
                f"cannot connect to PostgreSQL at {self.host}:{self.port} "
                f"(database {self.database!r}, user {self.user!r}): {reason}"
            ) from None
        with connection:
            yield connection

    @contextmanager
    def open_partition(
        self, schema: TripSchema, partition: TaxiPartition
    ) -> Iterator[PartitionLoad]:
        with self.connect() as connection:
            load = _PostgresPartitionLoad(connection, self.target_schema, schema, partition)
            with load.locked():
                load.ensure_tables()
                yield load

    def qualified_table(self, table: str) -> str:
        return f"{self.database}.{self.target_schema}.{table}"

    @property
    def table_types(self) -> Mapping[ColumnType, str]:
        return TABLE_TYPES

    def query(self, schema: TripSchema, query: str, params: Sequence[object]) -> list[tuple]:
        with self.connect() as connection:
            if not _table_exists(connection, self.target_schema, schema.table):
                return []
            table = sql.Identifier(self.target_schema, schema.table)
            return connection.execute(sql.SQL(query).format(table=table), params).fetchall()


def _table_exists(connection: psycopg.Connection, schema_name: str, table: str) -> bool:
    found = connection.execute("SELECT to_regclass(%s)", (f'"{schema_name}"."{table}"',))
    return found.fetchone()[0] is not None


def _lock_key(*parts: str) -> sql.Composable:
    """A bigint advisory-lock key derived from text, computed by the server."""
    return sql.SQL("hashtextextended({}, 0)").format(sql.Literal("taxi_assets:" + ":".join(parts)))


class _PostgresPartitionLoad(PartitionLoad):
    def __init__(
        self,
        connection: psycopg.Connection,
        target_schema: str,
        schema: TripSchema,
        partition: TaxiPartition,
    ):
        self.connection = connection
        self.target_schema = target_schema
        self.schema = schema
        self.partition = partition
        self.main = sql.Identifier(target_schema, schema.table)
        self.staging_name = staging_table_name(schema, partition)
        self.staging = sql.Identifier(target_schema, self.staging_name)
        self.columns = sql.SQL(", ").join(sql.Identifier(c.name.lower()) for c in schema.columns)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the partition's session lock; a dropped connection releases it too."""
        key = _lock_key(self.target_schema, self.partition.filename)
        self.connection.execute(sql.SQL("SELECT pg_advisory_lock({})").format(key))
        try:
            yield
        finally:
            if not self.connection.closed and not self.connection.broken:
                self.connection.execute(sql.SQL("SELECT pg_advisory_unlock({})").format(key))

    def stage(self, csv: TripCsv) -> StagedPartition:
        with self.connection.transaction():
            # The ids hash timestamps and floats as text: pin how they print.
            self.connection.execute("SET LOCAL DateStyle = 'ISO, MDY'")
            self.connection.execute("SET LOCAL extra_float_digits = 1")
            self._copy_into_temp_table(csv)
            self._check_whole_numbers(csv)
            self.connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.staging))
            self.connection.execute(self._create_staging_sql(), (self.partition.filename,))
            rows, duplicates, outside = self.connection.execute(
                self._staging_stats_sql(),
                (self.partition.month_start, self.partition.month_end),
            ).fetchone()
        return StagedPartition(
            table=f"{self.target_schema}.{self.staging_name}",
            rows=rows,
            exact_duplicate_rows=duplicates,
            pickup_outside_month=outside,
        )

    def _copy_into_temp_table(self, csv: TripCsv) -> None:
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c.name.lower()), sql.SQL(COPY_TYPES[c.type]))
            for c in self.schema.columns
        )
        self.connection.execute(
            sql.SQL(
                "CREATE TEMP TABLE source_rows "
                "(line_number bigint GENERATED ALWAYS AS IDENTITY, {}) ON COMMIT DROP"
            ).format(columns)
        )
        copy = sql.SQL("COPY source_rows ({}) FROM STDIN (FORMAT csv, HEADER true)").format(
            self.columns
        )
        with self.connection.cursor() as cursor:
            try:
                with cursor.copy(copy) as stream:
                    for chunk in csv.chunks():
                        stream.write(chunk)
            except psycopg.errors.DataError as error:
                raise SourceError(_describe_copy_error(csv.name, error)) from None
            csv.check_parsed_rows(cursor.rowcount)

    def _check_whole_numbers(self, csv: TripCsv) -> None:
        integer_columns = [
            c.name.lower() for c in self.schema.columns if c.type is ColumnType.INTEGER
        ]
        values = sql.SQL(", ").join(
            sql.SQL("({}, {})").format(sql.Literal(name), sql.Identifier(name))
            for name in integer_columns
        )
        found = self.connection.execute(
            sql.SQL(
                "SELECT line_number, v.column_name, v.value FROM source_rows "
                "CROSS JOIN LATERAL (VALUES {}) AS v(column_name, value) "
                "WHERE v.value <> trunc(v.value) OR abs(v.value) > %s "
                "ORDER BY line_number LIMIT 1"
            ).format(values),
            (INT4_MAX,),
        ).fetchone()
        if found:
            raise csv.fractional_integer(*found)

    def _create_staging_sql(self) -> sql.Composed:
        typed_columns = sql.SQL(", ").join(
            sql.SQL(
                "{name}::integer AS {name}" if c.type is ColumnType.INTEGER else "{name}"
            ).format(name=sql.Identifier(c.name.lower()))
            for c in self.schema.columns
        )
        return sql.SQL(
            "CREATE UNLOGGED TABLE {staging} AS "
            "SELECT {unique_row_id} AS unique_row_id, %s::text AS filename, {columns} "
            "FROM source_rows"
        ).format(
            staging=self.staging,
            unique_row_id=unique_row_id_sql(self.schema),
            columns=typed_columns,
        )

    def _staging_stats_sql(self) -> sql.Composed:
        pickup = sql.Identifier(self.schema.pickup.lower())
        return sql.SQL(
            "SELECT count(*), "
            "count(*) - (SELECT count(*) FROM (SELECT DISTINCT * FROM {staging}) AS d), "
            "count(*) FILTER (WHERE {pickup} < %s OR {pickup} >= %s) FROM {staging}"
        ).format(staging=self.staging, pickup=pickup)

    def merge(self) -> MergedPartition:
        filename = self.partition.filename
        with self.connection.transaction():
            if not _table_exists(self.connection, self.target_schema, self.staging_name):
                raise WarehouseError(
                    f"{self.target_schema}.{self.staging_name} is missing: stage the file first"
                )
            deleted = self.connection.execute(
                sql.SQL("DELETE FROM {} WHERE filename = %s").format(self.main), (filename,)
            ).rowcount
            inserted = self.connection.execute(
                sql.SQL(
                    "INSERT INTO {main} (unique_row_id, filename, {columns}) "
                    "SELECT unique_row_id, filename, {columns} FROM {staging}"
                ).format(main=self.main, columns=self.columns, staging=self.staging)
            ).rowcount
            self.connection.execute(sql.SQL("DROP TABLE {}").format(self.staging))
        return MergedPartition(
            table=f"{self.target_schema}.{self.schema.table}", rows=inserted, replaced_rows=deleted
        )

    def ensure_tables(self) -> None:
        """Create the schema and both colours' main tables (the Kestra DDL) if missing: the dbt
        models read both, whichever colour is loaded first. Concurrent loads serialise here."""
        with self.connection.transaction():
            self.connection.execute(
                sql.SQL("SELECT pg_advisory_xact_lock({})").format(
                    _lock_key(self.target_schema, "ddl")
                )
            )
            if not self._schema_exists():
                self.connection.execute(
                    sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.target_schema))
                )
            for schema in TRIP_SCHEMAS.values():
                self._create_main_table(schema)

    def _create_main_table(self, schema: TripSchema) -> None:
        table = sql.Identifier(self.target_schema, schema.table)
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c.name.lower()), sql.SQL(TABLE_TYPES[c.type]))
            for c in schema.columns
        )
        self.connection.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (unique_row_id text, filename text, {})").format(
                table, columns
            )
        )
        for column in ("filename", "unique_row_id"):
            self.connection.execute(
                sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                    sql.Identifier(f"{schema.table}_{column}_idx"), table, sql.Identifier(column)
                )
            )

    def _schema_exists(self) -> bool:
        found = self.connection.execute("SELECT to_regnamespace(%s)", (f'"{self.target_schema}"',))
        return found.fetchone()[0] is not None


def unique_row_id_sql(schema: TripSchema) -> sql.Composed:
    """The seed flow's id: md5 over seven columns cast to text, NULLs as '', no separators."""
    parts = [
        # CAST of a text column is the identity: the seed writes it for VendorID only.
        sql.SQL("COALESCE(CAST({} AS text), '')").format(sql.Identifier(c.name.lower()))
        for c in id_columns(schema)
    ]
    return sql.SQL("md5({})").format(sql.SQL(" || ").join(parts))


_COPY_CONTEXT = re.compile(r"COPY \w+, line (\d+)(?:, column (\w+))?")


def _describe_copy_error(name: str, error: psycopg.errors.DataError) -> str:
    """`file line N, column C: <reason>` from Postgres's COPY error context."""
    reason = error.diag.message_primary or str(error).splitlines()[0]
    match = _COPY_CONTEXT.search(error.diag.context or "")
    if not match:
        return f"{name}: {reason}"
    line, column = match.groups()
    where = f"line {line}" + (f", column {column}" if column else "")
    return f"{name} {where}: {reason}"
