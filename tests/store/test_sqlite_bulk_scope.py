"""SQLite's bulk-load scope keeps memory flat: a small writer cache while the lookup
indexes are gone, the final index build sorting in temporary files on disk, and the
connection's settings as they were once the scope ends, however it ends."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hygeia.fhir.search.rows import IndexRows
from hygeia.store.base import StoredVersion
from hygeia.store.schema import lookup_indexes
from hygeia.store.sqlite import repository as sqlite_repository
from hygeia.store.sqlite.repository import BULK_CACHE_MB, WRITER_CACHE_MB, SqliteRepository

TEMP_STORE_FILE, TEMP_STORE_MEMORY = 1, 2


def _pragma(repository: SqliteRepository, name: str) -> int:
    return int(repository._writer.execute(f"PRAGMA {name}").fetchone()[0])


def _spy_on_index_build(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The temp_store setting in force when the rebuilt indexes get their statistics
    (inside the transaction that builds them)."""
    seen: list[int] = []
    restore = sqlite_repository.restore_missing_statistics

    def spy(connection: Any) -> None:
        seen.append(int(connection.execute("PRAGMA temp_store").fetchone()[0]))
        restore(connection)

    monkeypatch.setattr(sqlite_repository, "restore_missing_statistics", spy)
    return seen


def test_an_empty_database_loads_with_a_small_cache_and_builds_indexes_on_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repository = SqliteRepository(tmp_path / "bulk.db")
    seen = _spy_on_index_build(monkeypatch)
    assert _pragma(repository, "cache_size") == -WRITER_CACHE_MB * 1024
    with repository.bulk_load() as deferred:
        assert deferred is True
        assert _pragma(repository, "cache_size") == -BULK_CACHE_MB * 1024
        with repository.transaction() as session:
            session.put(StoredVersion("Basic", "b1", 1, 1, False,
                                      b'{"resourceType":"Basic","id":"b1"}', "POST", 0),
                        IndexRows())
    assert seen == [TEMP_STORE_FILE]
    assert _pragma(repository, "cache_size") == -WRITER_CACHE_MB * 1024
    assert _pragma(repository, "temp_store") == TEMP_STORE_MEMORY
    repository.close()


def test_settings_come_back_when_the_load_fails(tmp_path: Path) -> None:
    repository = SqliteRepository(tmp_path / "failed.db")
    with pytest.raises(RuntimeError), repository.bulk_load():
        raise RuntimeError("the load broke off")
    assert _pragma(repository, "cache_size") == -WRITER_CACHE_MB * 1024
    assert _pragma(repository, "temp_store") == TEMP_STORE_MEMORY
    repository.close()


def test_a_database_with_data_keeps_the_large_cache(tmp_path: Path) -> None:
    repository = SqliteRepository(tmp_path / "full.db")
    with repository.transaction() as session:
        session.put(StoredVersion("Basic", "b1", 1, 1, False,
                                  b'{"resourceType":"Basic","id":"b1"}', "POST", 0), IndexRows())
    with repository.bulk_load() as deferred:
        assert deferred is False
        assert _pragma(repository, "cache_size") == -WRITER_CACHE_MB * 1024
    repository.close()


def test_indexes_rebuilt_at_open_sort_on_disk(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed bulk load leaves its lookup indexes dropped; the next open builds them."""
    SqliteRepository(tmp_path / "killed.db").close()
    with sqlite3.connect(tmp_path / "killed.db") as connection:
        for name, _ in lookup_indexes():
            connection.execute(f"DROP INDEX {name}")
    seen = _spy_on_index_build(monkeypatch)
    repository = SqliteRepository(tmp_path / "killed.db")
    assert seen == [TEMP_STORE_FILE]
    assert _pragma(repository, "temp_store") == TEMP_STORE_MEMORY
    present = {row[0] for row in repository._writer.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {name for name, _ in lookup_indexes()} <= present
    repository.close()
