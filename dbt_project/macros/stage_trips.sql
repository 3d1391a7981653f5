{#-
  One staging query for both colours; what differs is passed in (the Dagster side keeps the same
  differences as data in trip_schema.py):
    datetime_prefix  'lpep' (green) or 'tpep' (yellow)
    trip_type        the column, or a constant for yellow (street-hail, 1)
    ehail_fee        the column, or a constant for yellow (0)

  Rules:
  - rows without a VendorID are dropped, as the zoomcamp project does (stg_trips_without_vendor
    counts them per file);
  - rows whose pickup is neither in their file's month nor in the month before it are dropped
    (stg_trips_outside_file_months counts them per file; see trip_months.sql);
  - one row per unique_row_id: the seed's md5 already identifies a trip, so exact duplicates and
    a trip repeated in a later file collapse to one row: the one from the first file in filename
    order (the month it was first published in), then the highest total_amount.
-#}
{% macro stage_trips(relation, service_type, datetime_prefix, trip_type, ehail_fee, window=none) %}
{%- set pickup = datetime_prefix ~ '_pickup_datetime' -%}
{%- set prefix = service_type | lower ~ '_tripdata_' -%}
select
    unique_row_id as tripid,
    filename,
    '{{ service_type }}' as service_type,
    {{ dbt.safe_cast("vendorid", api.Column.translate_type("integer")) }} as vendorid,
    {{ dbt.safe_cast("ratecodeid", api.Column.translate_type("integer")) }} as ratecodeid,
    {{ dbt.safe_cast("pulocationid", api.Column.translate_type("integer")) }} as pickup_locationid,
    {{ dbt.safe_cast("dolocationid", api.Column.translate_type("integer")) }} as dropoff_locationid,

    cast({{ datetime_prefix }}_pickup_datetime as {{ dbt.type_timestamp() }}) as pickup_datetime,
    cast({{ datetime_prefix }}_dropoff_datetime as {{ dbt.type_timestamp() }}) as dropoff_datetime,

    store_and_fwd_flag,
    cast(passenger_count as {{ dbt.type_int() }}) as passenger_count,
    cast(trip_distance as {{ dbt.type_numeric() }}) as trip_distance,
    cast({{ trip_type }} as {{ dbt.type_int() }}) as trip_type,

    cast(fare_amount as {{ dbt.type_numeric() }}) as fare_amount,
    cast(extra as {{ dbt.type_numeric() }}) as extra,
    cast(mta_tax as {{ dbt.type_numeric() }}) as mta_tax,
    cast(tip_amount as {{ dbt.type_numeric() }}) as tip_amount,
    cast(tolls_amount as {{ dbt.type_numeric() }}) as tolls_amount,
    cast({{ ehail_fee }} as {{ dbt.type_numeric() }}) as ehail_fee,
    cast(improvement_surcharge as {{ dbt.type_numeric() }}) as improvement_surcharge,
    cast(total_amount as {{ dbt.type_numeric() }}) as total_amount,
    coalesce(cast(payment_type as {{ dbt.type_int() }}), 0) as payment_type,
    {{ get_payment_type_description("coalesce(cast(payment_type as " ~ dbt.type_int() ~ "), 0)") }}
        as payment_type_description
from (
    select
        *,
        row_number() over (
            partition by unique_row_id
            order by filename, total_amount desc nulls last, payment_type, passenger_count
        ) as rn
    from {{ relation }}
    where vendorid is not null
        and {{ in_file_months(pickup, prefix) }}
    {%- if window %}
        and filename >= '{{ prefix }}{{ window.from }}' and filename < '{{ prefix }}{{ window.files_to }}'
        and {{ in_window(pickup, window) }}
    {%- endif %}
) as trips
where rn = 1
{% endmacro %}
