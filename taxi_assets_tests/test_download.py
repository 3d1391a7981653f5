"""Downloads: credentials and signatures never reach a message, and a source that trickles is
given up. The HTTP servers are the tests' own, in this process."""

import contextlib
import http.server
import threading
import time

import pytest

from taxi_assets.download import MinimumRate, fetch, redact_url
from taxi_assets.errors import SourceUnavailable
from taxi_assets_testkit.local_servers import free_port

pytestmark = pytest.mark.unit


def test_urls_lose_credentials_and_query_strings():
    url = "https://user:pa55@mirror.example:8443/a/green/f.csv.gz?sig=abc"
    assert redact_url(url) == "https://mirror.example:8443/a/green/f.csv.gz"


def test_a_failed_download_names_no_query_string_or_password(tmp_path):
    """The HTTP library's own message quotes the URL it tried: not its secrets."""
    url = "http://reader:pa55w0rd@127.0.0.1:9/green/f.csv.gz?sig=s3cr3t-token"
    with pytest.raises(SourceUnavailable) as failed:
        fetch(url, tmp_path, retries=0, timeout_seconds=5)
    message = str(failed.value)
    assert message.startswith("could not download http://127.0.0.1:9/green/f.csv.gz: ")
    assert "s3cr3t-token" not in message and "pa55w0rd" not in message
    assert "Max retries exceeded" in message  # the library's text is still there


@contextlib.contextmanager
def serving(do_get):
    """A real HTTP server on 127.0.0.1 answering every GET with `do_get(handler)`; its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            do_get(self)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_source_that_sends_a_byte_now_and_then_is_given_up(tmp_path):
    """Each byte resets the read timeout: only the minimum rate ends such a download."""

    def drip(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        for _ in range(200):  # 20 bytes/s for at most 10 s
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.05)

    started = time.monotonic()
    with (
        serving(drip) as base,
        pytest.raises(SourceUnavailable, match="arrives too slowly") as failed,
    ):
        fetch(
            f"{base}/green/f.csv.gz", tmp_path, retries=0,
            min_rate=MinimumRate(1_000, window_seconds=1.0),
        )  # fmt: skip

    assert time.monotonic() - started < 5
    assert "under the minimum of 1,000 bytes/s (TAXI_DOWNLOAD_MIN_RATE" in str(failed.value)


def test_a_download_that_fails_after_a_redirect_names_no_query_string(tmp_path):
    """A mirror that redirects to a signed URL (as S3 does), which then cannot be reached: the
    error names neither the original query string nor the target's signature."""
    target = f"http://127.0.0.1:{free_port()}/bucket/f.csv.gz?X-Amz-Credential=AKIA-secret&X-Amz-Signature=5ig-secret"

    def redirect(handler):
        handler.send_response(302)
        handler.send_header("Location", target)
        handler.end_headers()

    with serving(redirect) as base, pytest.raises(SourceUnavailable) as failed:
        fetch(f"{base}/green/f.csv.gz?token=t0ken-secret", tmp_path, retries=0, timeout_seconds=5)

    message = str(failed.value)
    assert "Max retries exceeded" in message
    assert not any(secret in message for secret in ("AKIA-secret", "5ig-secret", "t0ken-secret"))
