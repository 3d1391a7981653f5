"""Reading a trip file (`TripCsv`) on files written here: its lines counted, its header and its
gzip stream checked, each failure in a line naming the file."""

import gzip

import pytest

from taxi_assets.errors import SourceError
from taxi_assets.partitions import TaxiPartition
from taxi_assets.trip_csv import TripCsv
from taxi_assets.trip_schema import GREEN, YELLOW
from taxi_assets_testkit.synthetic import csv_lines, generate_rows, write_csv_gz

pytestmark = pytest.mark.unit

JAN = TaxiPartition("green", "2019-01")
FILE = JAN.filename


def _green_file(tmp_path, rows=5, **kwargs):
    lines = csv_lines(GREEN, generate_rows(GREEN, JAN, rows))
    return write_csv_gz(tmp_path / f"{FILE}.gz", lines, **kwargs)


def test_the_chunks_are_the_header_then_the_data_lines_counted(tmp_path):
    path = _green_file(tmp_path, rows=5)

    with TripCsv(path, GREEN, FILE) as csv:
        read = b"".join(csv.chunks())
        assert csv.rows == 5

    assert read == gzip.decompress(path.read_bytes())
    assert [column.name for column in csv.columns] == list(GREEN.header)


def test_a_header_of_the_other_colour_names_it(tmp_path):
    lines = csv_lines(YELLOW, generate_rows(YELLOW, TaxiPartition("yellow", "2019-01"), 1))
    path = write_csv_gz(tmp_path / f"{FILE}.gz", lines)

    with pytest.raises(SourceError, match=r"does not match the green trip schema .* It is a yel"):
        TripCsv(path, GREEN, FILE)


def test_a_truncated_file_says_so(tmp_path):
    path = _green_file(tmp_path, rows=2_000)
    path.write_bytes(path.read_bytes()[:-100])

    with TripCsv(path, GREEN, FILE) as csv, pytest.raises(SourceError) as failed:
        csv.count_rows()

    assert str(failed.value).startswith(f"{FILE} is truncated: the gzip stream ends early")


def test_an_html_page_is_no_gzip_file(tmp_path):
    path = tmp_path / "page.csv.gz"
    path.write_bytes(b"<!DOCTYPE html><html><body>Sign in</body></html>")

    with pytest.raises(SourceError, match=f"{FILE} is an HTML page, not a gzip file"):
        TripCsv(path, GREEN, FILE)


def test_bytes_after_the_gzip_stream_are_refused(tmp_path):
    path = _green_file(tmp_path)
    path.write_bytes(path.read_bytes() + b"\0" * 16)

    with TripCsv(path, GREEN, FILE) as csv, pytest.raises(SourceError) as failed:
        csv.count_rows()

    assert "16 bytes after the end of its gzip stream (zero padding)" in str(failed.value)


def test_a_file_with_more_lines_than_the_limit_is_refused(tmp_path):
    path = _green_file(tmp_path, rows=20)

    with TripCsv(path, GREEN, FILE, max_rows=10) as csv, pytest.raises(SourceError) as failed:
        csv.count_rows()

    assert str(failed.value).startswith(f"{FILE}: more than 10 rows")


def test_a_line_ending_unlike_the_headers_is_found(tmp_path):
    path = _green_file(tmp_path, rows=3)
    text = gzip.decompress(path.read_bytes()).split(b"\r\n")
    path.write_bytes(gzip.compress(b"\r\n".join(text[:2]) + b"\n" + b"\r\n".join(text[2:])))

    with TripCsv(path, GREEN, FILE) as csv:
        mixed = csv.first_mixed_line_ending()

    assert mixed is not None
    assert str(mixed).startswith(f"{FILE} line 2: ends in LF, the lines before it in CRLF")
