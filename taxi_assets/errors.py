"""The errors a user reads, each class saying whether trying again can help.

Every error the project raises for a person to act on is a `TaxiError`: its message says what
and where in a line, without secrets. `retryable` is the class's meaning, not the catcher's: the
load step has one `except TaxiError` and lets its retry policy try again only when `retryable`
(a dropped connection, a server restarting), never for what will fail the same way (a bad file,
a setting, a full disk). Where a driver's error is translated, it stays attached as the cause
(`raise … from error`): the message is the line, the cause the diagnostics in the event log.
"""

import errno
from typing import ClassVar


class TaxiError(Exception):
    """An error whose message a user can act on."""

    retryable: ClassVar[bool] = False


class SettingError(TaxiError, ValueError):
    """A variable whose value cannot be used; the message names it and says what it must be."""


class SourceError(TaxiError):
    """The file is missing or unusable: the same file fails the same way."""


class MonthNotPublished(SourceError):
    """The source has no file for this month (HTTP 404 or a missing local file)."""


class SourceUnavailable(TaxiError):
    """The source could not be reached or the transfer broke off: worth trying again later."""

    retryable = True


class OutOfSpace(TaxiError):
    """A disk is full (the download folder's, the database's): the message names it; trying
    again will not help before space is freed."""


class WarehouseError(TaxiError):
    """The warehouse could not finish the load for now (a dropped connection, a lock, a server
    restarting): worth trying again."""

    retryable = True


class WarehouseMisconfigured(TaxiError):
    """Something to fix outside the file (a setting, a credential, a privilege, a table's
    layout, the server's resources): trying again will not help. The message says what."""


class ServerError(TaxiError):
    """The Dagster server a command talks to is not there, or said no."""


class ServerUnavailable(ServerError):
    """The Dagster server gave no answer or a server error: it may be restarting."""

    retryable = True


def no_space(error: BaseException) -> bool:
    """Whether `error` says a disk is full (an OSError, or a database's text of one)."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    return "No space left on device" in str(error)
