"""Small helpers the tests share: reading results and tables back."""

import dagster as dg
import psycopg
from psycopg import sql

from taxi_assets.assets import STAGING, TRIPS


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [event for event in result.all_events if event.is_step_failure]
    assert failures, "expected the run to fail"
    return failures[0].step_failure_data.error.message


def metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey = TRIPS) -> dict:
    events = [
        event.event_specific_data.materialization
        for event in result.get_asset_materialization_events()
        if event.event_specific_data.materialization.asset_key == key
    ]
    assert len(events) == 1
    return {name: value.value for name, value in events[0].metadata.items()}


def staging_metadata(result: dg.ExecuteInProcessResult) -> dict:
    return metadata(result, STAGING)


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()
    }


def fingerprint(db: psycopg.Connection, table: str) -> tuple[int, str | None]:
    """Row count and a hash of every row's full text: equal only for identical contents."""
    query = sql.SQL(
        "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {} AS t"
    ).format(sql.Identifier(table))
    return db.execute(query).fetchone()


def table_exists(db: psycopg.Connection, table: str) -> bool:
    return db.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


def rows_per_file(db: psycopg.Connection, table: str) -> dict[str, int]:
    query = sql.SQL("SELECT filename, count(*) FROM {} GROUP BY 1").format(sql.Identifier(table))
    return dict(db.execute(query).fetchall())
