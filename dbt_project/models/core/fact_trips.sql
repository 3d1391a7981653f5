-- Green and yellow trips whose pickup and dropoff zones are both known, built a month at a time:
-- a partitioned run replaces only its months' rows (macros/trip_months.sql).
{{ config(
    materialized='incremental',
    incremental_strategy=monthly_strategy(),
    pre_hook="{{ delete_window('pickup_datetime') }}",
    tags=['monthly'],
    indexes=[{'columns': ['pickup_datetime']}] if target.type == 'postgres' else [],
) }}
{%- set window = select_window() %}

with trips as (
    {{ stage_trips(source('taxi', 'green_tripdata'), 'Green', 'lpep', 'trip_type', 'ehail_fee', window) }}
    union all
    {{ stage_trips(source('taxi', 'yellow_tripdata'), 'Yellow', 'tpep', '1', '0', window) }}
),

known_zones as (
    select * from {{ ref('dim_zones') }}
    where borough != 'Unknown'
)

select
    trips.tripid,
    trips.vendorid,
    trips.service_type,
    trips.ratecodeid,
    trips.pickup_locationid,
    pickup_zone.borough as pickup_borough,
    pickup_zone.zone as pickup_zone,
    trips.dropoff_locationid,
    dropoff_zone.borough as dropoff_borough,
    dropoff_zone.zone as dropoff_zone,
    trips.pickup_datetime,
    trips.dropoff_datetime,
    trips.store_and_fwd_flag,
    trips.passenger_count,
    trips.trip_distance,
    trips.trip_type,
    trips.fare_amount,
    trips.extra,
    trips.mta_tax,
    trips.tip_amount,
    trips.tolls_amount,
    trips.ehail_fee,
    trips.improvement_surcharge,
    trips.total_amount,
    trips.payment_type,
    trips.payment_type_description
from trips
inner join known_zones as pickup_zone
    on trips.pickup_locationid = pickup_zone.locationid
inner join known_zones as dropoff_zone
    on trips.dropoff_locationid = dropoff_zone.locationid
-- Stored in pickup order, a month's rows lie together: its rebuild and tests read that month's
-- pages (PostgreSQL, through the pickup index) or row groups (DuckDB), not the whole table.
order by trips.pickup_datetime
