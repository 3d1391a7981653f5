"""`python -m taxi_assets.summary '2020-10|green'`: what a load put in the warehouse, in brief.

Uses the same warehouse settings as the assets (the environment). pandas only holds the small
result and the 265-row zone lookup, never the month.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import pandas as pd

from taxi_assets.errors import TaxiError
from taxi_assets.partitions import TaxiPartition
from taxi_assets.resources import load_env_file, warehouse_resource
from taxi_assets.settings import Settings
from taxi_assets.trip_schema import TRIP_SCHEMAS
from taxi_assets.warehouses.trip_queries import TripQueries

ZONES = Path(__file__).parent.parent / "dbt_project" / "seeds" / "taxi_zone_lookup.csv"


def top_pickup_zones(trips: TripQueries, partition: TaxiPartition, limit: int = 5) -> pd.DataFrame:
    """The partition's `limit` pickup zones of most revenue, with their names and boroughs."""
    schema = TRIP_SCHEMAS[partition.taxi]
    revenue = pd.DataFrame(
        trips.revenue_by_pickup_location(schema, partition.filename, limit),
        columns=pd.Index(["locationid", "trips", "revenue"]),
    )
    zones = pd.read_csv(ZONES, dtype={"locationid": str})
    zoned = revenue.merge(zones, on="locationid", how="left")
    return zoned.loc[:, ["zone", "borough", "trips", "revenue"]]


def _reason(error: Exception) -> str:
    """One line for a key or a setting that cannot be used (Dagster's config errors carry a
    stack trace)."""
    text = str(error)
    if isinstance(error, dg.DagsterInvalidConfigError) and error.errors:
        text = error.errors[0].message.split("\n\nStack Trace")[0].strip().splitlines()[-1]
        text = text.split("Error: ", 1)[-1]
    return text.strip().splitlines()[0]


def main(key: str) -> int:
    """Print the summary; the exit status says whether the partition is loaded."""
    load_env_file()
    try:
        partition = TaxiPartition.parse(key)
        warehouse = warehouse_resource(Settings.from_env()).process_config_and_initialize()
    except (ValueError, dg.DagsterError) as error:
        print(_reason(error), file=sys.stderr)
        return 2
    schema = TRIP_SCHEMAS[partition.taxi]
    table = warehouse.qualified_table(schema.table)
    try:
        with warehouse.reading() as trips:
            rows = trips.count_file_rows(schema, partition.filename)
            if not rows:
                print(f"{partition.key} is not loaded: no rows of {partition.filename} in {table}")
                return 1
            top = top_pickup_zones(trips, partition)
    except TaxiError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"\n{partition.filename}: {rows:,} trips in {table}\n")
    print("Top pickup zones by total_amount:")
    print(top.to_string(index=False, formatters={"revenue": "{:,.2f}".format}))
    return 0


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The partition to summarise; without one, the usage and exit status 2."""
    parser = argparse.ArgumentParser(
        prog="python -m taxi_assets.summary", description=(__doc__ or "").partition("\n")[0]
    )
    parser.add_argument("partition", help="a loaded partition, MONTH|COLOUR: '2020-10|green'")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main(parse_arguments().partition))
