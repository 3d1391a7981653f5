"""One COPY spread over several PostgreSQL sessions: each parses and writes its share of the lines.

A COPY is bound to one core on the server; a month's file is parsed, typed, hashed and written
by a single backend. Handing whole-line chunks to a few sessions that each COPY into the same
table uses the other cores. The order of the rows in the table is then no longer the file's.

Each session commits its own share, so a failure can leave some shares in the table: copy into
a scratch table and drop it on failure. Any session's error stops the others and is raised once
they have all ended; an interrupt of the thread that feeds them aborts every COPY. (A session
learns of a bad line only when its COPY ends: PostgreSQL answers a COPY once, at its end.)
"""

import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager

import psycopg

# How often a waiting thread looks whether the others have stopped.
POLL_SECONDS = 0.1


class _Stopped(Exception):
    """A session left its COPY because another one failed or the feeder stopped."""


def copy_in_parallel(
    connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    statement: str,
    chunks: Iterable[bytes],
    sessions: int,
) -> int:
    """COPY `chunks` (each of whole lines) with `statement` (`COPY … FROM STDIN`) through
    `sessions` connections from `connect`, each committing its own share; the rows copied."""
    work: queue.Queue[bytes | None] = queue.Queue(maxsize=2 * sessions)
    stop = threading.Event()

    def copy_share() -> int:
        with connect() as connection, connection.cursor() as cursor:
            with cursor.copy(statement) as copy:
                while (chunk := _next_chunk(work, stop)) is not None:
                    copy.write(chunk)
            return cursor.rowcount

    with ThreadPoolExecutor(sessions, thread_name_prefix="copy") as pool:
        copies = [pool.submit(copy_share) for _ in range(sessions)]
        try:
            for chunk in chunks:
                _hand_over(work, chunk, copies)
            for _ in copies:
                _hand_over(work, None, copies)
            return sum(copy.result() for copy in copies)
        except BaseException:
            stop.set()
            wait(copies)
            raise


def _next_chunk(work: queue.Queue[bytes | None], stop: threading.Event) -> bytes | None:
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            return work.get(timeout=POLL_SECONDS)
        except queue.Empty:
            continue


def _hand_over(work: queue.Queue[bytes | None], chunk: bytes | None, copies: list[Future]) -> None:
    """Queue `chunk` for the sessions, or raise the error of one that failed meanwhile."""
    while True:
        for copy in copies:
            if copy.done() and copy.exception() is not None:
                raise copy.exception()
        try:
            work.put(chunk, timeout=POLL_SECONDS)
            return
        except queue.Full:
            continue
