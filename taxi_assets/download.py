"""Where the monthly trip files live and how one is fetched to a local path.

A file is `{base}/{taxi}/{taxi}_tripdata_{YYYY-MM}.csv.gz`. `base` is the DataTalksClub release by
default; an `http(s)://` mirror, a `file://` URL or a plain directory work the same way. This
module holds the URL helpers (`source_url`, `redact_url`, `check_source_url`, `fetch_path`), the
download itself (`fetch`, `MinimumRate`) and the existence check (`is_published`).
"""

import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util import Retry

from taxi_assets.errors import (
    MonthNotPublished,
    OutOfSpace,
    SourceError,
    SourceUnavailable,
    no_space,
)
from taxi_assets.progress import Transfer

# The real month the repository ships (2020-10|green), in the release's layout: a mirror offline.
SAMPLE_SOURCE = Path(__file__).resolve().parent.parent / "sample_source"
DEFAULT_SOURCE_URL = "https://github.com/DataTalksClub/nyc-tlc-data/releases/download"
# The TLC's own monthly files (Parquet), for the months after the release.
DEFAULT_TLC_URL = "https://d37ci6vzurychx.cloudfront.net/trip-data"
CHUNK_BYTES = 1 << 20
LOOKUP_ATTEMPTS = 3


def source_url(base_url: str, taxi: str, filename: str) -> str:
    """The URL of `filename` of `taxi` under `base_url`, in the release's layout."""
    return f"{base_url.rstrip('/')}/{taxi}/{filename}"


