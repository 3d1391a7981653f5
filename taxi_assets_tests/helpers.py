"""Small helpers the tests share: reading results and tables back; whether this is CI."""

import os

import dagster as dg

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


def fingerprint(db, table: str) -> tuple[int, str | None]:
    """Row count and a hash of every row's full text: equal only for identical contents."""
    return tuple(
        db.execute(
            "SELECT count(*), md5(string_agg(CAST(t AS VARCHAR), '|' ORDER BY CAST(t AS VARCHAR))) "
            f"FROM {table} AS t"
        ).fetchone()
    )


def table_exists(db, table: str) -> bool:
    return db.table_exists(table)


def rows_per_file(db, table: str) -> dict[str, int]:
    return dict(db.execute(f"SELECT filename, count(*) FROM {table} GROUP BY 1").fetchall())


def delete_some_rows(db, table: str, count: int) -> None:
    """Delete `count` rows whose ids are unique in the table (as an accident would)."""
    db.execute(
        f"DELETE FROM {table} WHERE unique_row_id IN (SELECT unique_row_id FROM {table} "
        f"GROUP BY unique_row_id HAVING count(*) = 1 ORDER BY 1 LIMIT {count})"
    )


def under_ci() -> bool:
    """Whether CI is set to anything but a "no" (`true`, `1`, `yes`): there nothing may skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
