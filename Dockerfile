# The code of the docker compose stack: the Dagster webserver and daemon run from this image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    TAXI_WAREHOUSE=postgres

WORKDIR /opt/dagster/app
COPY pyproject.toml README.md workspace.yaml constraints.txt ./
COPY taxi_assets ./taxi_assets
COPY dbt_project ./dbt_project
# Editable, so the package finds dbt_project/ beside it.
# (sqlglotrs: dagster-dbt asks for it, today's sqlglot only warns that it is there.)
RUN pip install -c constraints.txt -e . \
 && pip uninstall --yes sqlglotrs \
 && mkdir -p "$DAGSTER_HOME" \
 && cd dbt_project \
 && dbt parse --quiet --profiles-dir . --target postgres --target-path target/postgres
COPY docker/dagster.yaml "$DAGSTER_HOME/dagster.yaml"

EXPOSE 3000
