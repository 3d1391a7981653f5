"""PostgreSQL's errors said as this project's: by SQLSTATE, by libpq's words, by COPY's context.

A `WarehouseError` is retried (a lost connection, a conflict, a busy server); a
`WarehouseMisconfigured` names what to fix; a `SourceError` names the file's line.
"""

import re

import psycopg

from taxi_assets.errors import OutOfSpace, SourceError, WarehouseError, WarehouseMisconfigured
from taxi_assets.trip_csv import TripCsv

# Connection errors that a setting fixes, by the server's words (libpq gives no SQLSTATE for
# them), and the setting to check.
_SETTING_TO_FIX = {
    re.compile(r"password authentication failed"): "PGPASSWORD",
    re.compile(r'role "[^"]*" does not exist'): "PGUSER",
    re.compile(r'database "[^"]*" does not exist'): "PGDATABASE",
    re.compile(r"no pg_hba\.conf entry"): "PGUSER, PGDATABASE and the server's pg_hba.conf",
}


# SQLSTATEs (or their classes) a retry may cure: a lost or refused connection (08, and errors
# without a SQLSTATE: the connection broke), a conflict with another transaction (40001, 40P01),
# too many connections (53300), a lock wait given up (55P03), a server shutting down or
# restarting, a cancelled statement (57), an I/O error (58).
_TRANSIENT = ("08", "40", "53300", "55P03", "57", "58")
# What to fix for the states no retry cures, by SQLSTATE or class; first match wins.
_FIXES = (
    ("53200", "the server ran out of memory: give it more, or lower its work_mem, "
     "maintenance_work_mem or max_connections"),
    ("53400", "a limit of the server's configuration was reached: raise the one named above in "
     "postgresql.conf"),
    ("53", "the server lacks resources (memory, disk): give it more"),
    ("54", "a limit of PostgreSQL was exceeded: see the reason above"),
    ("23", "a constraint of the table refuses the rows (a trip table has none): drop it"),
    ("42", "the table or schema does not have the layout the load expects: drop or fix it"),
    ("3F", "the schema is gone or unusable: check TAXI_PG_SCHEMA"),
)  # fmt: skip
_OTHER_FIX = "not retried: see the reason above"


def connection_error(
    error: psycopg.OperationalError, host: str, port: int, database: str, user: str
) -> WarehouseError | WarehouseMisconfigured:
    """libpq's refusal to connect, in one line: `WarehouseMisconfigured` naming the setting to
    check when the server's words point at one, else a `WarehouseError` to retry."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else "no reason given"
    where = (
        f"cannot connect to PostgreSQL at {host}:{port} "
        f"(database {database!r}, user {user!r}): {reason}"
    )
    fix = next((f for words, f in _SETTING_TO_FIX.items() if words.search(reason)), None)
    if fix:  # a setting to change: no retry will help
        return WarehouseMisconfigured(f"{where}; check {fix}")
    return WarehouseError(where)


def load_error(
    error: psycopg.Error,
    *,
    host: str,
    port: int,
    database: str,
    user: str,
    sql_schema: str,
    table: str,
    filename: str,
) -> Exception:
    """The server's error during a load as this project's, by its SQLSTATE.

    A `WarehouseError` to retry (a lost connection, a conflict, a busy server), or one line naming
    what to fix, not retried (`WarehouseMisconfigured`; `SourceError` for a value of the file)."""
    state = error.sqlstate or ""
    text = (error.diag.message_primary or str(error)).strip()
    reason = text.splitlines()[0] if text else type(error).__name__
    if isinstance(error, psycopg.errors.DiskFull):
        return OutOfSpace(
            f"PostgreSQL at {host}:{port} (database {database!r}) is out of "
            f"disk space: {reason}; free space on the server's disk"
        )
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        return WarehouseMisconfigured(
            f"PostgreSQL user {user!r} may not do this in schema "
            f"{sql_schema!r} of database {database!r}: {reason}; grant it the "
            "privilege, or set TAXI_PG_SCHEMA / PGUSER to a schema / user that has it"
        )
    what = f"{filename} into {sql_schema}.{table}: {reason} (SQLSTATE {state or 'none'})"
    if is_transient(state):
        return WarehouseError(f"PostgreSQL failed loading {what}; retried")
    if state.startswith("22"):
        return SourceError(f"{filename}: PostgreSQL refuses a value: {reason}")
    fix = next((fix for prefix, fix in _FIXES if state.startswith(prefix)), _OTHER_FIX)
    return WarehouseMisconfigured(f"PostgreSQL refused loading {what}; {fix}")


def is_transient(sqlstate: str | None) -> bool:
    """Whether an error with this SQLSTATE may go away on its own (a retry may cure it)."""
    return not sqlstate or sqlstate.startswith(_TRANSIENT)


_COPY_CONTEXT = re.compile(r"COPY \w+, line (\d+)(?:, column (\w+)(?:: \"(.*)\")?)?", re.S)
_DECIMAL = re.compile(r'^"?\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*"?$')


# What COPY says of a line break where none belongs (a file whose line endings change).
_LINE_BREAK_IN_DATA = (
    "unquoted newline found in data",
    "unquoted carriage return found in data",
    "literal newline found in data",
    "literal carriage return found in data",
)


class IntegerWrittenAsDecimal(Exception):
    """COPY met `1.0` (or `2.5`) in an integer column."""


def decimal_in_integer_column(error: psycopg.errors.DataError) -> bool:
    """Whether COPY refused a decimal number for an integer column."""
    if not isinstance(error, psycopg.errors.InvalidTextRepresentation):
        return False
    message = error.diag.message_primary or ""
    value = message.rpartition(": ")[2]
    return "type integer" in message and bool(_DECIMAL.match(value))


def copy_error(csv: TripCsv, error: psycopg.errors.DataError) -> str:
    """COPY's error, said as `describe_copy_error` does; an unterminated quoted field, which
    COPY finds at the file's end, at the line where it begins."""
    reason = error.diag.message_primary or ""
    if reason.startswith(_LINE_BREAK_IN_DATA):
        mixed = csv.first_mixed_line_ending()
        if mixed is not None:
            return str(mixed)
    odd = csv.first_odd_line() if reason.startswith("unterminated CSV quoted field") else None
    if odd is None:
        return describe_copy_error(csv.name, error)
    line, what = odd
    return f"{csv.name} line {line}: {reason}: {what}"


def describe_copy_error(name: str, error: psycopg.Error) -> str:
    """`file line N, column C: <reason>` from Postgres's COPY error context."""
    reason = error.diag.message_primary or str(error).splitlines()[0]
    match = _COPY_CONTEXT.search(error.diag.context or "")
    if not match:
        return f"{name}: {reason}"
    line, column, _ = match.groups()
    where = f"line {line}" + (f", column {column}" if column else "")
    return f"{name} {where}: {reason}"
