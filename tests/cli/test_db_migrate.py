"""Databases made by old Hygeias are migrated by the real CLI and served over real HTTP.

The fixtures (tests/fixtures/databases, made by tools/make_migration_fixtures.py)
are what 0c8a891 (the release before the hardening issue) and c8189f5 (where
issue 15 starts) left after loading one Synthea patient: a SQLite file and a
PostgreSQL dump each.  Both record core version 8, the migrations' baseline, so
their core needs no migration step; 0c8a891's lacks the load journal and has
the whole-value lookup indexes, which the baseline statements repair on open.
A pillar ("trial", tests/cli/migration_pillar.py) declares two migrations, so
the refusal and the migration of pending steps are exercised on real old data.
"""

from __future__ import annotations

import gzip
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

import hygeia.server.subscriptions.tables  # registers the server's own stream
from hygeia.cli.pillars import installed_pillars
from hygeia.store.migrations import CORE, streams
from hygeia.store.schema import SCHEMA_VERSION
from tests.conftest import BACKENDS, FIXTURES, ServerProcess

ROOT = Path(__file__).resolve().parent.parent.parent
DATABASES = FIXTURES / "databases"
COMMITS = ["0c8a891", "c8189f5"]
PILLAR = "tests.cli.migration_pillar"
FAMILY = "Macejkovic"  # the one patient of the fixtures, with 74 Observations
# what the old databases need: the pillar's two steps, and core's if it moved on since 8
CORE_PENDING = [] if CORE.baseline == SCHEMA_VERSION else [f"core 8 -> {SCHEMA_VERSION}"]
# the server's own tables (server/subscriptions) and the installed pillars' (imaging) are
# streams too, as new to an old database as to a new one: those the CLI knows, found the way
# it finds them
installed_pillars()
OTHERS = [stream for stream in streams() if stream.name != CORE.name]
SERVER_PENDING = [f"{stream.name} 0 -> {stream.latest}" for stream in OTHERS]
AT = ", ".join(f"{stream.name} {stream.latest}" for stream in OTHERS)
UP_TO_DATE = [f"{stream.name}: version {stream.latest}, up to date" for stream in OTHERS]


@pytest.fixture(params=[(c, b) for c in COMMITS for b in BACKENDS],
                ids=[f"{c}-{getattr(b, 'values', [b])[0]}" for c in COMMITS for b in BACKENDS])
