"""`python -m taxi_assets.backfill 2019-01 2019-12 --taxi green`: a backfill from a terminal.

It asks the running server (`make dev`) to backfill those months, as the UI's "Launch backfill"
does (one run per colour-month, queued for the daemon and the pool), then follows it: a line
every few seconds with the partitions loaded, running and failed, until it ends. The exit status
says whether every partition loaded. Ctrl-C stops following; the backfill goes on in the server.
"""

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import requests

from taxi_assets.download import redact_url
from taxi_assets.errors import ServerError, ServerUnavailable
from taxi_assets.partitions import FIRST_MONTH, month_dimension
from taxi_assets.trip_schema import TAXI_COLOURS

DEFAULT_URL = "http://localhost:3000"
ASSETS = ("taxi_trips_staging", "taxi_trips")
EVERY_SECONDS = 5.0
# How long a server that stopped answering mid-backfill is waited for (a restart) before giving up.
UNAVAILABLE_PATIENCE_SECONDS = 120.0
# How a backfill ended, in words.
FINISHED = {
    "COMPLETED": "completed",
    "COMPLETED_SUCCESS": "completed",
    "COMPLETED_FAILED": "completed with failures",
    "FAILED": "failed",
    "CANCELED": "was canceled",
}

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on Error { message }
  }
}"""
BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      assetBackfillData { assetBackfillStatuses {
        ... on AssetPartitionsStatusCounts {
          assetKey { path } numPartitionsTargeted numPartitionsInProgress
          numPartitionsMaterialized numPartitionsFailed
        }
      } }
    }
    ... on Error { message }
  }
}"""

FAILED_RUNS = """
query($id: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}], statuses: [FAILURE]}) {
    ... on Runs { results { runId tags { key value } } }
  }
}"""


@dataclass(frozen=True)
class BackfillStatus:
    """A backfill's state and how many of its partitions are loaded, running or failed."""

    status: str
    targeted: int
    loaded: int
    running: int
    failed: int

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def describe(self) -> str:
        return (
            f"{self.loaded} of {self.targeted} partitions loaded, {self.running} running, "
            f"{self.failed} failed"
        )


class DagsterServer:
    """The GraphQL endpoint of `dagster dev` (what the UI talks to)."""

    def __init__(self, url: str = DEFAULT_URL):
        self.url = url.rstrip("/")
        self.safe_url = redact_url(self.url)  # what is printed: no credentials, no query

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        """The `data` of a GraphQL request, or a ServerUnavailable / ServerError in a line."""
        try:
            response = requests.post(
                f"{self.url}/graphql",
                json={"query": query, "variables": variables or {}},
                timeout=60,
            )
        except requests.RequestException as error:
            # Not chained: the driver's text holds the URL, credentials and all.
            raise ServerUnavailable(
                f"no Dagster server answers at {self.safe_url} ({type(error).__name__}): start "
                "it with `make dev`, or pass --url"
            ) from None
        if response.status_code >= 500:  # its storage restarting, say
            raise ServerUnavailable(f"{self.safe_url} answered HTTP {response.status_code}")
        try:
            response.raise_for_status()
            body = response.json()
        except (requests.RequestException, ValueError) as error:
            raise ServerError(
                f"{self.safe_url} is not a Dagster server ({type(error).__name__}): pass the "
                "URL of one with --url"
            ) from None
        if "errors" in body:
            raise ServerError(
                f"{self.safe_url} refused the request: {body['errors'][0]['message']}"
            )
        return body["data"]

    def launch_backfill(self, partition_keys: Sequence[str], assets: Sequence[str] = ASSETS) -> str:
        """What the UI's "Launch backfill" sends for a partition selection of these assets."""
        params = {
            "partitionNames": list(partition_keys),
            "assetSelection": [{"path": [name]} for name in assets],
        }
        result = self.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise ServerError(f"the backfill was not launched: {result.get('message', result)}")
        return result["backfillId"]

    def backfill_status(self, backfill_id: str) -> BackfillStatus:
        """The backfill's status and its partitions' counts."""
        found = self.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        if found["__typename"] != "PartitionBackfill":
            raise ServerError(f"backfill {backfill_id}: {found.get('message', found)}")
        counts = [
            status
            for status in found["assetBackfillData"]["assetBackfillStatuses"]
            if status.get("assetKey", {}).get("path") == ["taxi_trips"]
        ]
        count = counts[0] if counts else {}
        return BackfillStatus(
            status=found["status"],
            targeted=count.get("numPartitionsTargeted", 0),
            loaded=count.get("numPartitionsMaterialized", 0),
            running=count.get("numPartitionsInProgress", 0),
            failed=count.get("numPartitionsFailed", 0),
        )

    def failed_runs(self, backfill_id: str) -> list[tuple[str, str]]:
        """(partition key, run page URL) of the backfill's failed runs."""
        runs = self.graphql(FAILED_RUNS, {"id": backfill_id})["runsOrError"].get("results", [])
        return sorted(
            (
                next((t["value"] for t in run["tags"] if t["key"] == "dagster/partition"), "?"),
                f"{self.safe_url}/runs/{run['runId']}",
            )
            for run in runs
        )


