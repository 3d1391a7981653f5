"""The TLC's own monthly Parquet files, for the months after the DataTalksClub release.

A Parquet month is written out as the release's CSV (its header and then the newer columns of the
colour, values as the CSV writes them)
by DuckDB, which reads Parquet natively and streams it (row group by row group, memory bounded);
from there one load path serves both kinds of month on every warehouse, ids included.

How a value is written (so that a trip gets the same `unique_row_id` as in a release CSV):
- timestamps as `YYYY-MM-DD HH:MM:SS` (the CSVs have whole seconds);
- whole numbers in text or integer columns as integers (`VendorID` 2, `RatecodeID` 1.0 → `1`);
- other numbers as DuckDB's shortest text for them (the id reads them back as the same double);
- a null as an empty field.
The newer columns (`airport_fee`, spelled `Airport_fee` in some years; `cbd_congestion_fee` since
2025-01) are written after the release's, empty when a file lacks them; other columns the trip
tables do not have are not kept.
"""

import gzip
import shutil
from pathlib import Path

import duckdb

from taxi_assets.errors import OutOfSpace, SourceError, no_space
from taxi_assets.trip_csv import DEFAULT_MAX_ROWS, too_many_rows
from taxi_assets.trip_schema import Column, ColumnType, TripSchema
from taxi_assets.warehouses.duckdb import text_literal

NUMBER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL")  # fmt: skip
TEXT_TYPES = ("VARCHAR",)
# DuckDB may use this much memory for a month; beyond it, it spills to the download folder.
MEMORY_LIMIT = "1GB"


def write_release_csv(
    parquet: Path, schema: TripSchema, out: Path, name: str, max_rows: int = DEFAULT_MAX_ROWS
) -> Path:
    """`out` (gzip CSV), holding the Parquet file's rows as the release would have written them.
    A file that is not Parquet, misses a column or has one of an unusable type, or holds more
    than `max_rows` rows (its footer says how many), raises a SourceError naming `name`."""
    config = {"memory_limit": MEMORY_LIMIT, "threads": 2, "temp_directory": str(out.parent)}
    with duckdb.connect(config=config) as connection:
        source = f"read_parquet({text_literal(str(parquet))})"
        try:
            described = connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        except duckdb.Error as error:
            raise SourceError(f"{name} is not a readable Parquet file: {_reason(error)}") from error
        _check_row_count(connection, parquet, name, max_rows)
        found = {column: type_ for column, type_, *_ in described}
        values = ", ".join(
            [
                *(_value(column, _find(column, found, schema, name), name)
                  for column in schema.columns),
                *(_newer_value(column, found, name) for column in schema.newer_columns),
            ]
        )  # fmt: skip
        plain = out.with_name(out.name.removesuffix(".gz"))
        try:
            connection.execute(
                f"COPY (SELECT {values} FROM {source}) TO {text_literal(str(plain))} "
                "(FORMAT csv, HEADER)"
            )
        except duckdb.Error as error:
            if no_space(error):
                raise _out_of_space(out) from error
            raise SourceError(f"{name}: cannot be read to its end: {_reason(error)}") from error
    try:
        _gzip_fast(plain, out)
    except OSError as error:
        if not no_space(error):
            raise
        raise _out_of_space(out) from error
    return out


def _out_of_space(out: Path) -> OutOfSpace:
    return OutOfSpace(
        f"no space left on device in {out.parent} for {out.name} (the Parquet month as CSV): "
        "free space there, or point TMPDIR at a larger disk"
    )


def _check_row_count(
    connection: duckdb.DuckDBPyConnection, parquet: Path, name: str, max_rows: int
) -> None:
    """The footer's row count, read before any row is."""
    [(rows,)] = connection.execute(
        f"SELECT num_rows FROM parquet_file_metadata({text_literal(str(parquet))})"
    ).fetchall()
    if rows > max_rows:
        raise SourceError(too_many_rows(name, max_rows))


def _gzip_fast(plain: Path, out: Path) -> None:
    """`plain` gzipped into `out` at level 1, then removed: Python's gzip at level 1, as DuckDB's
    own gzip writer is many times slower than writing the CSV."""
    with plain.open("rb") as source, gzip.open(out, "wb", compresslevel=1) as target:
        shutil.copyfileobj(source, target, 1 << 20)
    plain.unlink()


def _find(column: Column, found: dict[str, str], schema: TripSchema, name: str) -> tuple[str, str]:
    """The file's column for `column` (names compared without case: `Airport_fee`), and its
    DuckDB type."""
    by_lower_name = {found_name.lower(): found_name for found_name in found}
    match = by_lower_name.get(column.name.lower())
    if match is None:
        missing = [c.name for c in schema.columns if c.name.lower() not in by_lower_name]
        raise SourceError(
            f"{name}: no column {', '.join(missing)} (a {schema.taxi} trip file needs "
            f"{', '.join(schema.header)})"
        )
    return match, found[match]


def _newer_value(column: Column, found: dict[str, str], name: str) -> str:
    """A newer column as the CSV writes it: the file's column if it has one, else empty."""
    by_lower_name = {found_name.lower(): found_name for found_name in found}
    match = by_lower_name.get(column.name.lower())
    if match is None:
        return f'NULL AS "{column.name}"'
    return _value(column, (match, found[match]), name)


def _value(column: Column, found: tuple[str, str], name: str) -> str:
    """The SQL that writes `column` as the release CSV would."""
    source_name, type_ = found
    field = f'"{source_name}"'
    base_type = type_.split("(")[0]
    if (
        column.type is ColumnType.TIMESTAMP
        and base_type.startswith("TIMESTAMP")
        and ("TIME ZONE" not in type_)
    ):
        text = f"strftime({field}, '%Y-%m-%d %H:%M:%S')"
    elif base_type in NUMBER_TYPES and column.type is not ColumnType.TIMESTAMP:
        whole = f"{field} = trunc({field}) AND abs({field}) < 1e15"
        text = (
            f"CAST({field} AS VARCHAR)"
            if column.type is ColumnType.FLOAT
            else f"CASE WHEN {whole} THEN CAST(CAST({field} AS BIGINT) AS VARCHAR) "
            f"ELSE CAST({field} AS VARCHAR) END"
        )
    elif base_type in TEXT_TYPES and column.type is ColumnType.TEXT:
        text = field
    else:
        raise SourceError(
            f"{name}: column {source_name} is {type_}, not {_expected(column.type)} "
            "as a trip file has it"
        )
    return f'{text} AS "{column.name}"'


def _expected(type_: ColumnType) -> str:
    return {
        ColumnType.TIMESTAMP: "a timestamp without time zone",
        ColumnType.FLOAT: "a number",
        ColumnType.INTEGER: "a number",
        ColumnType.TEXT: "a number or text",
    }[type_]


def _reason(error: duckdb.Error) -> str:
    return str(error).strip().splitlines()[0]
