"""The dbt manifest follows what it names: a manifest parsed for another database (an image built
without the runtime's settings, a checkout that switched PGDATABASE) is never used."""

import json
import logging

import dagster as dg

from taxi_assets.dagster_internals import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from taxi_assets.dagster_internals import ASSET_PARTITION_RANGE_START_TAG as RANGE_START
from taxi_assets.dbt_models import build_taxi_dbt, prepared_dbt_project
from taxi_assets.partitions import TaxiPartition
from taxi_assets.settings import Settings
from taxi_assets.trip_schema import GREEN
from taxi_assets_testkit.synthetic import write_month
from taxi_assets_tests.databases import set_warehouse_env

FACTS = dg.AssetKey("fact_trips")


def _relations(project) -> set[str]:
    """The databases the manifest's models name."""
    nodes = json.loads(project.manifest_path.read_text())["nodes"].values()
    return {node["database"] for node in nodes if node["resource_type"] == "model"}


def test_a_manifest_parsed_for_another_database_is_not_used(
    monkeypatch, mirror, load, warehouse, caplog
):
    set_warehouse_env(monkeypatch, warehouse)
    monkeypatch.setenv("PGDATABASE", "postgres")  # as the image was built, or before a switch
    elsewhere = prepared_dbt_project("postgres")
    monkeypatch.setenv("PGDATABASE", warehouse.database)
    write_month(mirror.directory, GREEN, TaxiPartition("green", "2019-01"), 300)
    assert load("2019-01|green").success

    dbt = build_taxi_dbt(Settings.from_env({"TAXI_WAREHOUSE": "postgres"}))
    with caplog.at_level(logging.INFO):
        built = dg.materialize(
            [dbt.models, dbt.months],
            resources={"dbt": dbt.resource(), "warehouse": warehouse},
            tags={RANGE_START: "2019-01", RANGE_END: "2019-01"},
        )

    assert _relations(elsewhere) == {"postgres"}
    assert _relations(dbt.project) == {warehouse.database}
    assert built.success
    facts = [m for m in built.get_asset_materialization_events() if m.asset_key == FACTS]
    assert facts[0].materialization.metadata["dagster/row_count"].value > 0
    assert "cross-database references" not in caplog.text
