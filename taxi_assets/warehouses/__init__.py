"""Where trips land: the interface every warehouse implements (`base.py`), the load algorithm the
SQL warehouses share (`partition_load.py`), and one module per engine (`duckdb.py`, `postgres.py`,
`bigquery.py`). An engine's module is imported only when that warehouse is chosen
(`resources.py`): a DuckDB or PostgreSQL run never loads Google's libraries."""
