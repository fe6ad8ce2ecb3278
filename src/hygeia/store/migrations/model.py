"""What a migration is: a numbered, forward-only change of the database layout.

A :class:`Stream` is one owner's sequence of migrations ("core" for the store
itself, "insurance", "devices" ... for pillars), numbered 1, 2, 3 ... without
gaps.  Each stream records its own version, so pillars never compete for
numbers with the core or with each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class MigrationStep(Protocol):
    """The connection a migration runs on, inside its own transaction.

    ``execute`` takes ``?`` placeholders on both databases; ``sql`` fills the
    abstract column types (``{text}``, ``{bigint}`` ... of store/schema.py).
    """

    dialect: str

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any: ...

    def sql(self, statement: str) -> str: ...


@dataclass(frozen=True)
class Migration:
    """One forward step of a stream's layout, applied in one transaction.

    ``statements`` run on both databases (abstract column types filled in per
    dialect); then ``dialects[dialect]``, for what only one database needs; then
    ``run``, for data changes that need code.  The version is recorded in the
    same transaction, so a crash leaves the step either done and recorded or
    not begun.  Write statements that are idempotent anyway (``IF NOT EXISTS``):
    it costs nothing and keeps hand repairs safe.  PostgreSQL statements that
    cannot run in a transaction (``CREATE INDEX CONCURRENTLY``) are not allowed.

    ``reindex`` names resource types whose search index rows must be rebuilt
    (a new index column, a changed normalisation): the migration queues one
    ``$reindex`` job for them in its own transaction, and the server's job
    runner rebuilds them in the background, resuming after a restart like any
    ``$reindex``.  Until it finishes, searches on the changed values may miss
    resources; reads and other searches are unaffected.
    """

    version: int
    description: str
    statements: tuple[str, ...] = ()
    dialects: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    run: Callable[[MigrationStep], None] | None = None
    reindex: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stream:
    """A named sequence of migrations and the version a new database starts at.

    ``baseline`` is the version a database has once the owner's own "create
    everything" statements ran (core: store/schema.py, version 8, the layout
    before migrations existed); a pillar has none and starts at 0, its first
    migration creating its tables.  A database recording less than the
    baseline (but more than 0) predates migrations and cannot be brought forward.
    """

    name: str
    migrations: tuple[Migration, ...] = ()
    baseline: int = 0

    def __post_init__(self) -> None:
        expected = list(range(self.baseline + 1, self.baseline + 1 + len(self.migrations)))
        found = [migration.version for migration in self.migrations]
        if found != expected:
            raise ValueError(f"Migrations of stream '{self.name}' must be numbered "
                             f"{expected} (after its baseline {self.baseline}), not {found}.")

    @property
    def latest(self) -> int:
        """The version this Hygeia brings the stream to."""
        return self.baseline + len(self.migrations)

    def after(self, version: int) -> tuple[Migration, ...]:
        """The migrations a database at ``version`` still needs, in order."""
        return tuple(m for m in self.migrations if m.version > version)