def old_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database exactly as the commit left it, restored from its fixture."""
    commit, backend = request.param
    backend = getattr(backend, "values", [backend])[0]
    if backend == "sqlite":
        path = tmp_path / f"{commit}.db"
        with gzip.open(DATABASES / f"hygeia-{commit}.sqlite.gz") as packed, \
                path.open("wb") as out:
            shutil.copyfileobj(packed, out)
        yield f"sqlite:///{path}"
        return
    admin = request.getfixturevalue("postgres_url")
    name = f"hygeia_old_{commit}_{uuid.uuid4().hex[:8]}"
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    dump = gzip.decompress((DATABASES / f"hygeia-{commit}.postgres.sql.gz").read_bytes())
    subprocess.run(["psql", "--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "--dbname", url],
                   input=dump, check=True, capture_output=True, timeout=120)
    yield url
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def hygeia(*args: str, module: str = "hygeia.cli.main") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///"):]) as connection:
            return connection.execute(sql).fetchall()
    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(sql)
        return cursor.fetchall() if cursor.description else []


def index_names(url: str) -> set[str]:
    sql = "SELECT name FROM sqlite_master WHERE type = 'index'" \
        if url.startswith("sqlite") else "SELECT indexname FROM pg_indexes"
    return {row[0] for row in query(url, sql)}


def test_an_old_database_migrates_and_serves_its_data(old_url: str) -> None:
    refused = hygeia("serve", "--port", "0", "--db", old_url, module=PILLAR)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    pending = ", ".join([*CORE_PENDING, *SERVER_PENDING, "trial 0 -> 2"])
    assert lines == [f"error: --db {old_url}: the database needs schema migrations "
                     f"({pending}): run `hygeia db migrate "
                     f"--db {old_url}` first, or start the server with --migrate"]
    assert query(old_url, "SELECT MAX(version) FROM hygeia_schema") == [(8,)]  # untouched

    status = hygeia("db", "status", "--db", old_url, module=PILLAR)
    assert status.returncode == 1, status.stderr
    assert "trial: version none, 2 pending to 2: 1 trial items; 2 trial notes" in status.stdout

    migrated = hygeia("db", "migrate", "--db", old_url, module=PILLAR)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied trial 1: trial items" in migrated.stdout
    assert "applied trial 2: trial notes" in migrated.stdout
    again = hygeia("db", "migrate", "--db", old_url, module=PILLAR)
    assert again.returncode == 0, again.stderr
    assert f"nothing to migrate: {old_url} is at core {SCHEMA_VERSION}, {AT}, " \
           "trial 2" in again.stdout
    assert query(old_url, "SELECT text FROM trial_note") == [("migrated",)]  # ran once
    assert hygeia("db", "status", "--db", old_url, module=PILLAR).returncode == 0

    server = ServerProcess(old_url, module=PILLAR)
    try:
        _reads_the_old_data(server)
    finally:
        server.stop()
    # the baseline brought 0c8a891's indexes forward: prefixes, not whole values
    names = index_names(old_url)
    assert {"string_index_prefix", "token_index_text_prefix"} <= names
    assert not names & {"string_index_lookup", "token_index_text"}


def _reads_the_old_data(server: ServerProcess) -> None:
    client = server.client
    found = client.get("Patient", params={"family": "macejk"}).json()
    assert len(found["entry"]) == 1
    patient_id = found["entry"][0]["resource"]["id"]
    patient = client.get(f"Patient/{patient_id}")
    assert patient.status_code == 200
    assert patient.json()["name"][0]["family"] == FAMILY
    observations = client.get("Observation", params={"subject": f"Patient/{patient_id}",
                                                     "_summary": "count"}).json()
    assert observations["total"] == 74
    coded = client.get("Observation", params={"patient": patient_id, "code": "8302-2"}).json()
    assert coded["entry"] and all(e["resource"]["code"]["coding"][0]["code"] == "8302-2"
                                  for e in coded["entry"])
    ready = httpx.get(f"http://127.0.0.1:{server.port}/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["schemaVersion"] == SCHEMA_VERSION
    # and the old database takes new writes
    created = client.post("Patient", json={"resourceType": "Patient",
                                           "name": [{"family": "Aftermigration"}]})
    assert created.status_code == 201


def test_serve_with_migrate_migrates_at_start(old_url: str) -> None:
    server = ServerProcess(old_url, "--migrate", module=PILLAR)
    try:
        found = server.client.get("Patient", params={"family": FAMILY}).json()
        assert found["entry"][0]["resource"]["name"][0]["family"] == FAMILY
        versions = dict(query(old_url, "SELECT stream, MAX(version) FROM hygeia_migration "
                                       "GROUP BY stream"))
        assert versions["trial"] == 2
        # a step undone behind the server's back: no longer ready, and it says why
        query(old_url, "DELETE FROM hygeia_migration WHERE stream = 'trial' AND version = 2")
        ready = httpx.get(f"http://127.0.0.1:{server.port}/ready", timeout=10)
        assert ready.status_code == 503
        issue = ready.json()["issue"][0]
        assert issue["expression"] == ["database.schema"]
        assert "trial 1 -> 2" in issue["diagnostics"]
    finally:
        server.stop()
    said = server.process.stderr.read().decode() if server.process.stderr else ""
    assert "Migrated trial to 2" in said


def test_a_new_database_is_laid_out_without_migration_lines(tmp_path: Path) -> None:
    """A newcomer's first `hygeia serve` reports no migrations: there was nothing to
    migrate, the database was laid out at the current versions."""
    server = ServerProcess(f"sqlite:///{tmp_path}/fresh.db")
    server.stop()
    said = server.process.stderr.read().decode() if server.process.stderr else ""
    assert "Hygeia FHIR R4 server at" in said and "Migrated" not in said


def test_the_environment_turns_migrate_on(old_url: str, tmp_path: Path) -> None:
    import os
    import time

    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", PILLAR, "serve", "--port", str(port), "--db", old_url,
         "--files", str(tmp_path)], cwd=ROOT, env={**os.environ, "HYGEIA_MIGRATE": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert query(old_url, "SELECT text FROM trial_note") == [("migrated",)]
    finally:
        process.terminate()
        process.wait(10)


def test_a_database_newer_than_this_hygeia_is_refused(old_url: str) -> None:
    query(old_url, f"INSERT INTO hygeia_schema VALUES ({SCHEMA_VERSION + 1})")
    for command in (("serve", "--port", "0", "--migrate"), ("db", "migrate")):
        result = hygeia(*command, "--db", old_url)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"error: The database was migrated by a newer Hygeia (core version "
            f"{SCHEMA_VERSION + 1}, this Hygeia knows {SCHEMA_VERSION}). Run that Hygeia, "
            "or a newer one, on it."]
    status = hygeia("db", "status", "--db", old_url)
    assert status.returncode == 1
    assert f"core: version {SCHEMA_VERSION + 1}, newer than this Hygeia" in status.stdout


def test_status_of_a_missing_database_is_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/none.db"
    result = hygeia("db", "status", "--db", url)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --db {url}: {tmp_path}/none.db: no such database file; "
        "`hygeia db migrate` makes a new one"]
    assert not (tmp_path / "none.db").exists()  # a status never creates a database
    made = hygeia("db", "migrate", "--db", url)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().splitlines()[-1] == \
        f"new database laid out: {url} is at core {SCHEMA_VERSION}, {AT}"
    status = hygeia("db", "status", "--db", url)
    assert (status.returncode, status.stdout.strip().splitlines()) == (
        0, [f"core: version {SCHEMA_VERSION}, up to date", *UP_TO_DATE])


def _free_port() -> int:
    from tests.conftest import free_port

    return free_port()
