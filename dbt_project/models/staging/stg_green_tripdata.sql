{{ stage_trips(source('taxi', 'green_tripdata'), 'Green', 'lpep', 'trip_type', 'ehail_fee') }}
