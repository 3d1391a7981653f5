"""What a trip file may hold: one contract, the release files' form, held by every warehouse.

- A file is UTF-8 CSV: fields separated by `,`, lines ending in LF or CRLF, at most
  `MAX_LINE_BYTES` a line, no NUL byte anywhere. Any field may be quoted (`"…"`, a quote inside
  doubled); a line break inside quotes is not a trip (the row count catches it).
- An empty field, quoted or not (`""`), is NULL, whatever the column.
- A timestamp is `YYYY-MM-DD HH:MM:SS`, a real date and time of day (hours 00-23): no date
  alone, no other order, no `T`, no fractional seconds, no `24:00:00`, no `infinity`.
- A number is a plain decimal (`12.5`, `.79`, `-2.5`; an exponent as in `1e-05`, which the
  Parquet months' conversion writes) and finite: no `inf`, `NaN`, `1e400`, hex (`0x10`).
- An integer is such a number that is whole (`2` or `2.0`) and within PostgreSQL's integer.
- Text is anything else that is valid UTF-8 (the header names the columns: `check_header`).

Where each warehouse holds it:
- line length, NUL bytes and hex numbers: `TripCsv` as it reads the file, for every warehouse
  (BigQuery too; the rest of the contract is held by PostgreSQL and DuckDB);
- PostgreSQL: COPY (numbers; `FORCE_NULL` on every column, so a quoted empty field is NULL), then
  the staging pass (timestamps, copied as text, of the form by LIKE patterns, then cast; finite
  numbers);
- DuckDB: its CSV reader (numbers, quoted fields), then the staging pass (the timestamp's form,
  finite numbers).
A value the staging pass refuses is found again in the file by `first_break` (Python, the same
rules), for a message naming line and column whichever engine refused it.
"""

import csv
import math
import re
from collections.abc import Iterable
from datetime import datetime

from taxi_assets.trip_schema import Column, ColumnType

MAX_LINE_BYTES = 1 << 20  # a trip's line has about 150 bytes
TIMESTAMP_FORM = "YYYY-MM-DD HH:MM:SS"
# The form only: whether the date and time exist, the engine's cast says.
TIMESTAMP_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2} ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
NUMBER_PATTERN = r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?"
NOT_A_TIMESTAMP = f"is not a timestamp of the form {TIMESTAMP_FORM}"
NOT_A_NUMBER = "is not a finite decimal number"
# Bytes that make `TripCsv` look at a line closely: a NUL is never allowed, an x may be hex.
SUSPECT_BYTES = (b"\0", b"x", b"X")

_NUMBER = re.compile(NUMBER_PATTERN)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)


def line_too_long(name: str, line: int) -> str:
    return f"{name} line {line}: longer than {MAX_LINE_BYTES:,} bytes (a trip's line has about 150)"


def line_problem(columns: tuple[Column, ...], line: bytes) -> tuple[str | None, str] | None:
    """What of the contract `line` breaks that the engines would not see (a NUL byte, a hex
    number): (its column, if known, and the problem), or None."""
    if b"\0" in line:
        return _column_holding_nul(columns, line), "a NUL byte is not allowed in a trip file"
    text = line.decode("utf-8", errors="replace").rstrip("\r\n")
    for column, field in zip(columns, next(csv.reader([text])), strict=False):
        number = column.type in (ColumnType.FLOAT, ColumnType.INTEGER)
        if number and field and not _NUMBER.fullmatch(field):
            return column.name.lower(), f'"{field}" {NOT_A_NUMBER}'
    return None


def field_problem(type_: ColumnType, field: str) -> str | None:
    """What is wrong with a non-empty field of a column of `type_`, or None."""
    if type_ is ColumnType.TIMESTAMP:
        if not _TIMESTAMP.fullmatch(field):
            return f'"{field}" {NOT_A_TIMESTAMP}'
        try:
            datetime.strptime(field, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return f'"{field}" has the form of a timestamp but is no date and time'
        return None
    number = type_ in (ColumnType.FLOAT, ColumnType.INTEGER)
    if number and not (_NUMBER.fullmatch(field) and math.isfinite(float(field))):
        return f'"{field}" {NOT_A_NUMBER}'
    return None


def first_break(
    columns: tuple[Column, ...], rows: Iterable[list[str]]
) -> tuple[int, str, str] | None:
    """(data line, column, problem) of the first field of `rows` outside the contract."""
    for number, row in enumerate(rows, start=1):
        for column, field in zip(columns, row, strict=False):
            problem = field and field_problem(column.type, field)
            if problem:
                return number, column.name.lower(), problem
    return None


def _column_holding_nul(columns: tuple[Column, ...], line: bytes) -> str | None:
    """The column whose field holds the line's NUL byte (None: the line does not parse)."""
    text = line.decode("utf-8", errors="replace").rstrip("\r\n")
    try:
        fields = next(csv.reader([text.replace("\0", "\ufffd")]))
    except csv.Error:
        return None
    found = [c.name.lower() for c, f in zip(columns, fields, strict=False) if "\ufffd" in f]
    return found[0] if found else None
