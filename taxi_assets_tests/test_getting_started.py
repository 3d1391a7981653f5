"""The course's first Kestra flow as an asset group: products from a real HTTP server, the kept
columns, the average price per brand in the DuckDB file and in the UI's metadata."""

import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from taxi_assets.getting_started import (
    ProductsSource,
    avg_price_per_brand,
    getting_started_job,
    products,
    raw_products,
)
from taxi_assets_testkit.dagster_dev import ROOT
from taxi_assets_tests.helpers import failure_message

FIXTURE = ROOT / "sample_source" / "products.json"
ASSETS = [raw_products, products, avg_price_per_brand]


@pytest.fixture
def served(mirror) -> tuple[Path, str]:
    """The fixture served by the tests' HTTP server: its path there and its URL."""
    path = mirror.directory / "products"
    shutil.copyfile(FIXTURE, path)
    return path, f"{mirror.url}/products"


def run(url: str, duckdb_warehouse, columns: list[str] | None = None):
    config = {} if columns is None else {"columns_to_keep": columns}
    return dg.materialize(
        ASSETS,
        resources={"products_source": ProductsSource(url=url), "duckdb_file": duckdb_warehouse},
        run_config={"ops": {"products": {"config": config}}},
        raise_on_error=False,
    )


def expected_averages() -> list[tuple[str, float]]:
    """The flow's query, computed here from the fixture."""
    sums: dict[str, list[float]] = {}
    for product in json.loads(FIXTURE.read_text())["products"]:
        sums.setdefault(product.get("brand", "N/A"), []).append(product["price"])
    averages = [(brand, round(sum(p) / len(p), 2)) for brand, p in sums.items()]
    return sorted(averages, key=lambda item: (-item[1], item[0]))


def materialization(result, name: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [name]]
    return event.step_materialization_data.materialization.metadata


def test_raw_products_are_the_served_list(served, duckdb_warehouse):
    _, url = served
    result = run(url, duckdb_warehouse)

    assert result.success
    assert result.output_for_node("raw_products") == json.loads(FIXTURE.read_text())["products"]
    assert materialization(result, "raw_products")["products"].value == 20


def test_products_keep_the_chosen_columns_with_n_a_for_missing_ones(served, duckdb_warehouse):
    _, url = served
    result = run(url, duckdb_warehouse, ["title", "brand"])

    kept = result.output_for_node("products")
    assert [set(p) for p in kept] == [{"title", "brand"}] * 20
    assert sum(p["brand"] == "N/A" for p in kept) == 5  # the groceries have no brand
    written = duckdb_warehouse.database_file.parent / "getting_started" / "products.json"
    assert json.loads(written.read_text()) == kept


def test_average_price_per_brand_is_kept_in_duckdb_and_shown(served, duckdb_warehouse):
    _, url = served
    result = run(url, duckdb_warehouse)

    assert result.success
    with duckdb.connect(str(duckdb_warehouse.database_file), read_only=True) as connection:
        stored = connection.execute(
            "SELECT brand, avg_price FROM getting_started.avg_price_per_brand "
            "ORDER BY avg_price DESC, brand"
        ).fetchall()
    assert [(b, float(p)) for b, p in stored] == expected_averages()
    shown = materialization(result, "avg_price_per_brand")["result"].value.records
    assert [(r.data["brand"], r.data["avg_price"]) for r in shown] == expected_averages()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (None, 404, "is not published at the source (HTTP 404"),
        (b"<html>oops</html>", 200, "is not JSON"),
        (b'{"items": []}', 200, "has no `products` list"),
    ],
    ids=["http-404", "not-json", "no-products"],
)
def test_a_bad_source_says_what_is_wrong(served, duckdb_warehouse, body, status, message):
    path, url = served
    if body is None:
        path.unlink()
    else:
        path.write_bytes(body)

    result = run(url, duckdb_warehouse)

    assert not result.success
    assert message in failure_message(result)


def test_columns_to_keep_naming_no_real_column_is_refused(served, duckdb_warehouse):
    _, url = served
    result = run(url, duckdb_warehouse, ["colour", "size"])

    assert not result.success
    assert "columns_to_keep ['colour', 'size'] names no column of the products" in (
        failure_message(result)
    )


def test_the_average_needs_brand_and_price(served, duckdb_warehouse):
    _, url = served
    result = run(url, duckdb_warehouse, ["title", "price"])

    assert not result.success
    assert "the average needs brand and price" in failure_message(result)


def test_the_job_runs_the_group_with_the_default_columns(served, duckdb_warehouse):
    _, url = served
    job = dg.Definitions(
        assets=ASSETS,
        jobs=[getting_started_job],
        resources={"products_source": ProductsSource(url=url), "duckdb_file": duckdb_warehouse},
    ).resolve_job_def("getting_started_job")

    assert job.execute_in_process().success
