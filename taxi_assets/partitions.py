"""Colour × month partitions: keys read `2019-01|green` (Dagster orders dimensions by name).

The month dimension starts at 2019-01, the first month of the DataTalksClub release (CSV, up to
2021-07; later months come from the TLC's own Parquet files), and has no end date:
`end_offset=1` makes the current calendar month a partition as soon as it starts, so a schedule
can target either the month that just ended or the month it fires in. Months the source has not
published yet simply fail (or, under the schedules, are skipped) with a clear message.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import dagster as dg

from taxi_assets.trip_schema import TAXI_COLOURS

FIRST_MONTH = "2019-01"
# The last month the DataTalksClub release publishes (the default source).
LAST_RELEASE_MONTH = "2021-07"

taxi_dimension = dg.StaticPartitionsDefinition(list(TAXI_COLOURS))
month_dimension = dg.MonthlyPartitionsDefinition(start_date=FIRST_MONTH, fmt="%Y-%m", end_offset=1)
taxi_month_partitions = dg.MultiPartitionsDefinition(
    {"taxi": taxi_dimension, "month": month_dimension}
)


@dataclass(frozen=True)
class TaxiPartition:
    """One colour-month: what a run loads, and the names derived from it."""

    taxi: str
    month: str  # YYYY-MM

    @classmethod
    def from_key(cls, key: str | dg.MultiPartitionKey) -> "TaxiPartition":
        """The partition of a Dagster partition key (`2019-01|green`)."""
        dims = taxi_month_partitions.get_partition_key_from_str(str(key)).keys_by_dimension
        return cls(taxi=dims["taxi"], month=dims["month"])

    @classmethod
    def parse(cls, text: str) -> "TaxiPartition":
        """A key typed by a person (`2019-01|green`), or a ValueError saying the right form."""
        parts = text.split("|")
        if len(parts) == 2 and parts[0] in TAXI_COLOURS:
            raise ValueError(
                f"{text!r} is not a partition key: month first, then colour ({parts[1]}|{parts[0]})"
            )
        if len(parts) != 2 or parts[1] not in TAXI_COLOURS or not _is_month(parts[0]):
            raise ValueError(f"{text!r} is not a partition key: MONTH|COLOUR, e.g. 2019-01|green")
        if parts[0] < FIRST_MONTH:
            raise ValueError(f"{text!r}: months start at {FIRST_MONTH}")
        return cls(taxi=parts[1], month=parts[0])

    @classmethod
    def of_run(cls, key: str) -> "TaxiPartition":
        """The partition a run's key names (its tags can say anything), or a ValueError in a
        line when the partitions definition has no such key."""
        partition = cls.parse(key)
        if not month_dimension.has_partition_key(partition.month):
            raise ValueError(f"{key!r}: no such month yet (months run to the current one)")
        return partition

    @property
    def key(self) -> dg.MultiPartitionKey:
        """The Dagster partition key."""
        return dg.MultiPartitionKey({"taxi": self.taxi, "month": self.month})

    @property
    def in_release(self) -> bool:
        """Whether the DataTalksClub release publishes this month (as CSV); later months come
        from the TLC's Parquet files."""
        return self.month <= LAST_RELEASE_MONTH

    @property
    def filename(self) -> str:
        """The name stored in the `filename` column: the release's CSV name, as the Kestra flow
        stores it, or the TLC's Parquet name for later months (whichever source a setting
        forces: a month keeps one name, so a re-load replaces its rows)."""
        return self.release_filename if self.in_release else self.tlc_filename

    @property
    def release_filename(self) -> str:
        """The release's CSV name: `green_tripdata_2019-01.csv`."""
        return f"{self.taxi}_tripdata_{self.month}.csv"

    @property
    def source_filename(self) -> str:
        """The release's file: `green_tripdata_2019-01.csv.gz`."""
        return f"{self.release_filename}.gz"

    @property
    def tlc_filename(self) -> str:
        """The TLC's file: `green_tripdata_2024-01.parquet`."""
        return f"{self.taxi}_tripdata_{self.month}.parquet"

    @property
    def month_start(self) -> date:
        """The first day of the month."""
        return datetime.strptime(self.month, "%Y-%m").date()

    @property
    def month_end(self) -> date:
        """The first day of the next month (exclusive bound)."""
        start = self.month_start
        return date(start.year + start.month // 12, start.month % 12 + 1, 1)

    @property
    def month_bounds(self) -> tuple[date, date]:
        """[start, end) of the month."""
        return self.month_start, self.month_end

    @property
    def month_edges(self) -> tuple[date, date]:
        """The end of the month's first day and the start of its last day."""
        return self.month_start + timedelta(days=1), self.month_end - timedelta(days=1)


def _is_month(text: str) -> bool:
    try:
        return datetime.strptime(text, "%Y-%m").strftime("%Y-%m") == text
    except ValueError:
        return False
