"""One COPY spread over several PostgreSQL sessions: each parses and writes its share of the lines.

A COPY is bound to one core on the server; a month's file is parsed, typed, hashed and written
by a single backend. Handing whole-line chunks to a few sessions that each COPY into the same
table uses the other cores. The order of the rows in the table is then no longer the file's.

With `Batches`, each session copies a few MiB at a time (into a temporary table of its own) and
turns them into final rows (an INSERT … SELECT) in the same transaction, while the others copy:
parsing, hashing and writing overlap, and the copied rows never leave the session's memory.

Each session commits its own share, so a failure can leave some shares in the target table: copy
into a table built aside and drop it on failure. Any session's error stops the others and is
raised once they have all ended; an interrupt of the thread that feeds them aborts every COPY.
(A session learns of a bad line only when its COPY ends: PostgreSQL answers a COPY once, at its
end.)
"""

import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass

import psycopg

from taxi_assets.warehouses.postgres_query import built_sql

# How often a waiting thread looks whether the others have stopped.
POLL_SECONDS = 0.1

Statement = tuple[str, Sequence[object]]


@dataclass(frozen=True)
class Batches:
    """Each session runs `prepare` once, then copies about `size` bytes at a time and runs
    `after_each` on them before its transaction commits."""

    size: int
    prepare: Sequence[Statement] = ()
    after_each: Sequence[Statement] = ()


ONE_BATCH = Batches(size=2**63)


class _Stopped(Exception):
    """A session left its COPY because another one failed or the feeder stopped."""


def copy_in_parallel(
    connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    statement: str,
    chunks: Iterable[bytes],
    sessions: int,
    batches: Batches = ONE_BATCH,
) -> int:
    """COPY `chunks` through `sessions` connections from `connect`; the rows copied.

    Each chunk holds whole lines; `statement` is a `COPY … FROM STDIN`; each session commits its
    own share (in `batches`)."""
    work: queue.Queue[bytes | None] = queue.Queue(maxsize=2 * sessions)
    stop = threading.Event()

    def copy_share() -> int:
        with connect() as connection:
            for query, params in batches.prepare:
                connection.execute(built_sql(query), params or None)
            copied, more = 0, True
            while more:
                with connection.transaction(), connection.cursor() as cursor:
                    with cursor.copy(built_sql(statement)) as copy:
                        more = _copy_batch(copy, work, stop, batches.size)
                    copied += cursor.rowcount
                    for query, params in batches.after_each:
                        cursor.execute(built_sql(query), params or None)
            return copied

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


def _copy_batch(
    copy: psycopg.Copy, work: queue.Queue[bytes | None], stop: threading.Event, size: int
) -> bool:
    """Write chunks into `copy` until about `size` bytes went in; whether more may follow."""
    written = 0
    while written < size:
        chunk = _next_chunk(work, stop)
        if chunk is None:
            return False
        copy.write(chunk)
        written += len(chunk)
    return True


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
            if copy.done() and (error := copy.exception()) is not None:
                raise error
        try:
            work.put(chunk, timeout=POLL_SECONDS)
            return
        except queue.Full:
            continue
