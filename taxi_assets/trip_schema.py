"""Yellow and green trip files as data: the one place their differences live.

Each colour is a `TripSchema`: the CSV header in file order with a logical type per column, the
newer columns some files add after it (the TLC's Parquet months: `airport_fee`, the CBD
congestion fee since 2025), and which columns hold the pickup and dropoff times. Warehouses map
the logical types to their own (`warehouses/postgres_tables.py` uses the Kestra DDL's types);
the load code never branches on the colour.
"""

from dataclasses import dataclass
from enum import Enum


class ColumnType(Enum):
    """The types of the trip columns, as the contract reads them (`trip_contract.py`)."""

    TEXT = "text"
    TIMESTAMP = "timestamp"
    INTEGER = "integer"
    FLOAT = "float"


@dataclass(frozen=True)
class Column:
    """A column of a trip file: its name in the header and its type."""

    name: str
    type: ColumnType


@dataclass(frozen=True)
class TripSchema:
    """A colour's trip file and table: its columns, its pickup and dropoff columns."""

    taxi: str
    pickup: str
    dropoff: str
    columns: tuple[Column, ...]
    # Columns newer files carry after the release's: nullable in the trip tables, empty (NULL)
    # for the months whose files lack them.
    newer_columns: tuple[Column, ...] = ()

    @property
    def table_columns(self) -> tuple[Column, ...]:
        """The trip table's columns (after `unique_row_id` and `filename`)."""
        return self.columns + self.newer_columns

    @property
    def table(self) -> str:
        """The merged table, as in Kestra: `green_tripdata`, `yellow_tripdata`."""
        return f"{self.taxi}_tripdata"

    @property
    def header(self) -> tuple[str, ...]:
        """The release's header: the names of `columns`, in order."""
        return tuple(column.name for column in self.columns)


def _columns(spec: str) -> tuple[Column, ...]:
    """Parse `name:type name:type ...` (types: text, timestamp, integer, float)."""
    return tuple(
        Column(name, ColumnType(type_name))
        for name, type_name in (item.split(":") for item in spec.split())
    )


_SHARED_MONEY = "fare_amount:float extra:float mta_tax:float tip_amount:float tolls_amount:float"

YELLOW = TripSchema(
    taxi="yellow",
    pickup="tpep_pickup_datetime",
    dropoff="tpep_dropoff_datetime",
    columns=_columns(
        "VendorID:text tpep_pickup_datetime:timestamp tpep_dropoff_datetime:timestamp "
        "passenger_count:integer trip_distance:float RatecodeID:text store_and_fwd_flag:text "
        "PULocationID:text DOLocationID:text payment_type:integer "
        f"{_SHARED_MONEY} improvement_surcharge:float total_amount:float "
        "congestion_surcharge:float"
    ),
    newer_columns=_columns("airport_fee:float cbd_congestion_fee:float"),
)

GREEN = TripSchema(
    taxi="green",
    pickup="lpep_pickup_datetime",
    dropoff="lpep_dropoff_datetime",
    columns=_columns(
        "VendorID:text lpep_pickup_datetime:timestamp lpep_dropoff_datetime:timestamp "
        "store_and_fwd_flag:text RatecodeID:text PULocationID:text DOLocationID:text "
        "passenger_count:integer trip_distance:float "
        f"{_SHARED_MONEY} ehail_fee:float improvement_surcharge:float total_amount:float "
        "payment_type:integer trip_type:integer congestion_surcharge:float"
    ),
    newer_columns=_columns("cbd_congestion_fee:float"),
)

TRIP_SCHEMAS: dict[str, TripSchema] = {schema.taxi: schema for schema in (YELLOW, GREEN)}
TAXI_COLOURS: tuple[str, ...] = tuple(TRIP_SCHEMAS)

# The Kestra flow's unique_row_id covers these columns, in this order; the pickup and dropoff
# columns are filled in per colour (see `id_columns`).
_ID_COLUMNS = (
    "VendorID",
    "{pickup}",
    "{dropoff}",
    "PULocationID",
    "DOLocationID",
    "fare_amount",
    "trip_distance",
)


def id_columns(schema: TripSchema) -> tuple[Column, ...]:
    """The columns hashed into `unique_row_id`, in the Kestra flow's order."""
    by_name = {column.name: column for column in schema.columns}
    names = (n.format(pickup=schema.pickup, dropoff=schema.dropoff) for n in _ID_COLUMNS)
    return tuple(by_name[name] for name in names)