def month_argument(text: str) -> str:
    """A month as typed (`2019-01`), or a ValueError that names what was typed."""
    try:
        is_month = datetime.strptime(text, "%Y-%m").strftime("%Y-%m") == text
    except ValueError:
        is_month = False
    if not is_month:
        colour = "; the colour goes in --taxi" if "|" in text else ""
        raise ValueError(f"{text!r} is not a month: YYYY-MM, e.g. 2019-01{colour}")
    if text < FIRST_MONTH:
        raise ValueError(f"{text!r}: months start at {FIRST_MONTH}")
    return text


def partition_keys(first: str, last: str, colours: Sequence[str]) -> list[str]:
    """Every `month|colour` key from month `first` to `last`, both included (months of the
    partitions definition: from 2019-01 to the current month)."""
    start, end = month_argument(first), month_argument(last)
    if end < start:
        raise ValueError(f"{last} comes before {first}")
    months = [month for month in month_dimension.get_partition_keys() if start <= month <= end]
    if not months:
        latest = month_dimension.get_last_partition_key()
        raise ValueError(
            f"no month from {first} to {last}: months run from {FIRST_MONTH} to {latest}"
        )
    return [f"{month}|{colour}" for month in months for colour in colours]


def follow(
    server: DagsterServer,
    backfill_id: str,
    every: float = EVERY_SECONDS,
    patience: float = UNAVAILABLE_PATIENCE_SECONDS,
) -> bool:
    """Print the backfill's progress until it ends; whether every partition loaded. A server
    that stops answering for less than `patience` seconds (a restart) is waited for."""
    started = time.monotonic()
    unavailable_since: float | None = None
    while True:
        try:
            status = server.backfill_status(backfill_id)
        except ServerError as error:
            if not error.retryable:
                raise
            unavailable_since = unavailable_since or time.monotonic()
            if time.monotonic() - unavailable_since > patience:
                raise
            print(f"backfill {backfill_id}: {error}; asking again", flush=True)
            time.sleep(every)
            continue
        unavailable_since = None
        elapsed = time.monotonic() - started
        if status.finished:
            print(f"backfill {backfill_id} {FINISHED[status.status]}: {status.describe()}")
            for key, run_page in server.failed_runs(backfill_id):
                print(f"  {key} failed: {run_page}")
            return status.failed == 0 and status.loaded == status.targeted
        print(f"backfill {backfill_id}: {status.describe()} ({elapsed:.0f}s)", flush=True)
        time.sleep(every)


def main(argv: Sequence[str] | None = None) -> int:
    """Launch a backfill of the months from `first` to `last`, follow it, return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m taxi_assets.backfill", description=(__doc__ or "").partition("\n")[0]
    )
    parser.add_argument("first", help="first month, YYYY-MM")
    parser.add_argument("last", help="last month, YYYY-MM (included)")
    parser.add_argument("--taxi", choices=[*TAXI_COLOURS, "both"], default="both")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the server (default {DEFAULT_URL})")
    args = parser.parse_args(argv)
    colours = list(TAXI_COLOURS) if args.taxi == "both" else [args.taxi]
    try:
        keys = partition_keys(args.first, args.last, colours)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    server = DagsterServer(args.url)
    try:
        backfill_id = server.launch_backfill(keys)
    except ServerError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"backfill {backfill_id}: {len(keys)} partitions queued on {server.safe_url}", flush=True)
    try:
        return 0 if follow(server, backfill_id) else 1
    except (ServerError, KeyboardInterrupt) as error:
        why = "" if isinstance(error, KeyboardInterrupt) else f" ({error})"
        print(
            f"stopped following backfill {backfill_id}{why}; it goes on in the server",
            file=sys.stderr,
        )
        return 130 if isinstance(error, KeyboardInterrupt) else 2


if __name__ == "__main__":
    sys.exit(main())
