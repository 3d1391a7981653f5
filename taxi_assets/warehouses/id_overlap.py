"""Ids a file's rows share with rows of other files, found without comparing whole tables.

Two rows share an id only if they share the pickup time (it is hashed into the id). So of two
such rows in files of different months, at least one has its pickup outside its own file's month,
and those rows are few (a few in a thousand). The rows worth comparing with this file's are:

- rows of other files whose pickup falls in this file's month, or is missing;
- rows with the pickup of one of this file's own outside rows: in the file of the month that
  pickup falls in, or in any other file where it is outside that file's month.

Rows outside their month or on its first or last day are where such pickups fall: PostgreSQL
keeps them in a small index per table partition (`month_edges` below), so each question here is
answered from those indexes, pickup by pickup on both sides, and only rarely a scan of one month
(another file's trip in the middle of a month). The cost does not grow with the table, nor with
the month's own size. The SQL runs unchanged on every warehouse.
"""

import calendar
from dataclasses import dataclass

from taxi_assets.partitions import TaxiPartition


@dataclass(frozen=True)
class NeighbourMonth:
    """A month that some of this file's outside pickups fall in."""

    partition: TaxiPartition
    mid_month: bool  # some fall between its first and its last day


def outside_pickup_days_sql(pickup: str) -> str:
    """(year, month, day) of this file's pickups outside its month (`%s`: file, month bounds)."""
    return (
        f"SELECT DISTINCT extract(year FROM {pickup}), extract(month FROM {pickup}), "
        f"extract(day FROM {pickup}) FROM {{table}} "
        f"WHERE filename = %s AND NOT ({pickup} >= %s AND {pickup} < %s)"
    )


def neighbour_months(partition: TaxiPartition, days: list[tuple]) -> list[NeighbourMonth]:
    """The months of the outside pickups' (year, month, day)."""
    mid: dict[str, bool] = {}
    for year, month, day in days:
        key = f"{int(year):04d}-{int(month):02d}"
        last_day = calendar.monthrange(int(year), int(month))[1]
        mid[key] = mid.get(key, False) or int(day) not in (1, last_day)
    return [NeighbourMonth(TaxiPartition(partition.taxi, key), mid[key]) for key in sorted(mid)]


def overlap_sql(
    pickup: str, partition: TaxiPartition, neighbours: list[NeighbourMonth], limit: int
) -> tuple[str, list[object]]:
    """The query for (count of shared ids, a sample id, its other file), and its parameters."""
    this_file = partition.filename
    inside = f"{pickup} >= %s AND {pickup} < %s"
    matches = f"{pickup} IN (SELECT pickup FROM this_outside)"
    # (condition, parameters): rows of other files worth comparing with this file's.
    others: list[tuple[str, list[object]]] = [
        (f"filename <> %s AND {inside}", [this_file, *partition.month_bounds]),
        (f"filename <> %s AND {pickup} IS NULL", [this_file]),
    ]
    if neighbours:
        files = [n.partition.filename for n in neighbours]
        in_files = f"filename IN ({', '.join(['%s'] * len(files))})"
        ranges = " OR ".join([f"({inside})"] * len(neighbours))
        bounds = [b for n in neighbours for b in n.partition.month_bounds]
        others.append(
            (
                f"NOT ({in_files}) AND filename <> %s AND ({ranges}) AND {matches}",
                [*files, this_file, *bounds],
            )
        )
    for neighbour in neighbours:
        first_day_end, last_day_start = neighbour.partition.month_edges
        edges = f"{pickup} < %s OR {pickup} >= %s"
        others.append(
            (
                f"filename = %s AND ({edges}) AND {matches}",
                [neighbour.partition.filename, first_day_end, last_day_start],
            )
        )
        if neighbour.mid_month:
            others.append(
                (
                    f"filename = %s AND {pickup} >= %s AND {pickup} < %s AND {matches}",
                    [neighbour.partition.filename, first_day_end, last_day_start],
                )
            )
    # Sets, compared by membership: each made unique first, so that a month of identical rows
    # costs the memory of one.
    union = " UNION ALL ".join(
        f"SELECT DISTINCT unique_row_id, filename, {pickup} AS pickup FROM {{table}} "
        f"WHERE {condition}"
        for condition, _ in others
    )
    # This file's rows that may share an id with one of `others` share its pickup too. Where
    # that pickup falls in this file's month-edges index (outside the month, on its first or
    # last day, or missing), they are looked up there, pickup by pickup; for a mid-month pickup
    # (an anomaly: another file's trip in the middle of this file's month) the file is scanned,
    # and only when there is such a pickup.
    first_day_end, last_day_start = partition.month_edges
    edges = f"({pickup} < %s OR {pickup} >= %s)"
    mid = f"{pickup} >= %s AND {pickup} < %s"
    mine = (
        f"SELECT DISTINCT unique_row_id FROM {{table}} WHERE filename = %s AND {edges} "
        "AND {pickup} IN (SELECT pickup FROM others) "
        "UNION ALL SELECT DISTINCT unique_row_id FROM {table} "
        f"WHERE filename = %s AND {pickup} IS NULL "
        "UNION ALL SELECT DISTINCT unique_row_id FROM {table} "
        f"WHERE filename = %s AND {mid} "
        f"AND {pickup} IN (SELECT pickup FROM others WHERE pickup >= %s AND pickup < %s)"
    ).replace("{pickup}", pickup)
    edge_days = [first_day_end, last_day_start]
    mine_params = [this_file, *edge_days, this_file, this_file, *edge_days, *edge_days]
    query = (
        f"WITH this_outside AS (SELECT DISTINCT {pickup} AS pickup FROM {{table}} "
        f"WHERE filename = %s AND NOT ({inside})), "
        f"others AS ({union}), "
        f"mine AS ({mine}), "
        "pairs AS (SELECT DISTINCT unique_row_id, filename FROM others "
        "WHERE unique_row_id IN (SELECT unique_row_id FROM mine)) "
        "SELECT (SELECT count(DISTINCT unique_row_id) FROM pairs), unique_row_id, filename "
        "FROM pairs ORDER BY 2, 3 LIMIT %s"
    )
    params = [
        this_file,
        *partition.month_bounds,
        *(value for _, values in others for value in values),
        *mine_params,
        limit,
    ]
    return query, params
