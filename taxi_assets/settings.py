"""The project's settings: the environment, read once into one frozen value, when a code
location's definitions are built (`definitions.py`, `dbt_definitions.py`) or a command starts
(`summary.py`). The definitions are made from that value; no other module reads the environment
(but for what dbt reads itself: `dbt_models.manifest_dir` keys the dbt manifest on it), and none
writes it.

Every variable is parsed from the table in `variables.py`, so a bad value stops the code
location from loading with one line naming it (`NAME='value': what it must be`; a secret's value
is never shown). The resources' fields are bound to their variables as `dg.EnvVar` where set
(`bound`): the UI then shows a variable's name, never its value. They carry no constraint of
their own: pydantic would check the `dg.EnvVar` object, not its value.
"""

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import dagster as dg

from taxi_assets.errors import SettingError
from taxi_assets.variables import BY_NAME, READ_BY_CODE, ScheduleMonth, SourceKind, Warehouse


def parsed_values(environ: Mapping[str, str]) -> dict[str, object]:
    """Every variable this project's code reads: its value in `environ`, parsed, or its
    default. A bad value raises a `SettingError` naming it."""
    try:
        warehouse = str(BY_NAME["TAXI_WAREHOUSE"].value(environ.get("TAXI_WAREHOUSE")))
        return {name: BY_NAME[name].value(environ.get(name), warehouse) for name in READ_BY_CODE}
    except ValueError as error:
        raise SettingError(str(error)) from None


def default_values() -> dict[str, object]:
    return parsed_values({})


@dataclass(frozen=True)
class Settings:
    """The value of every variable the code reads; `variables_set`: those the environment
    sets (empty counts as unset)."""

    values: Mapping[str, object] = field(default_factory=default_values)
    variables_set: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """The settings `environ` (the process environment by default) gives."""
        environ = os.environ if environ is None else environ
        variables_set = frozenset(name for name in READ_BY_CODE if environ.get(name))
        return cls(parsed_values(environ), variables_set)

    @classmethod
    def for_code_location(cls) -> "Settings":
        """The process environment's settings. A value that cannot be used stops the code location
        with its one line: the UI shows it as the location's error, and a terminal (`dg launch`,
        `dagster asset materialize`) prints that line alone, without a traceback."""
        try:
            return cls.from_env()
        except SettingError:
            sys.excepthook = _settings_errors_in_one_line(sys.excepthook)
            raise

    def bound(self, name: str) -> Any:
        """A resource field's value: the variable as a `dg.EnvVar` where the environment sets
        it (the UI shows its name, never its value), else its default."""
        variable = BY_NAME[name]
        if name not in self.variables_set or variable.is_choice:  # a `Literal` field: a value
            return self.values[name]
        return dg.EnvVar.int(name) if variable.is_whole_number else dg.EnvVar(name)

    @property
    def warehouse(self) -> Warehouse:
        return cast(Warehouse, self.values["TAXI_WAREHOUSE"])

    @property
    def retry_delay_seconds(self) -> float:
        """The load's first retry delay."""
        return cast(float, self.values["TAXI_RETRY_DELAY_SECONDS"])

    @property
    def schedule_timezone(self) -> str:
        return cast(str, self.values["TAXI_SCHEDULE_TIMEZONE"])

    @property
    def schedule_month(self) -> ScheduleMonth:
        return cast(ScheduleMonth, self.values["TAXI_SCHEDULE_MONTH"])

    @property
    def source_kind(self) -> SourceKind:
        return cast(SourceKind, self.values["TAXI_SOURCE_KIND"])

    @property
    def pool(self) -> str:
        """The concurrency pool of whatever writes to the warehouse (loads, dbt builds)."""
        return f"taxi_{self.warehouse}"


def _settings_errors_in_one_line(excepthook: Callable) -> Callable:
    """`excepthook`, except that a `SettingError` (or one that caused the error) is printed as
    its message alone."""

    def hook(kind: type[BaseException], error: BaseException, traceback: object) -> None:
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, SettingError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            excepthook(kind, error, traceback)
        else:
            print(cause, file=sys.stderr)

    return hook
