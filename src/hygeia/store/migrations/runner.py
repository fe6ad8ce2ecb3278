"""Read the versions a database records, refuse what this Hygeia cannot serve, apply the rest.

Where versions live:

- ``hygeia_schema`` holds the core version, as every Hygeia since version 1
  kept it (one row per version reached; the highest counts).  Older Hygeias
  and ``/ready`` read it there, so a migrated database is refused by an older
  Hygeia instead of being written into.
- ``hygeia_migration`` holds one row per migration applied, of every stream:
  (stream, version, description, applied); a pillar's version is its highest.

Opening a database (``open_repository``) is three steps, by the backends:
:func:`check` before any DDL (refuse a newer database, or one with pending
migrations unless told to migrate), the baseline statements (store/schema.py,
idempotent: they lay out a new database and repair an existing one), then
:func:`apply_pending`.  Each migration runs in its own transaction that also
records it, under the backends' schema lock (PostgreSQL: an advisory lock;
SQLite: ``BEGIN IMMEDIATE``), and re-reads the version under that lock: two
processes migrating at once, or a run after a crash, never apply a step twice.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from hygeia.store.migrations.core import CORE
from hygeia.store.migrations.model import Migration, MigrationStep, Stream
from hygeia.store.migrations.registry import streams
from hygeia.store.schema import DIALECT_TYPES, PendingMigrations, SchemaVersionError


class SchemaDatabase(Protocol):
    """What a backend lends the runner: transactions that hold its schema lock."""

    dialect: str

    def schema_transaction(self) -> AbstractContextManager[MigrationStep]: ...


class Step:
    """A :class:`MigrationStep` over a DB-API connection already inside a transaction."""

    def __init__(self, dialect: str, connection: Any) -> None:
        self.dialect = dialect
        self._connection = connection
        self._types = DIALECT_TYPES[dialect]

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")
        return self._connection.execute(sql, params)

    def sql(self, statement: str) -> str:
        return statement.format(**self._types)


@dataclass(frozen=True)
class StreamStatus:
    """One stream as a database records it and as this Hygeia knows it.

    ``recorded`` is None when the database never saw the stream; ``latest`` is
    None when this Hygeia does not know it (a pillar that is not installed).
    """

    name: str
    recorded: int | None
    latest: int | None
    pending: tuple[Migration, ...]

    @property
    def newer(self) -> bool:
        return self.recorded is not None and self.latest is not None and \
            self.recorded > self.latest

    def describe(self) -> str:
        return f"{self.name} {self.recorded or 0} -> {self.latest}"


def table_exists(step: MigrationStep, name: str) -> bool:
    if step.dialect == "sqlite":
        return step.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                            (name,)).fetchone() is not None
    return step.execute("SELECT to_regclass(?)", (name,)).fetchone()[0] is not None


def recorded_versions(step: MigrationStep) -> dict[str, int]:
    """Every stream's version as the database records it; empty for a new database."""
    found: dict[str, int] = {}
    if table_exists(step, "hygeia_schema"):
        row = step.execute("SELECT MAX(version) FROM hygeia_schema").fetchone()
        if row is not None and row[0] is not None:
            found[CORE.name] = int(row[0])
    if table_exists(step, "hygeia_migration"):
        for name, version in step.execute("SELECT stream, MAX(version) FROM hygeia_migration "
                                          "WHERE stream <> ? GROUP BY stream", (CORE.name,)):
            found[str(name)] = int(version)
    return found


def statuses(found: dict[str, int], known: Sequence[Stream] | None = None
             ) -> list[StreamStatus]:
    """Each known stream, then each recorded stream this Hygeia does not know."""
    known = streams() if known is None else known
    result = [StreamStatus(s.name, found.get(s.name), s.latest, s.after(found.get(s.name, 0)))
              for s in known]
    names = {s.name for s in known}
    result += [StreamStatus(name, version, None, ()) for name, version in sorted(found.items())
               if name not in names]
    return result


