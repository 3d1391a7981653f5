"""Reading a gzipped trip CSV: `TripCsv`, the gzip stream it reads (`GzipMembers`) and the
header check (`check_header`).

Reading checks the gzip stream and the header as it goes and counts the data lines, so the
count of rows in the file is known independently of what the warehouse says it loaded.
"""

import concurrent.futures
import csv
import gzip
import io
import math
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from taxi_assets.errors import SourceError
from taxi_assets.trip_contract import (
    MAX_LINE_BYTES,
    SUSPECT_BYTES,
    first_break,
    line_problem,
    line_too_long,
)
from taxi_assets.trip_schema import TRIP_SCHEMAS, Column, TripSchema

CHUNK_BYTES = 1 << 20
MAX_HEADER_BYTES = 64 * 1024
# A file with more data lines is refused (TAXI_MAX_ROWS): the largest real months hold about 8M.
DEFAULT_MAX_ROWS = 15_000_000
# The largest value of an integer column (PostgreSQL's integer, int4).
INT4_MAX = 2_147_483_647


GZIP_MAGIC = b"\x1f\x8b"


class GzipMembers(io.RawIOBase):
    """A gzip file's data, member after member, as gzip(1) reads it, except for what follows the
    last member: any byte there, zero padding too, is refused (DuckDB's reader refuses it, so no
    warehouse takes it). Memory stays flat: each read decompresses at most what it returns."""

    def __init__(self, raw: io.BufferedReader, name: str):
        self._raw = raw
        self._name = name
        self._decompressor = zlib.decompressobj(wbits=31)  # gzip framing, CRC and length checked
        self._input = b""
        self._started = False
        self.position = 0  # decompressed bytes returned so far

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        """Decompress into `buffer`; 0 at the end of the last member."""
        while True:
            if self._decompressor.eof and not self._next_member():
                return 0
            if not self._input:
                self._input = self._raw.read(CHUNK_BYTES)
                if not self._input:
                    if not self._started:
                        return 0  # an empty file: the header check says so
                    raise EOFError("the gzip stream ends before its end-of-stream marker")
            self._started = True
            data = self._decompressor.decompress(self._input, len(buffer))
            self._input = self._decompressor.unconsumed_tail
            if data:
                buffer[: len(data)] = data
                self.position += len(data)
                return len(data)

    def _next_member(self) -> bool:
        """Start the next gzip member after the one just ended (False: the file ends here)."""
        rest = self._decompressor.unused_data
        if len(rest) < len(GZIP_MAGIC):
            rest += self._raw.read(CHUNK_BYTES)
        if not rest:
            return False
        if not rest.startswith(GZIP_MAGIC):
            raise SourceError(self._trailing_bytes(rest))
        self._decompressor = zlib.decompressobj(wbits=31)
        self._input = rest
        return True

    def _trailing_bytes(self, rest: bytes) -> str:
        """The error for bytes after the last gzip member that begin with `rest`."""
        stream_end = self._raw.tell() - len(rest)
        trailing = os.fstat(self._raw.fileno()).st_size - stream_end
        what = "zero padding" if not rest.strip(b"\0") else f"starting {rest[:8]!r}"
        return (
            f"{self._name}: {trailing:,} bytes after the end of its gzip stream ({what}), which "
            "not every reader accepts: not loaded; rewrite it whole (gunzip -c, then gzip)"
        )


# Lines that are no trip, and what to call them.
_NOT_A_TRIP = {
    b"": "a blank line",
    b"\\.": "a line holding only \\. (PostgreSQL's end-of-data marker), not a trip",
}


