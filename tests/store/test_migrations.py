"""Schema migrations on both databases: streams, order, refusal, crash safety, idempotence.

A test stream ("trial") stands for a pillar declaring its tables with
``register_stream``; a replaced "core" stream stands for the next core version.
Every database here is new and private to its test.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from hygeia.server.context import FhirRequest
from hygeia.store import open_repository
from hygeia.store.migrations import (
    CORE,
    Migration,
    MigrationStep,
    Stream,
    register_stream,
    streams,
    unregister_stream,
)
from hygeia.store.migrations import registry as registry_module
from hygeia.store.schema import SCHEMA_VERSION, PendingMigrations, SchemaVersionError
from tests.conftest import BACKENDS

TRIAL = "trial"


def _note(step: MigrationStep) -> None:
    """A data migration: one row per run, so a second run would show."""
    step.execute("INSERT INTO trial_note (text) VALUES (?)", ("migrated",))


TRIAL_MIGRATIONS = [
    Migration(1, "trial items", statements=(
        "CREATE TABLE IF NOT EXISTS trial_item (id {ctext} PRIMARY KEY, amount {real})",)),
    Migration(2, "trial notes, filled by code", statements=(
        "CREATE TABLE IF NOT EXISTS trial_note (text {text} NOT NULL)",), run=_note),
]


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database nobody opened yet (PostgreSQL: created, dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/migrations.db"
        return
    admin = request.getfixturevalue("postgres_url")
    name = f"hygeia_mig_{uuid.uuid4().hex[:10]}"
    yield admin.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def trial() -> Iterator[None]:
    register_stream(TRIAL, TRIAL_MIGRATIONS)
    yield
    unregister_stream(TRIAL)


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///"):]) as connection:
            return connection.execute(sql).fetchall()
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(sql).fetchall()


def _versions(url: str) -> dict[str, int]:
    with open_repository(url) as repository:
        return repository.recorded_versions(10)


def _tables(url: str) -> set[str]:
    if url.startswith("sqlite:///"):
        rows = _query(url, "SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = _query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row[0] for row in rows}


def test_a_stream_is_numbered_from_its_baseline_without_gaps() -> None:
    with pytest.raises(ValueError, match=r"numbered \[1, 2\]"):
        Stream("gappy", (TRIAL_MIGRATIONS[0], Migration(3, "skips 2")))
    assert Stream("core", (Migration(9, "next"),), baseline=8).latest == 9
    assert CORE.latest == SCHEMA_VERSION  # SCHEMA_VERSION keeps meaning the core version


def test_core_belongs_to_the_store_and_comes_first(trial: None) -> None:
    with pytest.raises(ValueError, match="belongs to the store"):
        register_stream("core", [])
    register_stream("alpha", [])
    try:
        names = [s.name for s in streams()]
        assert names[0] == "core" and names == ["core", *sorted(names[1:])]
        assert {"alpha", TRIAL} <= set(names)
    finally:
        unregister_stream("alpha")


def test_a_new_database_gets_every_stream_at_its_latest_version(fresh_url: str,
                                                                 trial: None) -> None:
    repository = open_repository(fresh_url)  # no --migrate needed: nothing to protect
    repository.close()
    # every known stream: the trial's and the server's own (subscriptions)
    assert _versions(fresh_url) == {stream.name: stream.latest for stream in streams()}
    assert {"core": SCHEMA_VERSION, TRIAL: 2}.items() <= _versions(fresh_url).items()
    assert {"trial_item", "trial_note", "hygeia_migration"} <= _tables(fresh_url)
    assert _query(fresh_url, "SELECT text FROM trial_note") == [("migrated",)]


def test_pending_migrations_are_refused_then_applied_once(fresh_url: str) -> None:
    open_repository(fresh_url).close()  # made before the pillar existed
    register_stream(TRIAL, TRIAL_MIGRATIONS)
    try:
        with pytest.raises(PendingMigrations, match="trial 0 -> 2") as refused:
            open_repository(fresh_url)
        assert refused.value.pending == ["trial 0 -> 2"]
        assert "trial_item" not in _tables(fresh_url)  # refused before any DDL
        with open_repository(fresh_url, migrate=True) as repository:
            assert [(s, m.version) for s, m in repository.applied_migrations] == [
                (TRIAL, 1), (TRIAL, 2)]
        with open_repository(fresh_url, migrate=True) as again:  # a no-op
            assert again.applied_migrations == []
        with open_repository(fresh_url) as plain:  # up to date: opens without --migrate
            assert plain.recorded_versions(10)[TRIAL] == 2
        assert _query(fresh_url, "SELECT text FROM trial_note") == [("migrated",)]
        rows = _query(fresh_url, "SELECT stream, version, description FROM hygeia_migration "
                                 "WHERE stream = 'trial' ORDER BY version")
        assert rows == [(TRIAL, 1, "trial items"), (TRIAL, 2, "trial notes, filled by code")]
    finally:
        unregister_stream(TRIAL)


def test_a_failed_migration_leaves_nothing_and_the_next_run_resumes(fresh_url: str) -> None:
    """Each migration is one transaction with its record: a crash inside the second
    keeps the first applied and recorded, and none of the second (its table too)."""
    open_repository(fresh_url).close()

    def crash(step: MigrationStep) -> None:
        _note(step)
        raise RuntimeError("killed in the middle of migration 2")

    register_stream(TRIAL, [TRIAL_MIGRATIONS[0], Migration(
        2, "trial notes, filled by code", statements=TRIAL_MIGRATIONS[1].statements,
        run=crash)])
    try:
        with pytest.raises(RuntimeError, match="killed"):
            open_repository(fresh_url, migrate=True)
        tables = _tables(fresh_url)
        assert "trial_item" in tables and "trial_note" not in tables
        register_stream(TRIAL, TRIAL_MIGRATIONS)
        with open_repository(fresh_url, migrate=True) as repository:
            assert [m.version for _, m in repository.applied_migrations] == [2]
        assert _versions(fresh_url)[TRIAL] == 2
        assert _query(fresh_url, "SELECT text FROM trial_note") == [("migrated",)]
    finally:
        unregister_stream(TRIAL)


def test_concurrent_migrators_apply_each_step_once(fresh_url: str) -> None:
    """Two servers started with --migrate at once: the schema lock orders them."""
    open_repository(fresh_url).close()
    register_stream(TRIAL, TRIAL_MIGRATIONS)
    errors: list[BaseException] = []

    def open_and_close() -> None:
        try:
            open_repository(fresh_url, migrate=True).close()
        except BaseException as error:  # reported below
            errors.append(error)

    try:
        threads = [threading.Thread(target=open_and_close) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert _query(fresh_url, "SELECT text FROM trial_note") == [("migrated",)]
        assert _versions(fresh_url)[TRIAL] == 2
    finally:
        unregister_stream(TRIAL)


def test_a_newer_database_is_refused(fresh_url: str, trial: None) -> None:
    open_repository(fresh_url).close()
    _query_write(fresh_url, "INSERT INTO hygeia_migration (stream, version, description, "
                            "applied) VALUES ('trial', 3, 'from the future', 0)")
    with pytest.raises(SchemaVersionError, match=r"newer Hygeia.*trial version 3"):
        open_repository(fresh_url, migrate=True)


def test_a_newer_core_is_refused(fresh_url: str) -> None:
    open_repository(fresh_url).close()
    _query_write(fresh_url, f"INSERT INTO hygeia_schema VALUES ({SCHEMA_VERSION + 1})")
    with pytest.raises(SchemaVersionError, match=f"core version {SCHEMA_VERSION + 1}"):
        open_repository(fresh_url, migrate=True)


def test_the_next_core_version_is_one_entry(fresh_url: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A core migration records its version in hygeia_schema too, where older Hygeias
    and /ready read it; a database from before it is refused, then migrated."""
    open_repository(fresh_url).close()
    following = SCHEMA_VERSION + 1
    nine = Migration(following, "a core table", statements=(
        "CREATE TABLE IF NOT EXISTS core_trial (seq {serial}, body {blob})",))
    monkeypatch.setitem(registry_module._STREAMS, "core",
                        Stream("core", (*CORE.migrations, nine), baseline=CORE.baseline))
    with pytest.raises(PendingMigrations, match=f"core {SCHEMA_VERSION} -> {following}"):
        open_repository(fresh_url)
    open_repository(fresh_url, migrate=True).close()
    assert _query(fresh_url, "SELECT MAX(version) FROM hygeia_schema") == [(following,)]
    assert "core_trial" in _tables(fresh_url)


