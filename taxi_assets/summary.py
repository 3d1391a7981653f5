"""`python -m taxi_assets.summary 2020-10|green`: what a load put in the warehouse, in brief.

Uses the same warehouse settings as the assets (the environment). pandas only holds the small
result and the 265-row zone lookup, never the month.
"""

import sys
from pathlib import Path

import pandas as pd

from taxi_assets.partitions import TaxiPartition
from taxi_assets.resources import warehouse_from_env
from taxi_assets.trip_schema import TRIP_SCHEMAS
from taxi_assets.warehouse import TaxiWarehouse

ZONES = Path(__file__).parent.parent / "dbt_project" / "seeds" / "taxi_zone_lookup.csv"


def top_pickup_zones(warehouse: TaxiWarehouse, partition: TaxiPartition, limit: int = 5):
    schema = TRIP_SCHEMAS[partition.taxi]
    revenue = pd.DataFrame(
        warehouse.revenue_by_pickup_location(schema, partition.filename, limit),
        columns=["locationid", "trips", "revenue"],
    )
    zones = pd.read_csv(ZONES, dtype={"locationid": str})
    return revenue.merge(zones, on="locationid", how="left")[
        ["zone", "borough", "trips", "revenue"]
    ]


def main(key: str) -> None:
    partition = TaxiPartition.from_key(key)
    warehouse = warehouse_from_env().process_config_and_initialize()
    schema = TRIP_SCHEMAS[partition.taxi]
    rows = warehouse.count_file_rows(schema, partition.filename)
    table = warehouse.qualified_table(schema.table)
    print(f"\n{partition.filename}: {rows:,} trips in {table}\n")
    if rows:
        top = top_pickup_zones(warehouse, partition)
        print("Top pickup zones by total_amount:")
        print(top.to_string(index=False, formatters={"revenue": "{:,.2f}".format}))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "2020-10|green")
