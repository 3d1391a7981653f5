-- The rows staging drops because their pickup is neither in their file's month nor in the month
-- before it (a wrong clock: 2008, 2088, …), counted per file. See macros/trip_months.sql.
{% for service_type, relation, pickup in [
    ('Green', source('taxi', 'green_tripdata'), 'lpep_pickup_datetime'),
    ('Yellow', source('taxi', 'yellow_tripdata'), 'tpep_pickup_datetime'),
] %}
{%- if not loop.first %}
union all
{% endif -%}
select
    '{{ service_type }}' as service_type,
    filename,
    count(*) as trips_outside_file_months,
    min({{ pickup }}) as earliest_pickup,
    max({{ pickup }}) as latest_pickup
from {{ relation }}
where vendorid is not null
    and not {{ in_file_months(pickup, service_type | lower ~ '_tripdata_') }}
group by filename
{% endfor %}
