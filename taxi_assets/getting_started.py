"""The course's first Kestra flow, `getting_started_data_pipeline`, as a small asset group:
download the products, keep some of their columns, average the price per brand with DuckDB.

    raw_products ── products ── avg_price_per_brand

- `raw_products`: the JSON at PRODUCTS_URL (default https://dummyjson.com/products; a file path
  or `file://` URL works too), its `products` list.
- `products`: each product with only the columns of the run config `columns_to_keep` (default
  `brand`, `price`), `"N/A"` where a product lacks one; written to `products.json` beside the
  DuckDB file, as the flow's Python task wrote it.
- `avg_price_per_brand`: the flow's query, `SELECT brand, round(avg(price), 2) AS avg_price FROM
  read_json_auto('products.json') GROUP BY brand ORDER BY avg_price DESC`, kept as the table
  `getting_started.avg_price_per_brand` in the embedded DuckDB file and shown in the
  materialisation's metadata (Kestra stored it as the run's output).
"""

import json
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from taxi_assets.download import fetch, redact_url
from taxi_assets.errors import SourceError, TaxiError
from taxi_assets.variables import variable_field
from taxi_assets.warehouses.duckdb import DuckDBWarehouse, quote

GROUP = "getting_started"
SCHEMA = "getting_started"
MISSING = "N/A"
# The group has no retry policy: the HTTP client's retries are its one retry layer.
HTTP_RETRIES = 3


class ProductsSource(dg.ConfigurableResource):
    """Where the products come from (PRODUCTS_URL)."""

    url: str = variable_field("PRODUCTS_URL")
    timeout_seconds: float = Field(default=30.0, description="Read timeout of the request.")

    def products(self) -> list[dict[str, Any]]:
        """The `products` list of the JSON at `url`."""
        with tempfile.TemporaryDirectory(prefix="taxi_assets-products-") as directory:
            fetched = fetch(
                self.url,
                Path(directory),
                timeout_seconds=self.timeout_seconds,
                retries=HTTP_RETRIES,
            )
            text = fetched.path.read_bytes()
        try:
            document = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise SourceError(f"{fetched.url} is not JSON: {error}") from error
        products = document.get("products") if isinstance(document, dict) else None
        if not isinstance(products, list) or not all(isinstance(p, dict) for p in products):
            raise SourceError(f"{fetched.url}: the JSON has no `products` list of objects")
        return products


class ColumnsToKeep(dg.Config):
    """The run config of `products`: the columns it keeps."""

    columns_to_keep: list[str] = Field(
        default=["brand", "price"], description="The product columns to keep (Kestra's input)."
    )


def _fail(error: TaxiError) -> dg.Failure:
    """A message for the UI; only an unreachable source is worth a retry."""
    return dg.Failure(description=str(error), allow_retries=error.retryable)


@dg.asset(group_name=GROUP, kinds={"python"})
def raw_products(context: dg.AssetExecutionContext, products_source: ProductsSource) -> list:
    """The products as the source serves them (Kestra's `extract` task)."""
    try:
        products = products_source.products()
    except TaxiError as error:
        raise _fail(error) from error
    context.log.info(f"{len(products)} products from {redact_url(products_source.url)}")
    context.add_output_metadata({"products": len(products)})
    return products


@dg.asset(group_name=GROUP, kinds={"python"})
def products(
    context: dg.AssetExecutionContext,
    config: ColumnsToKeep,
    raw_products: list,
    duckdb_file: DuckDBWarehouse,
) -> list:
    """Each product with only `columns_to_keep`, `"N/A"` where it lacks one (Kestra's
    `transform` task), also written to `products.json`."""
    columns = config.columns_to_keep
    known = {name for product in raw_products for name in product}
    if not columns or not set(columns) & known:
        raise dg.Failure(
            description=(
                f"columns_to_keep {columns} names no column of the products "
                f"(they have: {', '.join(sorted(known)) or 'none'})"
            ),
            allow_retries=False,
        )
    kept = [{name: product.get(name, MISSING) for name in columns} for product in raw_products]
    path = products_json(duckdb_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(kept, indent=2))
    context.add_output_metadata(
        {"path": dg.MetadataValue.path(str(path)), "columns": ", ".join(columns)}
    )
    return kept


def products_json(duckdb_file: DuckDBWarehouse) -> Path:
    """Where `raw_products` keeps the products, beside the DuckDB file."""
    return duckdb_file.database_file.parent / GROUP / "products.json"


@dg.asset(group_name=GROUP, kinds={"duckdb"}, deps=[products])
def avg_price_per_brand(
    context: dg.AssetExecutionContext, duckdb_file: DuckDBWarehouse
) -> dg.MaterializeResult:
    """The average price per brand of `products.json` (Kestra's `query` task), kept in the
    DuckDB file."""
    path = products_json(duckdb_file)
    if not path.is_file():
        raise dg.Failure(
            description=f"no {path}: materialise `products` first", allow_retries=False
        )
    table = f"{quote(SCHEMA)}.{quote('avg_price_per_brand')}"
    with duckdb_file.connect() as connection:
        described = connection.execute("DESCRIBE SELECT * FROM read_json_auto(?)", [str(path)])
        columns = {row[0] for row in described.fetchall()}
        if not {"brand", "price"} <= columns:
            raise dg.Failure(
                description=(
                    f"{path.name} has columns {', '.join(sorted(columns))}: the average needs "
                    "brand and price (keep them in the products' columns_to_keep)"
                ),
                allow_retries=False,
            )
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(SCHEMA)}")
        connection.execute(
            # The flow's query; a price that is not a number ("N/A") is left out of the average.
            f"CREATE OR REPLACE TABLE {table} AS SELECT brand, "
            "round(avg(TRY_CAST(price AS DOUBLE)), 2) AS avg_price "
            "FROM read_json_auto(?) GROUP BY brand ORDER BY avg_price DESC",
            [str(path)],
        )
        rows = connection.execute(
            f"SELECT brand, avg_price FROM {table} ORDER BY avg_price DESC NULLS LAST, brand"
        ).fetchall()
    records = [dg.TableRecord({"brand": str(brand), "avg_price": price}) for brand, price in rows]
    name = f"{duckdb_file.database_file.stem}.{SCHEMA}.avg_price_per_brand"
    top = ", ".join(f"{brand} {price}" for brand, price in rows[:3])
    context.log.info(f"{name}: {len(rows)} brands; highest average price: {top}")
    schema = dg.TableSchema(
        columns=[dg.TableColumn("brand", "string"), dg.TableColumn("avg_price", "float")]
    )
    return dg.MaterializeResult(
        metadata={
            "result": dg.MetadataValue.table(records, schema=schema),
            "dagster/row_count": len(rows),
            "dagster/table_name": name,
        }
    )


getting_started_assets = [raw_products, products, avg_price_per_brand]

getting_started_job = dg.define_asset_job(
    name="getting_started_job",
    description="The first Kestra flow: products → kept columns → average price per brand.",
    selection=dg.AssetSelection.groups(GROUP),
)
