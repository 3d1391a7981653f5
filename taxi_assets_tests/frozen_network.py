"""A PostgreSQL server behind a router whose links can go silent, for the dead-connection tests.

A real network freeze sends no FIN and no RST: packets vanish on the way. Dropping them at the
sender (a filter on its own interface) is not the same: the sender's kernel sees the drop and
behaves otherwise (keepalive probes lost "locally" are tried again for ever). So the server runs
in a network namespace of its own, reached from here through a router namespace, and a freeze
drops a connection's packets in the router, both ways, by the client's port (`freeze`): other
connections (the retry's) get through. Nothing of the machine's own network is touched; the
namespaces, links and server go when the `FrozenNetwork` is closed.

Needs root, `ip` and `tc` (with the htb queue and the u32 filter) and PostgreSQL's `initdb`.
"""

import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

PG_BIN = Path("/usr/lib/postgresql")


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    found = sorted(PG_BIN.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def missing_tool() -> str | None:
    """The tool this machine lacks to build the frozen network, or None."""
    for tool in ("ip", "tc", "runuser"):
        if shutil.which(tool) is None:
            return f"needs `{tool}`"
    if postgres_bin() is None:
        return f"needs PostgreSQL's initdb under {PG_BIN}"
    return None


def cannot_run() -> str | None:
    """Why the frozen network cannot be built here, or None."""
    return missing_tool() or (None if os.geteuid() == 0 else "needs root (namespaces, tc)")


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"`{' '.join(command)}` failed: {done.stderr.strip()}")


class FrozenNetwork:
    """here (10.N.2.1) ── router (10.N.2.2 | 10.N.0.1) ── server (10.N.0.2:5432)"""

    port = 5432  # named everywhere: PGPORT, which may point the suite elsewhere, does not apply

    def __init__(self) -> None:
        tag = f"{random.randrange(16**4):04x}"
        self.router, self.server_ns = f"taxi-rtr-{tag}", f"taxi-srv-{tag}"
        net = f"10.{random.randrange(100, 250)}"
        self.host = f"{net}.0.2"
        self._here, self._to_server, self._to_here = f"txh{tag}", f"txs{tag}", f"txr{tag}"
        self._directory = Path(tempfile.mkdtemp(prefix="taxi_assets-frozen-"))
        self._server: subprocess.Popen | None = None
        self._frozen_ports: list[int] = []
        try:
            self._link(net)
            self._start_server(net)
        except BaseException:
            self.close()
            raise

    def _link(self, net: str) -> None:
        router, server, here = self.router, self.server_ns, self._here
        _run("ip", "netns", "add", router)
        _run("ip", "netns", "add", server)
        _run("ip", "link", "add", here, "type", "veth", "peer", "name", self._to_here)
        _run("ip", "link", "set", self._to_here, "netns", router)
        _run("ip", "netns", "exec", router, "ip", "link", "add", self._to_server, "type", "veth",
             "peer", "name", "eth0", "netns", server)  # fmt: skip
        _run("ip", "addr", "add", f"{net}.2.1/30", "dev", here)
        _run("ip", "link", "set", here, "up")
        _run("ip", "route", "add", f"{net}.0.0/30", "via", f"{net}.2.2")
        for command in (
            f"ip addr add {net}.2.2/30 dev {self._to_here}",
            f"ip link set {self._to_here} up",
            f"ip addr add {net}.0.1/30 dev {self._to_server}",
            f"ip link set {self._to_server} up",
            "sysctl -qw net.ipv4.ip_forward=1",
        ):
            _run("ip", "netns", "exec", router, *command.split())
        for command in (
            f"ip addr add {self.host}/30 dev eth0",
            "ip link set eth0 up",
            "ip link set lo up",
            f"ip route add {net}.2.0/30 via {net}.0.1",
        ):
            _run("ip", "netns", "exec", server, *command.split())
        # Each direction leaves the router through an htb queue: class 1:1 forwards, class 1:2
        # (a queue of length 0) drops what the filters of `freeze` send it.
        for device in (self._to_server, self._to_here):
            for command in (
                f"tc qdisc add dev {device} root handle 1: htb default 1",
                f"tc class add dev {device} parent 1: classid 1:1 htb rate 10gbit",
                f"tc class add dev {device} parent 1: classid 1:2 htb rate 10gbit",
                f"tc qdisc add dev {device} parent 1:2 handle 2: pfifo limit 0",
            ):
                _run("ip", "netns", "exec", router, *command.split())

    def _start_server(self, net: str) -> None:
        data = self._directory / "data"
        shutil.chown(self._directory, "postgres")
        bindir = postgres_bin()
        _run("runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(data),
             "--auth=trust", "-U", "postgres", "-N")  # fmt: skip
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {net}.2.0/30 trust\n")
        self._server = subprocess.Popen(
            ["ip", "netns", "exec", self.server_ns, "runuser", "-u", "postgres", "--",
             str(bindir / "postgres"), "-D", str(data), "-p", str(self.port),
             "-c", f"listen_addresses={self.host}",
             "-c", f"unix_socket_directories={self._directory}", "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                self.observer().close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def observer(self, database: str = "postgres") -> psycopg.Connection:
        """A connection that never crosses the router (the server's Unix socket)."""
        return psycopg.connect(
            host=str(self._directory),
            port=self.port,
            user="postgres",
            dbname=database,
            autocommit=True,
        )

    def freeze(self, client_ports: list[int]) -> None:
        """From now on the router drops every packet of these connections (by the client's
        port), both ways, silently."""
        for port in client_ports:
            pref = str(100 + len(self._frozen_ports))
            for device, side in ((self._to_server, "sport"), (self._to_here, "dport")):
                _run("ip", "netns", "exec", self.router, "tc", "filter", "add", "dev", device,
                     "parent", "1:", "protocol", "ip", "pref", pref, "u32", "match", "ip", side,
                     str(port), "0xffff", "flowid", "1:2")  # fmt: skip
            self._frozen_ports.append(port)

    def close(self) -> None:
        if self._server is not None:
            bindir = postgres_bin()
            subprocess.run(
                ["runuser", "-u", "postgres", "--", str(bindir / "pg_ctl"), "-D",
                 str(self._directory / "data"), "stop", "-m", "immediate"],
                capture_output=True,
            )  # fmt: skip
            self._server.wait(timeout=30)
        for namespace in (self.router, self.server_ns):  # their links go with them
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self._here], capture_output=True)
        shutil.rmtree(self._directory, ignore_errors=True)
