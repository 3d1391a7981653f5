"""What a terminal shows of this location: a user error or a failed run as its cause, in a few
lines, without Dagster's stack traces (the run's page in the UI keeps them).

`install_terminal_hooks()` runs once when a code location loads (`definitions.py`,
`dbt_definitions.py`), in every process that loads it (a CLI command, a code server, a run
worker). It has two effects, both limited to what is printed:

- `sys.excepthook`, which Python calls only for an exception nothing caught, just before the
  process ends (a CLI command; a code server or a run worker catch their own), is wrapped: a
  partition key the assets do not have (`--partition green|2019-01`) is printed as what is wrong
  and the right form, a selection Dagster refuses as Dagster's message, and any other exception
  goes to the hook that was there before (a traceback).
- The logger class (`logging.setLoggerClass`) becomes a subclass of the one in place that, for a
  logger named `dagster`, ends an event carrying an error (a step's failure, the run's) with the
  error's message instead of the error and its stack trace. Dagster's console logger, which a
  run creates from that class, is such a logger: `dg launch` and `dagster asset materialize` then
  print a failed load's cause in a line. A record without a Dagster error passes unchanged, and
  the run's event log, which the UI shows, is written by another handler and keeps everything.
"""

import logging
import re
import sys
from collections.abc import Callable

import dagster as dg

from taxi_assets.dagster_internals import LOG_RECORD_METADATA_ATTR, SerializableErrorInfo
from taxi_assets.partitions import FIRST_MONTH, TaxiPartition, month_dimension

# How Dagster's partition errors quote the key the user typed.
QUOTED_KEY = re.compile(r"partition (?:with )?key `([^`]*)`")
# The name of Dagster's console logger, which prints a run's events in a terminal.
DAGSTER_CONSOLE_LOGGER = "dagster"
# Dagster's own exceptions that only wrap the one that says what went wrong.
DAGSTER_WRAPPER = re.compile(r"Dagster\w*Error")


def error_in_a_line(error: SerializableErrorInfo) -> str:
    """What a run's error says, without its stack trace: a `dg.Failure`'s description, or the
    exception's class and message (under Dagster's wrappers)."""
    while error.cause is not None and DAGSTER_WRAPPER.fullmatch(error.cls_name or ""):
        error = error.cause
    text = error.message.strip()
    qualified_name, separator, message = text.partition(": ")
    if not separator or " " in qualified_name:
        return text
    return message if error.cls_name == "Failure" else f"{error.cls_name}: {message}"


class StackTracesLeftToTheRunPage(logging.Filter):
    """Ends the line of an event that carries an error with that error in a line."""

    def filter(self, record: logging.LogRecord) -> bool:
        metadata = getattr(record, LOG_RECORD_METADATA_ATTR, None) or {}
        event = metadata.get("dagster_event")
        error = getattr(event.event_specific_data, "error", None) if event else None
        if error is not None:
            line = str(record.msg).split("\n\n", 1)[0].rstrip(".")
            record.msg = f"{line}: {error_in_a_line(error)}"
            record.args = ()
        return True


def partition_key_problem(key: str) -> str:
    """What is wrong with a key the partitions do not have, and the right form."""
    try:
        TaxiPartition.parse(key)
    except ValueError as error:
        return str(error)
    last = month_dimension.get_last_partition_key()
    return f"{key!r} is not a partition key: months run from {FIRST_MONTH} to {last}"


def user_error_message(error: BaseException) -> str | None:
    """The message for an error the user can fix from the command line, or None."""
    if not isinstance(error, dg.DagsterUnknownPartitionError | dg.DagsterInvalidSubsetError):
        return None
    quoted = QUOTED_KEY.search(str(error))
    return partition_key_problem(quoted.group(1)) if quoted else str(error).strip()


def user_errors_without_traceback(excepthook: Callable) -> Callable:
    """`excepthook`, except that a user error (`user_error_message`) is printed as its message."""

    def hook(kind: type[BaseException], error: BaseException, traceback: object) -> None:
        message = user_error_message(error)
        if message is None:
            excepthook(kind, error, traceback)
        else:
            print(message, file=sys.stderr)

    hook.taxi_user_errors = True
    return hook


class ErrorsInALine(logging.getLoggerClass()):
    """A logger class whose `dagster` loggers print an error in a line
    (`StackTracesLeftToTheRunPage`)."""

    def __init__(self, name: str, level: int | str = logging.NOTSET) -> None:
        super().__init__(name, level)
        if name == DAGSTER_CONSOLE_LOGGER:
            self.addFilter(StackTracesLeftToTheRunPage())


def install_terminal_hooks() -> None:
    """Wrap `sys.excepthook` and set the logger class, once per process (see the module's
    docstring)."""
    if not getattr(sys.excepthook, "taxi_user_errors", False):
        sys.excepthook = user_errors_without_traceback(sys.excepthook)
    if not issubclass(logging.getLoggerClass(), ErrorsInALine):
        logging.setLoggerClass(ErrorsInALine)