class TripCsv:
    """A gzipped trip CSV read in chunks, header first, for a bulk loader to stream.

    Opening it checks that the file is gzip and that its header is `schema`'s. `rows` counts data
    lines as the chunks go by; gzip damage anywhere becomes a `SourceError` naming the file.
    """

    def __init__(self, path: Path, schema: TripSchema, name: str, max_rows: int = DEFAULT_MAX_ROWS):
        self.name = name
        self.path = path
        self.rows = 0
        self.max_rows = max_rows
        self._partial = b""  # the line in progress, as far as the last chunk had it
        self._counted: concurrent.futures.Future[int] | None = None
        self._size = path.stat().st_size
        self._open()
        try:
            self.header_line = self._read_header()
            # The schema's columns this file holds, in its order (`check_header`).
            self.columns = check_header(schema, _split_header(self.header_line), name)
        except BaseException:
            self.close()
            raise

    def rewind(self) -> None:
        """Back to the first data line, for a loader that reads the file a second time."""
        self._close_files()
        self._open()
        self.rows = 0
        self.header_line = self._read_header()

    def close(self) -> None:
        if self._counted is not None:
            self._counted.cancel()
            concurrent.futures.wait([self._counted])
        self._close_files()

    def _open(self) -> None:
        self._raw = self.path.open("rb")  # closed by close() / __exit__
        self._members = GzipMembers(self._raw, self.name)
        self._gzip = io.BufferedReader(self._members, CHUNK_BYTES)

    def _close_files(self) -> None:
        self._gzip.close()
        self._raw.close()

    def describe_progress(self, elapsed: float) -> str:
        """How far reading has come: data lines so far, their rate, the share of the file."""
        try:
            share = self._raw.tell() / self._size if self._size else 1.0
        except (OSError, ValueError):  # closed meanwhile
            share = 1.0
        if share >= 1.0:
            return f"all {self.rows:,} lines read"
        rate = f" ({self.rows / elapsed:,.0f}/s)" if elapsed > 0 else ""
        return f"{self.rows:,} lines read{rate}, {share:.0%} of the file"

    def __enter__(self) -> "TripCsv":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def count_rows(self) -> int:
        """Read the whole file (checking the gzip stream) just to count its data lines."""
        for _ in self.chunks():
            pass
        return self.rows

    def count_rows_in_background(self, on_error: Callable[[], object] | None = None) -> None:
        """Start `count_rows` in a thread, for a loader that reads the file by itself meanwhile
        (zlib lets go of the GIL). `counted_rows` waits for it. `on_error` is called when the
        count fails (too many lines, a broken gzip stream): it can stop the loader at once."""

        def count() -> int:
            try:
                return self.count_rows()
            except SourceError:
                if on_error is not None:
                    on_error()
                raise

        counting = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._counted = counting.submit(count)
        counting.shutdown(wait=False)

    def raise_if_count_failed(self) -> None:
        """The background count's error, if it has already failed (a loader about to start
        reading: an interrupt meant for it finds nothing running to stop)."""
        if self._counted is not None and self._counted.done():
            self._counted.result()

    def counted_rows(self) -> int:
        """The data lines, once counted; the count's own error (a truncated gzip, say) if any."""
        if self._counted is not None:
            return self._counted.result()
        return self.rows

    def check_parsed_rows(self, parsed: int) -> None:
        """The CSV parser must find one row per data line counted here; where it did not, the
        line that made the difference is named if it can be found."""
        if parsed != self.counted_rows():
            counts = f"{self.rows} data lines but {parsed} CSV rows"
            odd = self.first_odd_line()
            if odd is None:
                raise SourceError(f"{self.name}: {counts} (quoted line breaks inside a field?)")
            line, what = odd
            raise SourceError(f"{self.name} line {line}: {what} ({counts})")

    def first_odd_line(self) -> tuple[int, str] | None:
        """The first line that is not one trip: (file line, what it is), or None. Reads the
        file again, a line at a time (at most `MAX_LINE_BYTES` each): a failure's explanation.
        A blank line (DuckDB skips it), a line of only `\\.` (PostgreSQL's end-of-data marker:
        COPY stops there), a quoted field that holds a line break or never ends."""
        opened_at = 0  # the line where a quoted field left open began
        with gzip.open(self.path, "rb") as lines:
            lines.readline(MAX_LINE_BYTES)  # the header
            for number, line in enumerate(iter(lambda: lines.readline(MAX_LINE_BYTES), b""), 2):
                text = line.rstrip(b"\r\n")
                if not opened_at and text in _NOT_A_TRIP:
                    return number, _NOT_A_TRIP[text]
                if text.count(b'"') % 2:
                    if opened_at:
                        return opened_at, f"a quoted field holds a line break (up to line {number})"
                    opened_at = number
        if opened_at:
            return opened_at, "a quoted field begins here and never ends"
        return None

    def first_mixed_line_ending(self) -> SourceError | None:
        """The first line that ends otherwise than the header (LF among CRLF lines, CRLF among
        LF), outside quoted fields, or None: reads the file again (a failure's explanation).
        Both warehouses' readers refuse such a file, each in its own words; this says it alike."""
        opened = False  # whether a quoted field is open at the line's end
        with gzip.open(self.path, "rb") as lines:
            expected = _line_ending(lines.readline(MAX_LINE_BYTES))
            if expected is None:  # the header is the file's only line
                return None
            for number, line in enumerate(iter(lambda: lines.readline(MAX_LINE_BYTES), b""), 2):
                opened ^= bool(line.count(b'"') % 2)
                ending = _line_ending(line)
                if not opened and ending and ending != expected:
                    return SourceError(mixed_line_endings(self.name, number, ending, expected))
        return None

    def first_contract_break(self) -> SourceError | None:
        """The first field outside the contract (`trip_contract.first_break`), with its line:
        reads the file again (a failure's explanation, nothing else)."""
        with gzip.open(self.path, "rt", encoding="utf-8", errors="replace", newline="") as text:
            reader = csv.reader(text)
            next(reader, None)  # the header
            found = first_break(self.columns, reader)
            if found is None:
                return None
            _, column, problem = found
            return SourceError(f"{self.name} line {reader.line_num}, column {column}: {problem}")

    def fractional_integer(self, data_line: int, column: str, value: float) -> SourceError:
        """The error for a value of an integer column that is not a whole number, or too big."""
        if math.isfinite(value) and value == math.trunc(value):
            problem = f"{value:.0f} is too big for an integer column (at most {INT4_MAX})"
        else:
            problem = f"{value:g} is not a whole number"
        return SourceError(f"{self.name} line {data_line + 1}, column {column}: {problem}")

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes, header line included, in chunks of about 1 MiB."""
        yield self.header_line
        last_byte = b"\n"
        self._partial = b""
        while chunk := self._read(CHUNK_BYTES):
            self._check_chunk(chunk)
            self.rows += chunk.count(b"\n")
            self._check_size()
            last_byte = chunk[-1:]
            yield chunk
        if last_byte != b"\n":
            self.rows += 1  # a last line without a line ending

    def _check_chunk(self, chunk: bytes) -> None:
        """What of the contract (`trip_contract.py`) the engines would not hold a file to: lines
        of at most `MAX_LINE_BYTES` (no 3 GiB line in memory), no NUL byte, no hex number. A few
        byte searches per chunk; a line is parsed only where a suspect byte is."""
        first, last = chunk.find(b"\n"), chunk.rfind(b"\n")
        line_so_far = len(self._partial) + (len(chunk) if first < 0 else first)
        if line_so_far > MAX_LINE_BYTES:  # lines within a chunk are shorter than one
            raise SourceError(line_too_long(self.name, self.rows + 2))
        for suspect in SUSPECT_BYTES:
            at = chunk.find(suspect)
            while at >= 0:
                at = self._check_line_at(chunk, at)
                at = chunk.find(suspect, at) if at >= 0 else -1
        if first < 0:
            self._partial += chunk
        else:
            self._partial = chunk[last + 1 :]

    def _check_line_at(self, chunk: bytes, at: int) -> int:
        """Check the line of the chunk's byte `at`; where the next line starts (-1: none)."""
        start = chunk.rfind(b"\n", 0, at) + 1
        end = chunk.find(b"\n", at)
        line = (self._partial if start == 0 else b"") + chunk[start : end if end >= 0 else None]
        problem = line_problem(self.columns, line)
        if problem is not None:
            column, what = problem
            line_number = self.rows + chunk.count(b"\n", 0, start) + 2
            at_column = f", column {column}" if column else ""
            raise SourceError(f"{self.name} line {line_number}{at_column}: {what}")
        return end + 1 if end >= 0 else -1

    def _check_size(self) -> None:
        """Refuse a file far beyond any real month (a gzip bomb, a wrong file) while reading,
        before a warehouse stores it all."""
        if self.rows > self.max_rows:
            raise SourceError(too_many_rows(self.name, self.max_rows))

    def data_line_chunks(self) -> Iterator[bytes]:
        """The data lines, without the header, in chunks of whole lines (about 1 MiB), for a
        loader that hands each chunk to any of several sessions. A chunk without a line break
        is passed on as it is: a line that long is no trip, and its parser says so."""
        chunks = self.chunks()
        next(chunks)  # the header
        rest = b""
        for chunk in chunks:
            chunk = rest + chunk
            cut = chunk.rfind(b"\n") + 1 or len(chunk)
            yield chunk[:cut]
            rest = chunk[cut:]
        if rest:
            yield rest

    def _read_header(self) -> bytes:
        line = self._guarded(lambda: self._gzip.readline(MAX_HEADER_BYTES))
        if not line.strip():
            raise SourceError(f"{self.name} is empty: no header line")
        if b"\r" in line.rstrip(b"\r\n"):
            raise SourceError(
                f"{self.name}: its lines end in a bare CR (\\r), not in LF or CRLF: convert "
                "the line endings"
            )
        if not line.endswith(b"\n") and len(line) >= MAX_HEADER_BYTES:
            raise SourceError(f"{self.name}: the first line is not a CSV header")
        return line

    def _read(self, size: int) -> bytes:
        return self._guarded(lambda: self._gzip.read(size))

    def _guarded(self, read):
        try:
            return read()
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:
            raise SourceError(self._describe_gzip_error(error)) from error

    def _describe_gzip_error(self, error: Exception) -> str:
        with self.path.open("rb") as raw:
            start = raw.read(256).lstrip().lower()
        if start.startswith((b"<!doctype html", b"<html", b"<")):
            return (
                f"{self.name} is an HTML page, not a gzip file: the source URL probably "
                "points at a web page (a login or error page)"
            )
        where = f"after {self._gzip_offset()} decompressed bytes"
        if isinstance(error, EOFError):
            return f"{self.name} is truncated: the gzip stream ends early ({where})"
        return f"{self.name} is not a valid gzip file ({where}): {error}"

    def _gzip_offset(self) -> int:
        return self._members.position


