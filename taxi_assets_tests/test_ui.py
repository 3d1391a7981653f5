"""The UI in a real browser: `dagster dev` on a free port, headless Chromium driven by
Playwright. The asset graph shows the taxi and dbt assets; a partition materialised from the
UI loads its rows. The screenshots are the documentation's pictures (`docs/`): each run of the test
takes them anew from the UI, so they cannot drift from it."""

import contextlib
import os
import time
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from taxi_assets.partitions import TaxiPartition
from taxi_assets.warehouses.duckdb import DuckDBWarehouse
from taxi_assets_testkit.dagster_dev import ROOT, DagsterDev
from taxi_assets_tests.databases import Db, warehouse_env
from taxi_assets_tests.helpers import rows_per_file, under_ci
from taxi_assets_tests.mirror import Mirror
from taxi_assets_tests.samples import real_sample

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
ARTIFACTS = ROOT / "test-artifacts"
DOCS = ROOT / "docs"  # the documentation's pictures
pytestmark = [pytest.mark.browser, pytest.mark.dagster_dev]
OCTOBER = TaxiPartition("green", "2020-10")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        if under_ci():
            pytest.fail(f"Chromium is required under CI=true ({CHROMIUM}); .ci/run installs it")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def ui(http_root, tmp_path_factory):
    """`dagster dev` on the embedded default (DuckDB), the real October month at the source."""
    mirror = Mirror.on(http_root, "ui_source")
    mirror.put_gz(OCTOBER, real_sample("green_tripdata_2020-10.csv.gz"))
    home = tmp_path_factory.mktemp("ui_home")
    warehouse = DuckDBWarehouse(path=str(home / "taxi.duckdb"))
    env = {"TAXI_SOURCE_URL": mirror.url, **warehouse_env(warehouse)}
    ARTIFACTS.mkdir(exist_ok=True)
    with DagsterDev(home / "dagster", env, ARTIFACTS / "ui_dagster_dev.log") as server:
        yield server, warehouse


# How long a UI element may take to appear: the launch dialog asks the server for the
# partitions, which takes seconds, and more on a machine busy with other runs.
UI_WAIT_MS = 90_000


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    page.set_default_timeout(UI_WAIT_MS)
    page.goto(url)
    skip = page.get_by_role("button", name="Skip")  # the first-visit "join the community" card
    with contextlib.suppress(PlaywrightTimeout):  # shown once per instance only
        skip.click(timeout=5_000)
    return page


def test_the_asset_graph_shows_the_taxi_and_dbt_assets(browser, ui):
    server, _ = ui
    page = _open(browser, f"{server.url}/asset-groups")
    page.get_by_text("taxi_dbt", exact=True).first.wait_for()
    for group in ("taxi", "taxi_dbt"):  # expand both group boxes of the graph
        _in_the_graph(page, group).dblclick()
        time.sleep(1.5)  # the graph lays itself out again
    for asset in ("taxi_source_file", "taxi_trips_staging", "taxi_trips", "fact_trips",
                  "stg_green_tripdata", "dim_zones"):  # fmt: skip
        page.get_by_text(asset, exact=True).filter(visible=True).last.wait_for()
    _frame_the_whole_graph(page)
    page.screenshot(path=str(DOCS / "asset_graph.png"))
    page.close()


def _in_the_graph(page, text: str):
    """The element showing `text` on the graph's canvas (not in the list of groups beside it)."""
    for element in page.get_by_text(text, exact=True).all():
        box = element.bounding_box()
        if box and box["x"] > 560:
            return element
    raise AssertionError(f"{text!r} is not on the graph")


def _frame_the_whole_graph(page) -> None:
    """For the picture: hide the list of groups, zoom out twice, move the graph into view."""
    page.mouse.click(512, 80)  # the list's toggle
    for _ in range(2):
        page.mouse.click(1573, 752)  # the zoom-out button
        time.sleep(0.5)
    page.mouse.move(1300, 450)
    page.mouse.down()
    page.mouse.move(1350, 520, steps=10)
    page.mouse.up()
    time.sleep(1)  # let the edges settle


def test_a_partition_materialised_from_the_ui_loads_its_rows(browser, ui):
    server, warehouse = ui
    page = _open(browser, f"{server.url}/assets/taxi_trips")
    page.get_by_role("button", name="Materialize…").click()
    page.get_by_role("button", name="Confirm").click()  # staging comes along (one step)
    dialog = page.locator("[role=dialog]")
    month = dialog.get_by_placeholder("ex: 2019-01", exact=False)
    month.fill(OCTOBER.month)
    month.press("Enter")
    dialog.get_by_text("Select a partition or create one").click()
    page.get_by_role("menuitem", name=OCTOBER.taxi).click()
    dialog.get_by_text("Launch runs to materialize").click()  # close the menu
    dialog.get_by_role("button", name="Launch 1 run").click()

    run = _wait_for_partition_run(server.instance(), str(OCTOBER.key))
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert rows_per_file(Db(warehouse), "green_tripdata") == {OCTOBER.filename: 95_120}
    partitions = _open(browser, f"{server.url}/assets/taxi_trips?view=partitions")
    partitions.get_by_text("Materialized (1)").wait_for()
    partitions.get_by_placeholder("Filter by month").fill(OCTOBER.month)
    partitions.get_by_text(OCTOBER.month, exact=True).filter(visible=True).first.click()
    partitions.get_by_text(OCTOBER.taxi, exact=True).filter(visible=True).first.click()
    partitions.get_by_text("rows_in_table").wait_for()  # the load's metadata
    time.sleep(1)
    partitions.screenshot(path=str(DOCS / "partitions.png"))
    partitions.close()
    page.close()


def _wait_for_partition_run(instance: dg.DagsterInstance, key: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": key}))
        if runs and runs[0].is_finished:
            return runs[0]
        time.sleep(1)
    raise TimeoutError(f"no finished run for {key} after {timeout}s")
