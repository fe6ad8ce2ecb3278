"""The storage layout version: a database of another layout is refused, never written into."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hygeia.store import Repository, open_repository
from hygeia.store.migrations import CORE
from hygeia.store.postgres import PostgresRepository
from hygeia.store.schema import SCHEMA_VERSION, SchemaVersionError
from hygeia.store.sqlite import SqliteRepository


def _set_version(repository: Repository, version: int) -> str:
    """Rewrite the recorded layout version behind the repository's back; returns its URL."""
    if isinstance(repository, SqliteRepository):
        path = repository.path
        with sqlite3.connect(path) as connection:
            connection.execute("UPDATE hygeia_schema SET version = ?", (version,))
        return f"sqlite:///{path}"
    import psycopg

    assert isinstance(repository, PostgresRepository)
    url = repository.url
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("UPDATE hygeia_schema SET version = %s", (version,))
    return str(url)


def test_a_database_of_another_layout_is_refused(repository: Repository) -> None:
    """Older than the migrations' baseline: no migration can bring it forward."""
    url = _set_version(repository, CORE.baseline - 1)
    try:
        with pytest.raises(SchemaVersionError, match=f"version {CORE.baseline - 1}"):
            open_repository(url)
    finally:
        _set_version(repository, SCHEMA_VERSION)
    open_repository(url).close()  # the same layout opens


def test_the_cli_says_why_it_will_not_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    repository = open_repository(url)
    _set_version(repository, 1)
    repository.close()
    result = subprocess.run([sys.executable, "-m", "hygeia.cli.main", "load", "--db", url,
                             "--quiet", str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "storage layout version 1" in result.stderr.replace("\n", " ")
    assert "Traceback" not in result.stderr


def test_an_older_database_trades_its_whole_value_indexes_for_prefixes(
        repository: Repository) -> None:
    """A database laid out before the prefix indexes (same layout version) opens, loses
    the whole-value indexes (which refused long values on PostgreSQL), and stores and
    finds a 2,700-character name."""
    from hygeia.fhir.search.query import parse_query
    from hygeia.fhir.search.rows import IndexRows
    from hygeia.store.base import StoredVersion

    old = ["DROP INDEX string_index_prefix", "DROP INDEX token_index_text_prefix",
           "CREATE INDEX string_index_lookup ON string_index (h_param, norm)",
           "CREATE INDEX token_index_text ON token_index (h_param, text, res_pk) "
           "WHERE text IS NOT NULL"]
    url = _run_behind(repository, old)
    reopened = open_repository(url)
    try:
        names = _index_names(reopened)
        assert "string_index_lookup" not in names and "token_index_text" not in names
        assert {"string_index_prefix", "token_index_text_prefix"} <= names
        family = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(2700))
        rows = IndexRows()
        rows.strings.append(("family", family, family))
        with reopened.transaction() as session:
            session.put(StoredVersion("Patient", "long", 1, 0, False, b"{}", "PUT", 0), rows)
        with reopened.reader() as session:
            for value in (family, family[:256], family[:300], family[:10]):
                page = session.search(parse_query("Patient", [("family", value)]))
                assert [m.id for m in page.matches] == ["long"]
            assert session.search(parse_query("Patient", [("family", family + "x")])
                                  ).matches == []
    finally:
        reopened.close()


def _run_behind(repository: Repository, ddl: list[str]) -> str:
    """Run DDL behind the repository's back on its database; returns its URL."""
    if isinstance(repository, SqliteRepository):
        with sqlite3.connect(repository.path) as connection:
            for statement in ddl:
                connection.execute(statement)
        return f"sqlite:///{repository.path}"
    import psycopg

    assert isinstance(repository, PostgresRepository)
    with psycopg.connect(repository.url, autocommit=True) as connection:
        for statement in ddl:
            connection.execute(statement)
    return str(repository.url)


def _index_names(repository: Repository) -> set[str]:
    if isinstance(repository, SqliteRepository):
        with sqlite3.connect(repository.path) as connection:
            return {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index'")}
    import psycopg

    assert isinstance(repository, PostgresRepository)
    with psycopg.connect(repository.url) as connection:
        return {row[0] for row in connection.execute("SELECT indexname FROM pg_indexes")}
