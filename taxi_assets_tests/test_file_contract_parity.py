"""Same file, same verdict on every warehouse (issue 26): a gzip file with bytes after its
stream, a file with mixed line endings. A file's fault fails the run in one line naming the
file, never retried, and the table is left as it was. And DuckDB's checks of a month of
identical rows stay within its memory limit."""

import gzip

import pytest

from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_schema import GREEN
from taxi_assets.warehouses.duckdb import DuckDBWarehouse
from taxi_assets_testkit.synthetic import csv_lines, generate_rows, write_month
from taxi_assets_tests.helpers import check_results, failure_message, fingerprint, metadata
from taxi_assets_tests.runs import materialize_load

pytestmark = pytest.mark.every_warehouse

JAN = TaxiPartition("green", "2019-01")
FILE = "green_tripdata_2019-01.csv.gz"


@pytest.fixture
def loaded(mirror, load, db):
    """January loaded from a good file; returns the table's fingerprint."""
    write_month(mirror.directory, GREEN, JAN, 300)
    assert load("2019-01|green").success
    return fingerprint(db, "green_tripdata")


def _lines(count: int = 20) -> list[str]:
    return list(csv_lines(GREEN, list(generate_rows(GREEN, JAN, count, seed=11))))


def _gzip(lines: list[str], ending: str = "\r\n") -> bytes:
    return gzip.compress((ending.join(lines) + ending).encode())


def _restarted(result) -> bool:
    return any(e.event_type_value == "STEP_RESTARTED" for e in result.all_events)


def _fails_once_and_keeps_table(load, db, before) -> str:
    result = load("2019-01|green", raise_on_error=False)
    assert not result.success
    assert not _restarted(result)
    assert fingerprint(db, "green_tripdata") == before
    return failure_message(result)


STREAM_END = "after the end of its gzip stream"
AFTER_THE_STREAM = {
    "zero-padding": (bytes(4096), f"4,096 bytes {STREAM_END} (zero padding)"),
    "garbage": (b"garbage after it\n", f"17 bytes {STREAM_END} (starting b'garbage '"),
    "zeros-then-garbage": (bytes(4) + b"junk", f"8 bytes {STREAM_END} (starting b'\\x00"),
}


@pytest.mark.parametrize("case", AFTER_THE_STREAM, ids=list(AFTER_THE_STREAM))
def test_bytes_after_the_gzip_stream_are_refused_alike(mirror, load, db, loaded, case):
    """DuckDB's reader refuses any byte after the stream (gzip(1) skips zero padding): so no
    warehouse takes it, with the same one line, whichever of DuckDB and the count sees it first."""
    trailing, says = AFTER_THE_STREAM[case]
    mirror.put_bytes(JAN, _gzip(_lines(2_000)) + trailing)

    message = _fails_once_and_keeps_table(load, db, loaded)
    assert message.startswith(f"dagster._core.definitions.events.Failure: {FILE}: {says}")
    assert message.rstrip().endswith("not loaded; rewrite it whole (gunzip -c, then gzip)")
    assert len(message.rstrip().splitlines()) == 1


def test_a_file_of_several_gzip_members_loads(mirror, load, db, loaded):
    """Concatenated gzip files are one gzip file (gzip(1), Python and DuckDB agree)."""
    lines = _lines()
    mirror.put_bytes(JAN, _gzip(lines[:8]) + _gzip(lines[8:]))

    result = load("2019-01|green", raise_on_error=False)

    assert result.success and not _restarted(result)
    assert metadata(result)["source_rows"] == len(lines) - 1 == 20


@pytest.mark.parametrize(
    ("first", "then"), [("\r\n", "\n"), ("\n", "\r\n")], ids=["crlf-lf", "lf-crlf"]
)
def test_mixed_line_endings_are_named_alike(mirror, load, db, loaded, first, then):
    lines = _lines()
    data = first.join(lines[:6]) + first + then.join(lines[6:]) + then
    mirror.put_bytes(JAN, gzip.compress(data.encode()))

    message = _fails_once_and_keeps_table(load, db, loaded)
    ending, expected = ("LF", "CRLF") if then == "\n" else ("CRLF", "LF")
    assert message.rstrip() == (
        f"dagster._core.definitions.events.Failure: {FILE} line 7: ends in {ending}, the lines "
        f"before it in {expected}: mixed line endings; give every line the same one "
        "(dos2unix makes them all LF)"
    )


def test_a_quoted_line_break_is_no_mixed_line_ending(mirror, load, db, loaded):
    lines = _lines()
    fields = lines[3].split(",")
    fields[GREEN.header.index("store_and_fwd_flag")] = '"N\nY"'
    lines[3] = ",".join(fields)
    mirror.put_bytes(JAN, gzip.compress(("\r\n".join(lines) + "\r\n").encode()))

    message = _fails_once_and_keeps_table(load, db, loaded)
    assert f"{FILE} line 4: a quoted field holds a line break (up to line 5)" in message


def _identical_rows(mirror, partition: TaxiPartition, row: dict, count: int) -> None:
    """`count` copies of `row` as `partition`'s file (every copy: one id, one pickup)."""
    header, line = csv_lines(GREEN, [row])
    block = ((line + "\r\n") * 10_000).encode()
    with gzip.open(mirror.path(partition), "wb", compresslevel=1) as out:
        out.write((header + "\r\n").encode())
        for _ in range(count // 10_000):
            out.write(block)


def test_duckdb_checks_of_identical_rows_stay_within_the_memory_limit(mirror, tmp_path):
    """300,000 copies of one trip in two months' files (its pickup on the first day of the
    second): the id overlap joins on one pickup and one id, within a 96 MB limit (a hash table
    built on the side of the identical keys would run out of memory)."""
    warehouse = DuckDBWarehouse(path=str(tmp_path / "taxi.duckdb"), memory_limit="96MB")
    row = {**next(generate_rows(GREEN, JAN, 1, seed=3)), GREEN.pickup: "2019-02-01 00:20:00"}
    feb = TaxiPartition("green", "2019-02")
    for partition in (feb, JAN):
        _identical_rows(mirror, partition, row, 300_000)

    assert materialize_load(feb, mirror.source(), warehouse).success
    result = materialize_load(JAN, mirror.source(), warehouse, raise_on_error=False)

    assert result.success
    overlap = check_results(result)["ids_in_other_files"]
    assert overlap.metadata["ids_in_other_files"].value == 1
