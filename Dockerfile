# The code of the docker compose stack: the Dagster webserver and daemon run from this image.
FROM python:3.11-slim
LABEL org.opencontainers.image.title=taxi_assets

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    TAXI_WAREHOUSE=postgres

WORKDIR /opt/dagster/app
# The dependencies first, in a layer of their own: a change of the code does not reinstall them.
# Editable, so the package finds dbt_project/ beside it once the code is copied in.
# (sqlglotrs: dagster-dbt asks for it, today's sqlglot only warns that it is there.)
COPY pyproject.toml constraints.txt ./
RUN mkdir taxi_assets && touch README.md taxi_assets/__init__.py \
 && pip install -c constraints.txt -e . \
 && pip uninstall --yes sqlglotrs \
 && mkdir -p "$DAGSTER_HOME"
COPY docker/dagster.yaml "$DAGSTER_HOME/dagster.yaml"
COPY workspace.yaml ./
COPY dbt_project ./dbt_project
COPY taxi_assets ./taxi_assets
# No `dbt parse` here: the manifest names the database and schemas of the settings it is parsed
# with, the container's, so the code locations parse it when they first load.

EXPOSE 3000
