"""The SQL of a load that PostgreSQL and DuckDB share, as pure functions that return its text.

Identifiers go through the engine's `quote`; values are `%s` parameters. What differs between
the engines comes in a `Dialect`: its types, how a column is written as the text the Kestra
flow hashes, and how a value read from the file is held to the contract (`trip_contract.py`).
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_csv import INT4_MAX
from taxi_assets.trip_schema import Column, ColumnType, TripSchema, id_columns

Quote = Callable[[str], str]


@dataclass(frozen=True)
class Dialect:
    """What an engine's SQL needs that the other's does not share."""

    quote: Quote
    # The main table's type for each logical column type.
    table_types: Mapping[ColumnType, str]
    # A column (quoted) as the text PostgreSQL's CAST(... AS text) writes (the Kestra flow hashes
    # that text).
    id_text: Callable[[str, ColumnType], str]
    # A column (quoted) of the scratch table, as the main table's type, held to the contract
    # where the engine's reading did not.
    held_to_contract: Callable[[str, ColumnType], str]


def scratch_table_name(schema: TripSchema, partition: TaxiPartition) -> str:
    """The scratch table: where the file's rows land as parsed, before they have ids
    (`green_tripdata_scratch_2019_01`)."""
    return f"{schema.table}_scratch_{partition.month.replace('-', '_')}"


def qualified(quote: Quote, sql_schema: str, table: str) -> str:
    """`"schema"."table"`."""
    return f"{quote(sql_schema)}.{quote(table)}"


def column_names(quote: Quote, columns: Iterable[Column]) -> str:
    """The columns' names, quoted and lower-case, comma-separated."""
    return ", ".join(quote(c.name.lower()) for c in columns)


def final_column_names(quote: Quote, schema: TripSchema) -> str:
    """All of the trip table's columns, as the staged rows have them."""
    return f"unique_row_id, filename, {column_names(quote, schema.table_columns)}"


def scratch_columns(
    quote: Quote,
    columns: Iterable[Column],
    read_types: Mapping[ColumnType, str],
    integers_as_decimals: bool,
) -> str:
    """The scratch table's columns with their types (integers as the float type when the file
    writes `1.0`)."""
    types = dict(read_types)
    if integers_as_decimals:
        types[ColumnType.INTEGER] = types[ColumnType.FLOAT]
    return ", ".join(f"{quote(c.name.lower())} {types[c.type]}" for c in columns)


def unique_row_id_sql(dialect: Dialect, schema: TripSchema) -> str:
    """The Kestra flow's id: md5 over its seven columns as text, NULLs as '', no separators."""
    parts = [
        f"COALESCE({dialect.id_text(dialect.quote(c.name.lower()), c.type)}, '')"
        for c in id_columns(schema)
    ]
    return f"md5({' || '.join(parts)})"


def whole_integer_sql(column: str, integer_type: str, text_type: str) -> str:
    """An integer column read as a decimal, cast; a value that is not a whole int4 fails the cast
    of a text that names it (then found again by `first_fractional_integer_sql`)."""
    return (
        f"CASE WHEN {column} <> trunc({column}) OR abs({column}) > {INT4_MAX} "
        f"THEN CAST('not a whole number: ' || CAST({column} AS {text_type}) AS {integer_type}) "
        f"ELSE CAST({column} AS {integer_type}) END"
    )


def final_value_sql(dialect: Dialect, column: Column, integers_as_decimals: bool) -> str:
    """One column of the scratch table, as the main table holds it, named."""
    name = dialect.quote(column.name.lower())
    if column.type is not ColumnType.INTEGER:
        return f"{dialect.held_to_contract(name, column.type)} AS {name}"
    if not integers_as_decimals:
        return name
    types = dialect.table_types
    return f"{whole_integer_sql(name, types[ColumnType.INTEGER], types[ColumnType.TEXT])} AS {name}"


