"""The SQL the SQL warehouses share (`load_sql.py`), read as text: no database, no server.

Identifiers are quoted here as `<name>`, so a name that reaches the SQL without the engine's
quote function shows up bare.
"""

import re

import pytest

from taxi_assets.trip_csv import INT4_MAX
from taxi_assets.trip_schema import GREEN, YELLOW, ColumnType
from taxi_assets.warehouses import load_sql
from taxi_assets.warehouses.load_sql import Dialect
from taxi_assets_testkit.kestra_flow import UNIQUE_ROW_ID

pytestmark = pytest.mark.unit

TYPES = {
    ColumnType.TEXT: "text",
    ColumnType.TIMESTAMP: "timestamp",
    ColumnType.INTEGER: "integer",
    ColumnType.FLOAT: "double precision",
}


def quote(name: str) -> str:
    return f"<{name}>"


DIALECT = Dialect(
    quote=quote,
    table_types=TYPES,
    id_text=lambda column, type_: f"TEXT[{column}]",
    held_to_contract=lambda column, type_: f"HELD[{column}]",
)


def test_the_id_hashes_the_kestra_flows_columns_in_its_order():
    for schema, prefix in ((GREEN, "lpep"), (YELLOW, "tpep")):
        flow = UNIQUE_ROW_ID.format(staging="s", p=prefix, file="f")
        expected = re.findall(r"COALESCE\((?:CAST\()?(\w+)", flow)

        sql = load_sql.unique_row_id_sql(DIALECT, schema)

        assert re.findall(r"COALESCE\(TEXT\[<(\w+)>\], ''\)", sql) == [c.lower() for c in expected]
        assert sql.startswith("md5(") and sql.endswith(")")
        assert sql.count(" || ") == len(expected) - 1  # no separators between the parts


def test_the_final_rows_name_every_column_of_the_table_quoted_in_order():
    sql = load_sql.final_rows_sql(DIALECT, GREEN, GREEN.columns, "<raw>", False)

    named = re.findall(r"(<\w+>|unique_row_id|filename)(?=, | FROM)", sql)
    assert named == ["unique_row_id", "filename"] + [
        quote(c.name.lower()) for c in GREEN.table_columns
    ]
    assert sql.endswith(" FROM <raw>")
    assert sql.count("%s") == 1  # the filename, the one parameter
    assert "CAST(%s AS text) AS filename" in sql


def test_a_newer_column_the_file_lacks_is_null_of_its_type():
    newer = GREEN.newer_columns[0]

    sql = load_sql.final_rows_sql(DIALECT, GREEN, GREEN.columns, "<raw>", False)

    assert newer not in GREEN.columns
    assert f"CAST(NULL AS {TYPES[newer.type]}) AS {quote(newer.name.lower())}" in sql


def test_other_columns_are_held_to_the_contract_and_integers_checked_when_read_as_decimals():
    plain = load_sql.final_rows_sql(DIALECT, GREEN, GREEN.columns, "<raw>", False)
    decimals = load_sql.final_rows_sql(DIALECT, GREEN, GREEN.columns, "<raw>", True)

    assert "HELD[<lpep_pickup_datetime>] AS <lpep_pickup_datetime>" in plain
    assert "HELD[<passenger_count>]" not in plain
    assert ", <passenger_count>, " in plain  # as read: the table's type already
    assert "CASE WHEN <passenger_count> <> trunc(<passenger_count>)" in decimals
    assert f"abs(<passenger_count>) > {INT4_MAX}" in decimals
    assert "CAST('not a whole number: ' || CAST(<passenger_count> AS text) AS integer)" in decimals


def test_the_insert_names_the_final_columns_then_selects_them():
    sql = load_sql.insert_final_rows_sql(DIALECT, GREEN, GREEN.columns, "<t>", "<raw>", False)

    columns = load_sql.final_column_names(quote, GREEN)
    assert sql.startswith(f"INSERT INTO <t> ({columns}) SELECT md5(")


def test_scratch_columns_type_integers_as_floats_only_when_asked():
    integer = next(c for c in GREEN.columns if c.type is ColumnType.INTEGER)
    column = quote(integer.name.lower())

    assert f"{column} integer" in load_sql.scratch_columns(quote, GREEN.columns, TYPES, False)
    as_decimals = load_sql.scratch_columns(quote, GREEN.columns, TYPES, True)
    assert f"{column} double precision" in as_decimals
    assert as_decimals.count(", ") == len(GREEN.columns) - 1


def test_the_first_fractional_integer_is_looked_for_in_integer_columns_only():
    sql = load_sql.first_fractional_integer_sql(quote, GREEN.columns, "<raw>", "ORDER BY ctid")

    integers = [c.name.lower() for c in GREEN.columns if c.type is ColumnType.INTEGER]
    assert re.findall(r"\('(\w+)', <(\w+)>\)", sql) == [(name, name) for name in integers]
    assert "row_number() OVER (ORDER BY ctid)" in sql and "FROM <raw>" in sql
    assert sql.count("%s") == 1  # INT4_MAX


def test_the_statements_of_a_merge_take_the_filename_as_a_parameter():
    assert load_sql.count_file_rows_sql("<m>") == "SELECT count(*) FROM <m> WHERE filename = %s"
    assert load_sql.delete_file_rows_sql("<m>") == "DELETE FROM <m> WHERE filename = %s"
    columns = load_sql.final_column_names(quote, YELLOW)
    assert load_sql.insert_staged_rows_sql(quote, YELLOW, "<m>", "<s>") == (
        f"INSERT INTO <m> ({columns}) SELECT {columns} FROM <s>"
    )


def test_pickups_outside_the_month_take_its_bounds_as_parameters():
    sql = load_sql.pickups_outside_month_sql(quote, YELLOW, "<s>")

    assert sql == (
        "SELECT count(*) FROM <s> WHERE <tpep_pickup_datetime> < %s OR <tpep_pickup_datetime> >= %s"
    )


def test_identifiers_go_through_the_quote_function():
    assert load_sql.qualified(quote, "public", "green_tripdata") == "<public>.<green_tripdata>"
    sql = load_sql.final_rows_sql(DIALECT, YELLOW, YELLOW.columns, "<raw>", True)
    bare = {c.name.lower() for c in YELLOW.table_columns} & set(
        re.sub(r"<\w+>|'[^']*'", "", sql).replace("(", " ").replace(")", " ").split()
    )
    assert not bare
