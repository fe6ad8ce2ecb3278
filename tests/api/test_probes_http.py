"""``/health`` and ``/ready`` through a real ``hygeia serve`` process on both databases:
open without a token even with ``--auth``, never audited, and ``/ready`` answering 503
with an OperationOutcome when the database is gone or records another schema version."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from hygeia.store.schema import SCHEMA_VERSION
from tests.cli.test_pillars import REPOSITORY, install_metadata
from tests.conftest import ServerProcess


def _root(server: ServerProcess) -> str:
    return server.base.removesuffix("/fhir")


def _audit_total(server: ServerProcess) -> int:
    return int(server.client.get("AuditEvent", params={"_summary": "count"}).json()["total"])


def test_probes_answer_without_a_token_under_auth(database_url: str) -> None:
    server = ServerProcess(database_url, "--auth")
    try:
        root = _root(server)
        assert server.client.get("Patient").status_code == 401  # the API does need one
        health = httpx.get(f"{root}/health")
        assert health.status_code == 200
        assert health.json() == {"status": "pass"}
        assert health.headers["content-type"] == "application/json"
        ready = httpx.get(f"{root}/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "pass", "schemaVersion": SCHEMA_VERSION,
                                "jobs": "running"}
        head = httpx.head(f"{root}/ready")
        assert head.status_code == 200 and head.content == b""
        refused = httpx.post(f"{root}/health", content=b"{}")
        assert refused.status_code == 405
        assert refused.json()["resourceType"] == "OperationOutcome"
    finally:
        server.stop()


def test_ready_is_503_when_the_job_runner_is_not_running(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job that ends the runner's thread (tests/api/runner_stopping_pillar.py, a
    pillar's job raising ``SystemExit``) leaves a process that still answers requests
    but runs no job: ``/ready`` says so, ``/health`` stays 200 (a restart is the
    orchestrator's call, on readiness)."""
    site = tmp_path / "site"
    install_metadata(site, "tests.api.runner_stopping_pillar:PILLAR")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(site), str(REPOSITORY), *filter(None, [os.environ.get("PYTHONPATH")])]))
    server = ServerProcess(database_url)
    try:
        root = _root(server)
        assert httpx.get(f"{root}/ready").status_code == 200
        assert server.client.post("$stop-job-runner").status_code == 202
        deadline = time.monotonic() + 10
        while (ready := httpx.get(f"{root}/ready")).status_code == 200:
            assert time.monotonic() < deadline, "the runner still counts as running"
            time.sleep(0.1)
        assert ready.status_code == 503, ready.text
        [issue] = ready.json()["issue"]
        assert issue["expression"] == ["jobs"], issue
        assert "job runner is not running" in issue["diagnostics"]
        assert ready.headers["Retry-After"] == "5"
        assert httpx.get(f"{root}/health").status_code == 200
        assert server.client.get("Patient").status_code == 200
    finally:
        server.stop()


def test_probes_are_never_audited(database_url: str) -> None:
    server = ServerProcess(database_url, "--audit")
    try:
        root = _root(server)
        before = _audit_total(server)
        for _ in range(3):
            assert httpx.get(f"{root}/health").status_code == 200
            assert httpx.get(f"{root}/ready").status_code == 200
        # the first count search is the only event in between
        assert _audit_total(server) == before + 1
    finally:
        server.stop()


def test_ready_is_503_when_the_schema_version_is_not_current(database_url: str) -> None:
    server = ServerProcess(database_url)
    try:
        root = _root(server)
        assert httpx.get(f"{root}/ready").status_code == 200
        _set_schema_version(database_url, SCHEMA_VERSION - 1)
        ready = httpx.get(f"{root}/ready")
        assert ready.status_code == 503
        assert ready.headers["retry-after"] == "5"
        issue = ready.json()["issue"][0]
        assert issue["expression"] == ["database.schema"]
        assert f"schema version {SCHEMA_VERSION - 1}" in issue["diagnostics"]
        assert httpx.get(f"{root}/health").status_code == 200  # alive, just not ready
    finally:
        server.stop()


def test_ready_is_503_quickly_when_the_postgres_database_is_dropped(
        postgres_url: str) -> None:
    url = postgres_url.rsplit("/", 1)[0] + f"/hygeia_ready_{time.monotonic_ns()}"
    server = ServerProcess(url)
    try:
        root = _root(server)
        assert httpx.get(f"{root}/ready").status_code == 200
        _drop(url)
        for _ in range(3):  # the pool's dead connections first, then no connection at all
            started = time.monotonic()
            ready = httpx.get(f"{root}/ready", timeout=30)
            assert ready.status_code == 503, ready.text
            assert time.monotonic() - started < 5
            outcome = ready.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert outcome["issue"][0]["expression"] == ["database"]
            assert "postgres" not in ready.text  # the URL (and its password) stays private
        assert httpx.get(f"{root}/health").status_code == 200
    finally:
        server.stop()
        _drop(url)


def _set_schema_version(url: str, version: int) -> None:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.execute("UPDATE hygeia_schema SET version = ?", (version,))
        return
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("UPDATE hygeia_schema SET version = %s", (version,))


def _drop(url: str) -> None:
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def test_ready_does_not_hang_on_a_locked_postgres_schema_table(postgres_url: str) -> None:
    url = postgres_url.rsplit("/", 1)[0] + f"/hygeia_lock_{time.monotonic_ns()}"
    server = ServerProcess(url)
    try:
        root = _root(server)
        with psycopg.connect(url) as holder:  # a migration holding the table, say
            holder.execute("LOCK TABLE hygeia_schema IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            ready = httpx.get(f"{root}/ready", timeout=30)
            assert ready.status_code == 503
            assert time.monotonic() - started < 5
            holder.rollback()
        assert httpx.get(f"{root}/ready").status_code == 200
    finally:
        server.stop()
        _drop(url)
