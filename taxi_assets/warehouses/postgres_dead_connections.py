"""How both ends of a PostgreSQL connection give it up once it has gone silent.

A frozen network or a dead host sends no FIN or RST: without these limits a load would wait
forever, and the server would keep a killed client's session and its locks.
"""

from dataclasses import dataclass

import psycopg
from typing_extensions import TypedDict


class ClientParameters(TypedDict, closed=True):
    """libpq's connection parameters that give a silent connection up (`DeadConnectionLimits`);
    closed (no other keys), so that they type-check as `psycopg.connect`'s keyword arguments."""

    keepalives: int
    keepalives_idle: int
    keepalives_interval: int
    keepalives_count: int
    tcp_user_timeout: int


@dataclass(frozen=True)
class DeadConnectionLimits:
    """The settings that make both ends give a connection up once it has been silent `seconds`.

    A frozen network or a dead host sends no FIN or RST (docs/operations.md, "Dead connections"):
    - the client: `tcp_user_timeout` ends a connection whose sent data stays unacknowledged (a
      COPY writing, a statement waiting for its answer: keepalives are not sent while data is
      in flight); keepalives end an idle one;
    - the server (the session's settings): keepalives end an idle session, or one waiting in a
      COPY for data, releasing its locks (the month's advisory lock of a killed client);
      `tcp_user_timeout` one whose answer stays unacknowledged; `client_connection_check_interval`
      (PostgreSQL 14+) stops a running statement of a dead client;
      `idle_in_transaction_session_timeout` ends a session left idle in a transaction by a client
      that hangs (a stopped process: its kernel still answers keepalives).
    Keepalives: the first probe after `idle` silent seconds, then `count` probes `interval` apart:
    `seconds` in all."""

    seconds: int
    count: int = 3

    @property
    def interval(self) -> int:
        return max(1, self.seconds // (2 * self.count))

    @property
    def idle(self) -> int:
        return max(1, self.seconds - self.interval * self.count)

    def client_parameters(self) -> ClientParameters:
        """libpq's connection parameters."""
        return {
            "keepalives": 1,
            "keepalives_idle": self.idle,
            "keepalives_interval": self.interval,
            "keepalives_count": self.count,
            "tcp_user_timeout": self.seconds * 1000,
        }

    def session_settings(self, server_version: int) -> dict[str, str]:
        """The server session's settings (PostgreSQL 12+), in its units (s, ms)."""
        settings = {
            "tcp_keepalives_idle": str(self.idle),
            "tcp_keepalives_interval": str(self.interval),
            "tcp_keepalives_count": str(self.count),
            "tcp_user_timeout": str(self.seconds * 1000),
            "idle_in_transaction_session_timeout": str(self.seconds * 1000),
        }
        if server_version >= 140000:
            settings["client_connection_check_interval"] = str(self.interval * 1000)
        return settings

    def apply_to_session(self, connection: psycopg.Connection) -> None:
        settings = self.session_settings(connection.info.server_version)
        connection.execute(
            "SELECT " + ", ".join("set_config(%s, %s, false)" for _ in settings),
            [value for pair in settings.items() for value in pair],
        )