def test_a_new_database_gets_the_core_migrations_after_the_baseline(
        fresh_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    following = SCHEMA_VERSION + 1
    nine = Migration(following, "a core table", statements=(
        "CREATE TABLE IF NOT EXISTS core_trial (seq {serial}, body {blob})",))
    monkeypatch.setitem(registry_module._STREAMS, "core",
                        Stream("core", (*CORE.migrations, nine), baseline=CORE.baseline))
    open_repository(fresh_url).close()  # new: laid out without --migrate
    assert max(_query(fresh_url, "SELECT version FROM hygeia_schema")) == (following,)
    assert (following,) in _query(fresh_url, "SELECT version FROM hygeia_migration "
                                             "WHERE stream = 'core'")
    assert "core_trial" in _tables(fresh_url)


def _query_write(url: str, sql: str) -> None:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///"):]) as connection:
            connection.execute(sql)
        return
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql)


def test_a_migration_that_changes_index_rows_queues_a_reindex(fresh_url: str) -> None:
    """``reindex`` reuses the $reindex job: queued with the migration, run by the job
    runner of the next server, after which the resources are found again."""
    from hygeia.server import FhirService

    with open_repository(fresh_url) as repository:
        service = FhirService(repository)
        try:
            created = service.handle(FhirRequest("POST", "Patient", body={
                "resourceType": "Patient", "name": [{"family": "Reindexed"}]}))
            assert created.status == 201
        finally:
            service.close()
    _query_write(fresh_url, "DELETE FROM string_index")  # as if the column were new
    register_stream(TRIAL, [Migration(1, "names normalised anew", reindex=("Patient",))])
    try:
        with open_repository(fresh_url, migrate=True) as repository:
            jobs = _query(fresh_url, "SELECT kind, state, request FROM job")
            assert [(kind, state) for kind, state, _ in jobs] == [("reindex", "queued")]
            service = FhirService(repository)
            try:
                assert _total(service, "reindexed") == 0  # the rows are really gone
                service.start_jobs()
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and _query(
                        fresh_url, "SELECT state FROM job") != [("completed",)]:
                    time.sleep(0.1)
                assert _total(service, "reindexed") == 1
            finally:
                service.close()
    finally:
        unregister_stream(TRIAL)


def _total(service: Any, family: str) -> int:
    found = service.handle(FhirRequest("GET", "Patient", query=[("family", family)]))
    body = found.resource if found.resource is not None else orjson.loads(found.raw or b"{}")
    return int(body["total"])
