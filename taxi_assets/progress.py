"""What a load is doing, as it does it: a line when each phase ends, with its duration, and
every few seconds during a phase what it has done so far (Kestra showed each task's logs).

A ticker thread writes the in-phase lines, so a phase that is one long SQL statement reports too.
"""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# How often a phase says how far it is.
EVERY_SECONDS = 5.0


@dataclass
class Transfer:
    """Bytes moved so far, of `total` when known (a download's Content-Length, a file's size)."""

    done: int = 0
    total: int | None = None
    local: bool = False  # a file read in place: nothing to download

    def describe(self, elapsed: float) -> str:
        if self.local:
            return f"a local file of {_mib(self.done)}, read in place"
        rate = f", {_mib(self.done / elapsed)}/s" if elapsed > 0 else ""
        if self.total:
            return f"{_mib(self.done)} of {_mib(self.total)}, {self.done / self.total:.0%}{rate}"
        return f"{_mib(self.done)}{rate}"


class Progress:
    """Phase lines for one file's load, written with `log` (the run's logger)."""

    def __init__(self, log: Callable[[str], None], name: str):
        self.log = log
        self.name = name

    @contextmanager
    def phase(self, phase: str, status: Callable[[float], str] | None = None) -> Iterator[None]:
        """Time `phase`; while it runs, log `status(elapsed seconds)` every `EVERY_SECONDS`."""
        started = time.monotonic()
        done = threading.Event()

        def tick(status: Callable[[float], str]) -> None:
            while not done.wait(EVERY_SECONDS):
                elapsed = time.monotonic() - started
                self.log(f"{self.name}: {phase}: {status(elapsed)} after {elapsed:.0f}s")

        ticker = threading.Thread(
            target=tick, args=(status,), name=f"progress-{phase}", daemon=True
        )
        if status is not None:
            ticker.start()
        try:
            yield
        finally:
            done.set()
            if ticker.is_alive():
                ticker.join()
        elapsed = time.monotonic() - started
        summary = f" ({status(elapsed)})" if status is not None else ""
        self.log(f"{self.name}: {phase} done in {elapsed:.1f}s{summary}")


def _mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"
