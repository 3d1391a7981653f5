"""Monthly schedules, as the scheduled Kestra flow's two cron triggers: green at 09:00, yellow at
10:00 on the 1st, each requesting its own colour only.

Which month a tick loads (`TAXI_SCHEDULE_MONTH`):
- `previous` (default): the month that just ended, the one whose data can exist by then;
- `current`: the tick's own month, as the scheduled Kestra flow does
  (`trigger.date | date('yyyy-MM')`).
A tick whose file the source has not published is skipped with the reason shown in the UI.
"""

from datetime import datetime, timedelta

import dagster as dg

from taxi_assets.jobs import taxi_trips_job
from taxi_assets.partitions import FIRST_MONTH, TaxiPartition
from taxi_assets.resources import TaxiSource
from taxi_assets.settings import Settings

HOUR_BY_COLOUR = {"green": 9, "yellow": 10}


def month_for_tick(tick: datetime, which: str) -> str:
    """The month a tick at `tick` loads: its own (`current`) or the one before (`previous`)."""
    if which == "current":
        return tick.strftime("%Y-%m")
    if which == "previous":
        return (tick.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    raise ValueError(f"TAXI_SCHEDULE_MONTH must be 'previous' or 'current', not {which!r}")


def load_request(partition: TaxiPartition, source: TaxiSource) -> dg.RunRequest | dg.SkipReason:
    """Ask for the partition's run, or say why not: the source does not have its file."""
    if partition.month < FIRST_MONTH:
        return dg.SkipReason(f"{partition.month} is before the first partition ({FIRST_MONTH})")
    if source.is_published(partition) is False:
        return dg.SkipReason(
            f"{source.file_name(partition)} is not published at {source.safe_url(partition)} yet"
        )
    return dg.RunRequest(
        run_key=str(partition.key),
        partition_key=str(partition.key),
        tags={"taxi": partition.taxi, "file": partition.filename},
    )


def monthly_schedule(
    taxi: str, hour: int, month: str = "previous", timezone: str = "UTC"
) -> dg.ScheduleDefinition:
    """The schedule that loads `taxi`'s month on the 1st of each month at `hour`."""
    month_for_tick(datetime(2021, 1, 1), month)  # reject a misspelt setting at load time

    @dg.schedule(
        name=f"{taxi}_taxi_monthly",
        job=taxi_trips_job,
        cron_schedule=f"0 {hour} 1 * *",
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"On the 1st at {hour:02d}:00 {timezone}: load the {month} "
            f"month's {taxi} trips; skipped while the source has not published them."
        ),
    )
    def _schedule(context: dg.ScheduleEvaluationContext, source: TaxiSource):
        tick_month = month_for_tick(context.scheduled_execution_time, month)
        return load_request(TaxiPartition(taxi, tick_month), source)

    return _schedule


def build_taxi_schedules(settings: Settings) -> list[dg.ScheduleDefinition]:
    """Both colours' schedules, in the settings' timezone, for the settings' month."""
    return [
        monthly_schedule(taxi, hour, settings.schedule_month, settings.schedule_timezone)
        for taxi, hour in HOUR_BY_COLOUR.items()
    ]
