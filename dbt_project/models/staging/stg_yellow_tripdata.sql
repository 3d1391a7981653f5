{{ stage_trips(source('taxi', 'yellow_tripdata'), 'Yellow', 'tpep', '1', '0') }}
