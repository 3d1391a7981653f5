"""The tests' trip source: a real HTTP server (the `http_root` fixture) serving files laid out as
the DataTalksClub release is, a corner of it per test (`Mirror`), which can also break off a
transfer or answer slowly (`SourceHandler`)."""

import collections
import gzip
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import ClassVar

from taxi_assets.partitions import TaxiPartition
from taxi_assets.resources import TaxiSource
from taxi_assets_testkit.local_servers import QuietHandler


class Gate:
    """Holds each request until `count` have arrived (or `timeout` passed), then lets all
    through: downloads that overlap whatever the machine's speed."""

    def __init__(self, count: int, timeout: float = 120.0):
        self.count = count
        self.timeout = timeout
        self.arrived = 0
        self.condition = threading.Condition()

    def pass_through(self) -> None:
        with self.condition:
            self.arrived += 1
            self.condition.notify_all()
            self.condition.wait_for(lambda: self.arrived >= self.count, timeout=self.timeout)


class SourceHandler(QuietHandler):
    """Serves files; counts requests per path; can break off a transfer to order."""

    hits: ClassVar[collections.Counter] = collections.Counter()
    drops: ClassVar[collections.Counter] = collections.Counter()  # path -> transfers to break off
    delays: ClassVar[dict[str, float]] = {}  # path prefix -> seconds to wait before answering
    gates: ClassVar[dict[str, "Gate"]] = {}  # path prefix -> requests held until enough arrive

    def do_GET(self) -> None:
        self.hits[self.path] += 1
        for prefix, seconds in self.delays.items():
            if self.path.startswith(prefix):
                time.sleep(seconds)
        for prefix, gate in self.gates.items():
            if self.path.startswith(prefix):
                gate.pass_through()
        if self.drops[self.path] > 0:
            self.drops[self.path] -= 1
            self._send_half()
            return
        super().do_GET()

    def _send_half(self) -> None:
        data = Path(self.translate_path(self.path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.close_connection = True


class Mirror:
    """A test's own corner of the HTTP server: `{url}/{taxi}/{taxi}_tripdata_{YYYY-MM}.csv.gz`."""

    def __init__(self, directory: Path, url: str):
        self.directory = directory
        self.url = url

    @classmethod
    def on(cls, http_root: tuple[Path, str], name: str | None = None) -> "Mirror":
        """A corner of the server serving `http_root` (the fixture): `name`, or a new one."""
        root, url = http_root
        name = name or uuid.uuid4().hex[:10]
        (root / name).mkdir(exist_ok=True)
        return cls(root / name, f"{url}/{name}")

    def path(self, partition: TaxiPartition) -> Path:
        path = self.directory / partition.taxi / partition.source_filename
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def put_bytes(self, partition: TaxiPartition, data: bytes) -> Path:
        path = self.path(partition)
        path.write_bytes(data)
        return path

    def put_csv(self, partition: TaxiPartition, csv_path: Path) -> Path:
        """Publish a plain CSV (a real sample) gzipped, as the release does."""
        with csv_path.open("rb") as source, gzip.open(self.path(partition), "wb") as target:
            shutil.copyfileobj(source, target)
        return self.path(partition)

    def put_gz(self, partition: TaxiPartition, gz_path: Path) -> Path:
        shutil.copyfile(gz_path, self.path(partition))
        return self.path(partition)

    def url_path(self, partition: TaxiPartition) -> str:
        """The request path the server sees for the partition's file."""
        return f"/{self.directory.name}/{partition.taxi}/{partition.source_filename}"

    def hits(self, partition: TaxiPartition) -> int:
        return SourceHandler.hits[self.url_path(partition)]

    def break_off(self, partition: TaxiPartition, transfers: int) -> None:
        """The next `transfers` downloads of the file stop halfway (a dropped connection)."""
        SourceHandler.drops[self.url_path(partition)] = transfers

    def hold_until(self, count: int) -> None:
        """Downloads from this mirror wait until `count` of them are under way (0: no more)."""
        SourceHandler.gates.pop(f"/{self.directory.name}/", None)
        if count:
            SourceHandler.gates[f"/{self.directory.name}/"] = Gate(count)

    def slow_down(self, seconds: float) -> None:
        """Every download from this mirror takes at least `seconds` (0: back to full speed)."""
        SourceHandler.delays[f"/{self.directory.name}/"] = seconds

    def source(self, **fields: object) -> TaxiSource:
        """The release's CSVs and the TLC's Parquet files (flat: `{url}/{file}.parquet`), both
        from this mirror: no test asks the internet. `fields`: other TaxiSource fields."""
        return TaxiSource(base_url=self.url, tlc_url=self.url, timeout_seconds=10, **fields)
