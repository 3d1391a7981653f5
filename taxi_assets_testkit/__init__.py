"""What the tests (`taxi_assets_tests/`) and the benchmarks (`benchmarks/`) share, installed with
the project so that both import it as they import `taxi_assets` (it is not part of the product,
and the product never imports it):

- `synthetic.py`: generated months in the release's format, and the Kestra flow's ids computed
  without a database (an oracle independent of the product's id code);
- `kestra_flow.py`: the Kestra flow's SQL, verbatim (the other oracle);
- `dagster_dev.py`: a real `dagster dev`, driven over GraphQL as the UI drives it;
- `local_servers.py`: the local PostgreSQL settings, a free port, an HTTP server for a folder;
- `benchmarking.py`: what only the benchmarks share (big generated months, their result table).
"""
