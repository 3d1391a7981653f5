"""Names that moved to `download.py` and `trip_csv.py`, for the modules that still import them
from here (resources.py, variables.py, getting_started.py); to be removed once they import from
those modules."""

from taxi_assets.download import (
    DEFAULT_SOURCE_URL,
    DEFAULT_TLC_URL,
    SCHEMES,
    FetchedFile,
    MinimumRate,
    fetch,
    fetch_path,
    is_published,
    redact_url,
    source_url,
)
from taxi_assets.trip_csv import DEFAULT_MAX_ROWS

__all__ = [
    "DEFAULT_MAX_ROWS",
    "DEFAULT_SOURCE_URL",
    "DEFAULT_TLC_URL",
    "SCHEMES",
    "FetchedFile",
    "MinimumRate",
    "fetch",
    "fetch_path",
    "is_published",
    "redact_url",
    "source_url",
]
