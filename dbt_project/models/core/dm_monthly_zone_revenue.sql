-- Revenue per pickup zone, pickup month and service type, built a month at a time like fact_trips.
{{ config(
    materialized='incremental',
    incremental_strategy=monthly_strategy(),
    pre_hook="{{ delete_window('revenue_month') }}",
    tags=['monthly'],
) }}
{%- set window = select_window() %}

select
    pickup_zone as revenue_zone,
    {{ dbt.date_trunc("month", "pickup_datetime") }} as revenue_month,
    service_type,

    sum(fare_amount) as revenue_monthly_fare,
    sum(extra) as revenue_monthly_extra,
    sum(mta_tax) as revenue_monthly_mta_tax,
    sum(tip_amount) as revenue_monthly_tip_amount,
    sum(tolls_amount) as revenue_monthly_tolls_amount,
    sum(ehail_fee) as revenue_monthly_ehail_fee,
    sum(improvement_surcharge) as revenue_monthly_improvement_surcharge,
    sum(total_amount) as revenue_monthly_total_amount,

    count(tripid) as total_monthly_trips,
    avg(passenger_count) as avg_monthly_passenger_count,
    avg(trip_distance) as avg_monthly_trip_distance
from {{ ref('fact_trips') }}
{%- if window %}
where {{ in_window('pickup_datetime', window) }}
{%- endif %}
group by 1, 2, 3
