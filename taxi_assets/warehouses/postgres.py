"""PostgreSQL: the Kestra flow's warehouse. COPY streams the file in; a month is swapped in whole.

The resource and its connections, here; a load's staging (`postgres_load.py`), its tables and
the swap (`postgres_tables.py`), its errors (`postgres_errors.py`), and how a dead connection is
given up (`postgres_dead_connections.py`) in modules of their own.
"""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial

import psycopg
from psycopg import sql

from taxi_assets.errors import WarehouseMisconfigured
from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import ColumnType, TripSchema
from taxi_assets.variables import BY_NAME, variable_field
from taxi_assets.warehouses.base import PartitionLoad, TaxiWarehouse
from taxi_assets.warehouses.postgres_dead_connections import DeadConnectionLimits
from taxi_assets.warehouses.postgres_errors import connection_error, load_error
from taxi_assets.warehouses.postgres_load import PostgresPartitionLoad, pin_text_formats
from taxi_assets.warehouses.postgres_query import built_sql
from taxi_assets.warehouses.postgres_tables import TABLE_TYPES, table_exists
from taxi_assets.warehouses.trip_queries import TripQueries

__all__ = ["PostgresWarehouse"]


class PostgresWarehouse(TaxiWarehouse):
    """PostgreSQL, configured like libpq (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)."""

    host: str = variable_field("PGHOST")
    port: int = variable_field("PGPORT")
    user: str = variable_field("PGUSER")
    password: str | None = variable_field("PGPASSWORD")
    database: str = variable_field("PGDATABASE")
    sql_schema: str = variable_field("TAXI_PG_SCHEMA")
    dead_connection_seconds: int = variable_field("TAXI_PG_DEAD_CONNECTION_SECONDS")

    @property
    def single_file(self) -> bool:
        return False  # a server: loads and dbt share it

    def exclusive_access(self) -> AbstractContextManager[None]:
        return nullcontext()  # a server takes any number of writers

    @property
    def kind(self) -> str:
        return "postgres"

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection; callers open explicit transactions. A connection that goes
        silent counts as dead after `dead_connection_seconds`, on both ends."""
        limits = DeadConnectionLimits(self.dead_connection_seconds)
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
                **limits.client_parameters(),
            )
        except psycopg.OperationalError as error:
            raise connection_error(error, self.host, self.port, self.database, self.user) from error
        with connection:
            limits.apply_to_session(connection)
            yield connection

    @contextmanager
    def open_partition(
        self, schema: TripSchema, partition: TaxiPartition
    ) -> Iterator[PartitionLoad]:
        self._check_schema_name()
        with self.connect() as connection:
            pin_text_formats(connection)
            load = PostgresPartitionLoad(
                connection, self.sql_schema, schema, partition, self.connect
            )
            try:
                with load.locked():
                    load.ensure_tables()
                    yield load
            except psycopg.Error as error:
                raise load_error(
                    error,
                    host=self.host,
                    port=self.port,
                    database=self.database,
                    user=self.user,
                    sql_schema=self.sql_schema,
                    table=schema.table,
                    filename=partition.filename,
                ) from error

    def _check_schema_name(self) -> None:
        """A name dbt cannot quote (it writes `"{name}"`, unescaped): a setting to fix."""
        try:
            BY_NAME["TAXI_PG_SCHEMA"].value(self.sql_schema)
        except ValueError as error:
            raise WarehouseMisconfigured(str(error)) from None

    def qualified_table(self, table: str) -> str:
        return f"{self.database}.{self.sql_schema}.{table}"

    @property
    def table_types(self) -> Mapping[ColumnType, str]:
        return TABLE_TYPES

    @contextmanager
    def reading(self) -> Iterator[TripQueries]:
        with self.connect() as connection:
            yield TripQueries(partial(self._query_on, connection), self.column_names)

    def _query_on(
        self,
        connection: psycopg.Connection,
        schema: TripSchema,
        query: str,
        params: Sequence[object],
    ) -> list[tuple]:
        if not table_exists(connection, self.sql_schema, schema.table):
            return []
        table = sql.Identifier(self.sql_schema, schema.table)
        return connection.execute(sql.SQL(built_sql(query)).format(table=table), params).fetchall()
