"""Local servers for the tests and the benchmarks: the PostgreSQL server of the libpq variables
(`PG`, default 127.0.0.1:5432, user postgres), a free TCP port, an HTTP server for a folder."""

import functools
import http.server
import os
import socket
import threading
from pathlib import Path

PG = {
    "host": os.environ.get("PGHOST", "127.0.0.1"),
    "port": int(os.environ.get("PGPORT", "5432")),
    "user": os.environ.get("PGUSER", "postgres"),
    "password": os.environ.get("PGPASSWORD") or None,
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on: for a server to start on, or for a
    client to be refused at."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the files of its folder, logging nothing."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_directory(
    directory: Path, handler: type[http.server.SimpleHTTPRequestHandler] = QuietHandler
) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A real HTTP server on 127.0.0.1 serving `directory` from a daemon thread: the server (to
    `shutdown()`) and its URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
