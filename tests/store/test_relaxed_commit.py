"""``transaction(flush_to_disk=False)``: commits like any other, and leaves the
connection's durability setting as it found it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hygeia.fhir.search.rows import IndexRows
from hygeia.store import Repository
from hygeia.store.base import StoredVersion
from hygeia.store.sqlite.repository import SqliteRepository


def _version(id: str) -> StoredVersion:
    return StoredVersion("Basic", id, 1, 1, False, b'{"resourceType":"Basic","id":"%s"}'
                         % id.encode(), "POST", 0)


def test_a_relaxed_commit_commits(repository: Repository) -> None:
    with repository.transaction(flush_to_disk=False) as session:
        session.put(_version("relaxed"), IndexRows())
    with repository.reader() as session:
        assert session.current("Basic", "relaxed") is not None


def test_sqlite_restores_full_sync_after_commit_and_rollback(tmp_path: Path) -> None:
    """SQLite's synchronous setting belongs to the connection: it must go back to FULL."""
    repository = SqliteRepository(tmp_path / "sync.db")
    writer = repository._writer

    with repository.transaction(flush_to_disk=False):
        assert writer.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with pytest.raises(RuntimeError), repository.transaction(flush_to_disk=False) as session:
        session.put(_version("gone"), IndexRows())
        raise RuntimeError("roll back")
    assert writer.execute("PRAGMA synchronous").fetchone()[0] == 2
    with repository.reader() as session:
        assert session.current("Basic", "gone") is None
    repository.close()