def check(database: SchemaDatabase, *, migrate: bool) -> None:
    """Before any DDL: refuse a database this Hygeia must not write into.

    A new database passes (the baseline lays it out).  A newer one, or a core
    older than the baseline, is refused always; one with pending migrations
    unless ``migrate``.
    """
    with database.schema_transaction() as step:
        found = recorded_versions(step)
    if CORE.name not in found:
        return
    problems(found, migrate=migrate)


def problems(found: dict[str, int], *, migrate: bool) -> list[StreamStatus]:
    """The pending streams of a database recording ``found``; raises when it is refused."""
    core = found[CORE.name]
    if core < CORE.baseline:
        raise SchemaVersionError(
            f"The database uses storage layout version {core}, older than the oldest this "
            f"Hygeia can migrate ({CORE.baseline}). Load the data into a new database.")
    table = statuses(found)
    newer = [s for s in table if s.newer]
    if newer:
        raise SchemaVersionError(
            "The database was migrated by a newer Hygeia (" + ", ".join(
                f"{s.name} version {s.recorded}, this Hygeia knows {s.latest}" for s in newer)
            + "). Run that Hygeia, or a newer one, on it.")
    pending = [s for s in table if s.pending]
    if pending and not migrate:
        raise PendingMigrations([s.describe() for s in pending])
    return pending


def apply_pending(database: SchemaDatabase) -> list[tuple[str, Migration]]:
    """Apply every pending migration of every known stream, in order; returns them.

    Safe to run again at any time (after a crash, by several processes at once):
    each step re-reads its stream's version under the schema lock.
    """
    applied = []
    for stream in streams():
        with database.schema_transaction() as step:
            start = recorded_versions(step).get(stream.name, 0)
        for migration in stream.after(start):
            if _apply(database, stream, migration):
                applied.append((stream.name, migration))
    return applied


def _apply(database: SchemaDatabase, stream: Stream, migration: Migration) -> bool:
    with database.schema_transaction() as step:
        current = recorded_versions(step).get(stream.name, 0)
        if current >= migration.version:  # another process got there first
            return False
        if current != migration.version - 1:
            raise SchemaVersionError(
                f"Stream {stream.name} is at version {current}; migration "
                f"{migration.version} needs {migration.version - 1}.")
        for statement in (*migration.statements, *migration.dialects.get(step.dialect, ())):
            step.execute(step.sql(statement))
        if migration.run is not None:
            migration.run(step)
        if migration.reindex:
            queue_reindex(step, migration.reindex)
        record(step, stream.name, migration)
    return True


# the job kind and request of ``$reindex`` (server/jobs/reindex.py), queued as a row: the store
# cannot import the server, and the row is all the job runner needs to pick it up
REINDEX_KIND = "reindex"


def queue_reindex(step: MigrationStep, types: Sequence[str]) -> str:
    """Queue a ``$reindex`` of ``types`` (in the migration's transaction); its job id."""
    job_id = uuid.uuid4().hex
    now = int(time.time() * 1_000_000)
    request = json.dumps({"types": sorted(types), "client": None})
    step.execute("INSERT INTO job (id, kind, state, request, progress, result, error, "
                 "attempts, owner, lease_until, created, updated, expires) VALUES "
                 "(?, ?, 'queued', ?, NULL, NULL, NULL, 0, NULL, NULL, ?, ?, NULL)",
                 (job_id, REINDEX_KIND, request, now, now))
    return job_id


def record(step: MigrationStep, stream: str, migration: Migration) -> None:
    """Note ``migration`` as applied (in the transaction that applied it)."""
    if stream == CORE.name:  # where older Hygeias and /ready look for the core version
        step.execute("INSERT INTO hygeia_schema (version) VALUES (?)", (migration.version,))
    step.execute("INSERT INTO hygeia_migration (stream, version, description, applied) "
                 "VALUES (?, ?, ?, ?)", (stream, migration.version, migration.description,
                                         int(time.time() * 1_000_000)))


def pending_of(found: dict[str, int]) -> Iterator[StreamStatus]:
    """The streams of ``found`` with migrations to apply (readiness probes)."""
    return (s for s in statuses(found) if s.pending)
