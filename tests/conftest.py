"""Shared fixtures: repositories and real server processes on SQLite and PostgreSQL.

PostgreSQL tests run when HYGEIA_TEST_POSTGRES names a server (for example
``postgresql://postgres@127.0.0.1:5432/postgres``).  They are skipped when it
is unset, and they FAIL, never skip, when it is set and the server cannot be
reached: CI sets it, so CI cannot go green without them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from hygeia.server import FhirService
from hygeia.store import Repository, open_repository
from hygeia.store.schema import AUTH_TABLES, INDEX_TABLES


def _know_every_installed_pillars_tables() -> None:
    """Import every installed pillar's entry point, as the CLI does on each start, so a
    database this process lays out has the tables (migration streams) a ``hygeia``
    subprocess will expect; otherwise a test's outcome would hang on which tests ran
    before it. Loaded directly, not through ``installed_pillars``, whose cache would
    freeze the ``HYGEIA_PILLARS`` of this moment for the whole session."""
    for entry in entry_points(group="hygeia.pillars"):
        entry.load()


_know_every_installed_pillars_tables()
FIXTURES = Path(__file__).parent / "fixtures"
POSTGRES_ENV = "HYGEIA_TEST_POSTGRES"
# the server's own tables (server/subscriptions/tables.py), emptied with the core's
SUBSCRIPTION_TABLES = ["subscription_state", "subscription_notification",
                       "subscription_token", "subscription_owner"]
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def postgres_admin_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test session, dropped afterwards."""
    admin = postgres_admin_url()
    if admin is None:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    name = f"hygeia_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        pytest.fail(f"{POSTGRES_ENV}={admin} is set but PostgreSQL is unreachable: {error}")
    yield _url_for(admin, name)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _url_for(admin: str, name: str) -> str:
    base, _, _ = admin.rpartition("/")
    return f"{base}/{name}"


def _truncate_postgres(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        tables = ", ".join(["resource_version", "resource", "job", "load_journal", "feed_cursor",
                            "feed_retention", *AUTH_TABLES,
                            *INDEX_TABLES, *SUBSCRIPTION_TABLES])
        connection.execute(f"TRUNCATE {tables} RESTART IDENTITY")


@pytest.fixture
def postgres_repository(postgres_url: str) -> Iterator[Repository]:
    """An empty PostgreSQL repository alone, for what only it does (it hands out seqs
    before commit where SQLite's one writer commits them in order, computes a horizon
    from its locks, runs several committers at once). Tests using it are marked
    ``postgres``: CI fails when they are skipped."""
    repository = open_repository(postgres_url)
    _truncate_postgres(postgres_url)
    try:
        yield repository
    finally:
        repository.close()


@pytest.fixture(params=BACKENDS)
def repository(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository]:
    """An empty repository on each backend."""
    if request.param == "sqlite":
        repo = open_repository(f"sqlite:///{tmp_path}/test.db")
    else:
        url = request.getfixturevalue("postgres_url")
        repo = open_repository(url)
        _truncate_postgres(url)
    try:
        yield repo
    finally:
        repo.close()


@pytest.fixture
def service(repository: Repository) -> FhirService:
    return FhirService(repository)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A real ``hygeia serve`` process and an HTTP client for its FHIR base."""

    def __init__(self, db_url: str, *extra: str, stdout: Any = subprocess.DEVNULL,
                 module: str = "hygeia.cli.main") -> None:
        self.db_url = db_url
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        # a PostgreSQL server keeps its job files in the working directory by default
        self.files = None if "--files" in extra else tempfile.mkdtemp(prefix="hygeia-files-")
        files = [] if self.files is None else ["--files", self.files]
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "serve", "--port", str(self.port),
             "--db", db_url, *files, *extra],
            stdout=stdout, stderr=subprocess.PIPE,
        )
        self.client = httpx.Client(base_url=self.base + "/", timeout=60)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"server exited early: {error}")
            try:
                if httpx.get(f"{self.base}/metadata", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("server did not start within 60 s")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.files is not None:
            shutil.rmtree(self.files, ignore_errors=True)


@pytest.fixture(scope="session", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    """One real server per backend for the whole session; tests use unique identifiers."""
    with backend_server(request, tmp_path_factory, "srv") as process:
        yield process


@contextlib.contextmanager
def backend_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   name: str, *extra: str) -> Iterator[ServerProcess]:
    """A server on the backend ``request.param`` names, in a database of its own (a
    PostgreSQL one is dropped afterwards); for parametrised fixtures of any scope."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp(name)}/{name}.db"
    else:
        url = request.getfixturevalue("postgres_url").rsplit("/", 1)[0] + \
            f"/hygeia_{name}_{uuid.uuid4().hex[:8]}"
    process = ServerProcess(url, *extra)
    try:
        yield process
    finally:
        process.stop()
        if request.param != "sqlite":
            _drop_database(url)


def _drop_database(url: str) -> None:
    admin = postgres_admin_url()
    if admin is None:
        return
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@pytest.fixture
def client(server: ServerProcess) -> httpx.Client:
    return server.client


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With HYGEIA_TEST_POSTGRES set, a skipped PostgreSQL test is an error, not a pass."""
    config.stash[_POSTGRES_REQUIRED] = postgres_admin_url() is not None


_POSTGRES_REQUIRED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("postgres") and \
            item.config.stash.get(_POSTGRES_REQUIRED, False):
        report.outcome = "failed"
        report.longrepr = f"PostgreSQL test skipped although {POSTGRES_ENV} is set"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """After the documentation examples ran: how many run and how many are only shown."""
    reports = [report for outcome in ("passed", "failed")
               for report in terminalreporter.stats.get(outcome, [])]
    if any("test_docs_examples.py::test_every_example" in report.nodeid for report in reports):
        from tests.docs_examples import summary

        terminalreporter.write_line(f"documentation: {next(summary())} "
                                    "(python -m tests.docs_examples lists why)")
