-- The rows staging drops because they have no VendorID, counted per file.
select 'Green' as service_type, filename, count(*) as trips_without_vendor
from {{ source('taxi', 'green_tripdata') }}
where vendorid is null
group by filename

union all

select 'Yellow' as service_type, filename, count(*) as trips_without_vendor
from {{ source('taxi', 'yellow_tripdata') }}
where vendorid is null
group by filename
