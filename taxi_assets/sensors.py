"""A sensor (off by default) for the Kestra flows' "new data arrived" trigger: it finds
partitions whose file the source has published but that are not materialised yet, and requests
them.

Each evaluation asks the source about at most `max_probes` months (a HEAD request each),
continuing where the last one stopped, and requests at most `max_requests` of them. The cursor
remembers what was requested, so nothing is requested twice.
"""

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import dagster as dg

from taxi_assets.assets import TRIPS
from taxi_assets.jobs import taxi_trips_job
from taxi_assets.partitions import TaxiPartition, taxi_month_partitions
from taxi_assets.resources import TaxiSource
from taxi_assets.schedules import load_request


@dataclass
class NewMonthCursor:
    """What the new-month sensor remembers between evaluations (its cursor, as JSON)."""

    probed_last: str | None = None  # the last partition key asked about
    requested: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str | None) -> "NewMonthCursor":
        return cls(**json.loads(text)) if text else cls()

    def serialize(self) -> str:
        return json.dumps(asdict(self))


def _in_probe_order(keys: Sequence[str], after: str | None) -> list[str]:
    """`keys` starting just after `after`, wrapping around: every key gets its turn."""
    later = [key for key in keys if after is not None and key > after]
    return later + [key for key in keys if key not in later]


def new_month_sensor(max_probes: int = 24, max_requests: int = 4) -> dg.SensorDefinition:
    """The sensor that requests months the source has published and no run has loaded."""

    @dg.sensor(
        name="taxi_new_months",
        job=taxi_trips_job,
        minimum_interval_seconds=3600,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Requests published but unloaded months, at most {max_requests} per hourly "
            f"evaluation ({max_probes} months probed at the source each time)."
        ),
    )
    def taxi_new_months(context: dg.SensorEvaluationContext, source: TaxiSource):
        cursor = NewMonthCursor.parse(context.cursor)
        done = context.instance.get_materialized_partitions(TRIPS) | set(cursor.requested)
        keys = sorted(k for k in taxi_month_partitions.get_partition_keys() if k not in done)
        requests: list[dg.RunRequest] = []
        for key in _in_probe_order(keys, cursor.probed_last)[:max_probes]:
            if len(requests) == max_requests:
                break
            cursor.probed_last = key
            request = load_request(TaxiPartition.from_key(key), source)
            if isinstance(request, dg.RunRequest):
                requests.append(request)
                cursor.requested.append(key)
        if requests:
            return dg.SensorResult(run_requests=requests, cursor=cursor.serialize())
        return dg.SensorResult(
            skip_reason=f"no new month among {min(len(keys), max_probes)} probed",
            cursor=cursor.serialize(),
        )

    return taxi_new_months


taxi_new_months = new_month_sensor()
