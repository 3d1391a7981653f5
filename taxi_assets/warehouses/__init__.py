"""Where trips land: the interface every warehouse implements (`base.py`), the SQL the SQL
warehouses share (`load_sql.py`), and one module per engine (`duckdb.py`, `postgres.py` and its
`postgres_*.py`, `bigquery.py`). An engine's module is imported only when that warehouse is chosen
(`resources.py`): a DuckDB or PostgreSQL run never loads Google's libraries."""