def _line_ending(line: bytes) -> str | None:
    """ "CRLF" or "LF" (None: the file's last line, without one)."""
    if line.endswith(b"\r\n"):
        return "CRLF"
    return "LF" if line.endswith(b"\n") else None


def mixed_line_endings(name: str, line: int, ending: str, expected: str) -> str:
    """The error for a line that ends otherwise than the lines before it."""
    return (
        f"{name} line {line}: ends in {ending}, the lines before it in {expected}: mixed line "
        "endings; give every line the same one (dos2unix makes them all LF)"
    )


def too_many_rows(name: str, max_rows: int) -> str:
    """The error for a file of more than `max_rows` data lines."""
    return (
        f"{name}: more than {max_rows:,} rows, far beyond any real month (the largest hold "
        "about 8 million): not loaded; TAXI_MAX_ROWS sets the limit"
    )


def _split_header(line: bytes) -> list[str]:
    text = line.decode("utf-8-sig", errors="replace").strip()
    return [name.strip().strip('"') for name in text.split(",")]


def check_header(schema: TripSchema, header: list[str], name: str) -> tuple[Column, ...]:
    """The schema's columns the file holds, in its order: the release's header, then any of the
    newer columns (`airport_fee`, …). Fail with the differing columns otherwise."""
    expected = [column.lower() for column in schema.header]
    found = [column.lower() for column in header]
    newer = {column.name.lower(): column for column in schema.newer_columns}
    after = found[len(expected) :]
    if (
        found[: len(expected)] == expected
        and len(set(after)) == len(after)
        and all(column in newer for column in after)
    ):
        return schema.columns + tuple(newer[column] for column in after)
    missing = [c for c in schema.header if c.lower() not in found]
    unexpected = [c for c in header if c.lower() not in expected and c.lower() not in newer]
    problem = "; ".join(
        part
        for part in (
            f"missing {', '.join(missing)}" if missing else "",
            f"unexpected {', '.join(unexpected)}" if unexpected else "",
            "same columns in another order" if not (missing or unexpected) else "",
        )
        if part
    )
    other = [
        s.taxi
        for s in TRIP_SCHEMAS.values()
        if [c.lower() for c in s.header] == found[: len(s.header)]
    ]
    hint = f" It is a {other[0]} trip file." if other and other[0] != schema.taxi else ""
    raise SourceError(
        f"{name}: the header does not match the {schema.taxi} trip schema "
        f"({len(header)} columns, expected {len(expected)}): {problem}.{hint}"
    )