def redact_url(url: str) -> str:
    """The URL without credentials or query string (signed URLs carry tokens there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True)
class FetchedFile:
    """A file made available locally: its path, its URL (redacted) and its size."""

    path: Path
    url: str  # redacted, safe to log
    bytes: int


@dataclass(frozen=True)
class MinimumRate:
    """A download that brings fewer than `bytes_per_second` over a `window_seconds` is given up
    (0: never): a server that sends a byte now and then would otherwise keep a run
    "downloading" for ever, each byte resetting the read timeout."""

    bytes_per_second: float = 16 * 1024
    window_seconds: float = 60.0

    def check(self, received: int, elapsed: float, safe_url: str) -> None:
        """Give up (SourceUnavailable) if `received` bytes in `elapsed` seconds fall short."""
        if self.bytes_per_second and received < self.bytes_per_second * elapsed:
            raise SourceUnavailable(
                f"{safe_url} arrives too slowly: {received:,} bytes in the last {elapsed:.0f}s, "
                f"under the minimum of {self.bytes_per_second:,.0f} bytes/s "
                "(TAXI_DOWNLOAD_MIN_RATE; 0 turns this off)"
            )


def fetch(
    url: str,
    download_dir: Path,
    *,
    timeout_seconds: float = 60.0,
    retries: int = 0,
    transfer: Transfer | None = None,
    min_rate: MinimumRate | None = None,
) -> FetchedFile:
    """Make the file at `url` available as a local path.

    HTTP downloads stream into `download_dir` (the caller removes it); a transfer slower than
    `min_rate` is given up. `retries`: how often urllib3 tries a request again (connection errors,
    5xx answers, with exponential backoff); 0, the default, where a retry policy of Dagster's
    retries the whole step (the loads: one retry layer, one bounded worst case). Local files are
    read in place. `transfer` follows the bytes as they come.
    """
    transfer = transfer if transfer is not None else Transfer()
    check_source_url(url)
    scheme = urlsplit(url).scheme
    if scheme in ("http", "https"):
        rate = min_rate if min_rate is not None else MinimumRate()
        return _download(url, download_dir, timeout_seconds, retries, transfer, rate)
    path = fetch_path(url)
    if not path.is_file():
        raise MonthNotPublished(f"{path.name} is not published: no such file {path}")
    transfer.total = transfer.done = path.stat().st_size
    transfer.local = True
    return FetchedFile(path=path, url=redact_url(url), bytes=transfer.done)


def is_published(url: str, *, timeout_seconds: float = 30.0) -> bool | None:
    """Whether the file exists at `url`: True, False (404 / no such file), or None (unknown)."""
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        return fetch_path(url).is_file()
    try:
        response = requests.head(url, allow_redirects=True, timeout=(10.0, timeout_seconds))
    except requests.RequestException:
        return None
    if response.status_code == 404:
        return False
    return True if response.ok else None


def fetch_path(url: str) -> Path:
    """The local path a `file://` URL or a plain path names."""
    check_source_url(url)
    parts = urlsplit(url)
    return Path(unquote(parts.path)) if parts.scheme == "file" else Path(url)


SCHEMES = ("http", "https", "file")


def unreadable_scheme(url: str) -> str | None:
    """Why the URL's scheme is not one this project reads, or None: an http(s):// or file:// URL
    or a plain path is; anything else (`ftp://`, `s3://`, a typo like `htp://`) is a setting to
    fix, not a month that is "not published"."""
    scheme = urlsplit(url).scheme.lower()
    if scheme and scheme not in SCHEMES and len(scheme) > 1:  # (`C:` is a Windows path)
        return (
            f"{scheme}:// is not a source this project reads; use https://, http://, file:// or "
            "a directory"
        )
    return None


def check_source_url(url: str) -> None:
    """Refuse a URL whose scheme this project does not read (`unreadable_scheme`)."""
    reason = unreadable_scheme(url)
    if reason is not None:
        raise SourceError(f"{redact_url(url)}: {reason}")


def _download(
    url: str,
    download_dir: Path,
    timeout: float,
    retries: int,
    transfer: Transfer,
    min_rate: MinimumRate,
) -> FetchedFile:
    safe_url = redact_url(url)
    _resolve_host(url, safe_url)
    destination = download_dir / Path(urlsplit(url).path).name
    retry = Retry(
        total=retries,
        backoff_factor=1.0,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=("GET",),
        raise_on_status=False,
    )
    with requests.Session() as session:
        session.mount("http://", HTTPAdapter(max_retries=retry))
        session.mount("https://", HTTPAdapter(max_retries=retry))
        try:
            with session.get(url, stream=True, timeout=(10.0, timeout)) as response:
                _raise_for_status(response, safe_url)
                length = response.headers.get("Content-Length", "")
                transfer.total = int(length) if length.isdigit() else None
                with destination.open("wb") as out:
                    _copy_stream(response.raw, out, transfer, min_rate, safe_url)
        except (requests.RequestException, Urllib3Error) as error:
            # Not chained: the driver's text holds the URL's query string (a signed URL's key).
            raise SourceUnavailable(
                f"could not download {safe_url}: {type(error).__name__}: "
                f"{_without_secrets(str(error), url)}"
            ) from None
        except OSError as error:
            if not no_space(error):
                raise
            raise OutOfSpace(
                f"no space left on device in {download_dir} for {destination.name} "
                f"({transfer.done:,} bytes of it written): free space there, or point TMPDIR "
                "at a larger disk"
            ) from error
    return FetchedFile(path=destination, url=safe_url, bytes=destination.stat().st_size)


def _copy_stream(raw, out, transfer: Transfer, min_rate: MinimumRate, safe_url: str) -> None:
    """The raw stream (the .gz bytes as published, never transparently decoded) into `out`,
    each read taking what has arrived, so that the rate is checked however slowly it comes."""
    window_start, window_bytes = time.monotonic(), 0
    while chunk := raw.read1(CHUNK_BYTES):
        out.write(chunk)
        transfer.done += len(chunk)
        window_bytes += len(chunk)
        elapsed = time.monotonic() - window_start
        if elapsed >= min_rate.window_seconds:
            min_rate.check(window_bytes, elapsed, safe_url)
            window_start, window_bytes = time.monotonic(), 0


def _resolve_host(url: str, safe_url: str) -> None:
    """Look the host up first: a name that does not resolve (no network, a typo in
    TAXI_SOURCE_URL) fails at once, in one line, instead of after rounds of retries. A lookup
    that fails "temporarily" (what many resolvers say offline) is tried again for a few seconds
    first. Through a proxy, the proxy resolves names: nothing to look up here."""
    if requests.utils.get_environ_proxies(url):
        return
    host = urlsplit(url).hostname or ""
    for attempt in range(LOOKUP_ATTEMPTS):
        try:
            socket.getaddrinfo(host, None)
            return
        except socket.gaierror as error:
            if error.errno != socket.EAI_AGAIN or attempt == LOOKUP_ATTEMPTS - 1:
                raise SourceError(
                    f"cannot download {safe_url}: the host {host!r} cannot be resolved "
                    f"({error.strerror}); is this machine offline? TAXI_SOURCE_URL can name a "
                    f"local mirror, such as the month this project ships: {SAMPLE_SOURCE}"
                ) from error
            time.sleep(1.0)


def _without_secrets(text: str, url: str) -> str:
    """An HTTP library's error text without the URL's credentials, nor any query string (urllib3
    says "Max retries exceeded with url: /path?query", for a redirect's target too: a signed
    URL's `X-Amz-Signature=…`)."""
    parts = urlsplit(url)
    for secret in (parts.query, parts.username, parts.password):
        if secret:
            text = text.replace(secret, "…")
    return _QUERY.sub("?…", text)


_QUERY = re.compile(r"\?[^\s'\"()<>]+")


def _raise_for_status(response: requests.Response, safe_url: str) -> None:
    if response.status_code == 404:
        raise MonthNotPublished(
            f"{Path(urlsplit(safe_url).path).name} is not published at the source "
            f"(HTTP 404 for {safe_url})"
        )
    if 400 <= response.status_code < 500:
        raise SourceError(f"the source refused {safe_url}: HTTP {response.status_code}")
    if response.status_code >= 500:
        raise SourceUnavailable(f"the source failed for {safe_url}: HTTP {response.status_code}")