def final_rows_sql(
    dialect: Dialect,
    schema: TripSchema,
    file_columns: tuple[Column, ...],
    scratch: str,
    integers_as_decimals: bool,
) -> str:
    """One pass from `scratch` (the scratch table, or view) to the final rows.

    Ids, filename (the one parameter), integer columns checked and cast, the other columns held
    to the contract, NULL for the table's newer columns the file lacks."""
    types = dialect.table_types
    values = ", ".join(
        final_value_sql(dialect, c, integers_as_decimals)
        if c in file_columns
        else f"CAST(NULL AS {types[c.type]}) AS {dialect.quote(c.name.lower())}"
        for c in schema.table_columns
    )
    return (
        f"SELECT {unique_row_id_sql(dialect, schema)} AS unique_row_id, "
        f"CAST(%s AS {types[ColumnType.TEXT]}) AS filename, {values} FROM {scratch}"
    )


def insert_final_rows_sql(
    dialect: Dialect,
    schema: TripSchema,
    file_columns: tuple[Column, ...],
    target: str,
    scratch: str,
    integers_as_decimals: bool,
) -> str:
    """INSERT into `target` the final rows of `scratch` (`final_rows_sql`: one parameter, the
    filename)."""
    select = final_rows_sql(dialect, schema, file_columns, scratch, integers_as_decimals)
    return f"INSERT INTO {target} ({final_column_names(dialect.quote, schema)}) {select}"


def pickups_outside_month_sql(quote: Quote, schema: TripSchema, table: str) -> str:
    """The count of `table`'s rows whose pickup falls outside the month (`%s`: its bounds)."""
    pickup = quote(schema.pickup.lower())
    return f"SELECT count(*) FROM {table} WHERE {pickup} < %s OR {pickup} >= %s"


def pickups_outside_month_of_file_sql(quote: Quote, schema: TripSchema, main: str) -> str:
    """The count of the file's rows in `main` whose pickup falls outside the month (`%s`: the
    filename, the month's bounds)."""
    pickup = quote(schema.pickup.lower())
    return f"SELECT count(*) FROM {main} WHERE filename = %s AND ({pickup} < %s OR {pickup} >= %s)"


def first_fractional_integer_sql(
    quote: Quote, file_columns: Iterable[Column], scratch: str, row_order: str
) -> str:
    """(line, column, value) of the first integer of `scratch` that is not a whole int4
    (`%s`: INT4_MAX); `row_order` numbers the rows as the file's lines (`ORDER BY ctid`)."""
    names = [c.name.lower() for c in file_columns if c.type is ColumnType.INTEGER]
    values = ", ".join(f"('{name}', {quote(name)})" for name in names)
    return (
        f"SELECT line_number, v.column_name, v.value FROM "
        f"(SELECT row_number() OVER ({row_order}) AS line_number, * "
        f"FROM {scratch}) AS s "
        f"CROSS JOIN LATERAL (VALUES {values}) AS v(column_name, value) "
        "WHERE v.value <> trunc(v.value) OR abs(v.value) > %s "
        "ORDER BY line_number LIMIT 1"
    )


def count_file_rows_sql(main: str) -> str:
    """The count of the file's rows in `main` (`%s`: the filename)."""
    return f"SELECT count(*) FROM {main} WHERE filename = %s"


def delete_file_rows_sql(main: str) -> str:
    """DELETE the file's rows from `main` (`%s`: the filename)."""
    return f"DELETE FROM {main} WHERE filename = %s"


def insert_staged_rows_sql(quote: Quote, schema: TripSchema, main: str, staging: str) -> str:
    """INSERT into `main` every row of `staging`."""
    columns = final_column_names(quote, schema)
    return f"INSERT INTO {main} ({columns}) SELECT {columns} FROM {staging}"


def table_exists_sql() -> str:
    """Whether a table exists (`%s`: its schema and name): a count, 0 or 1."""
    return (
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = %s"
    )
