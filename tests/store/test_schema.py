"""The storage layout version: a database of another layout is refused, never written into."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hygeia.store import Repository, open_repository
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
    url = _set_version(repository, SCHEMA_VERSION - 1)
    try:
        with pytest.raises(SchemaVersionError, match=f"version {SCHEMA_VERSION - 1}"):
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


@pytest.mark.postgres
def test_an_older_postgres_database_trades_its_whole_value_indexes_for_prefixes(
        postgres_url: str) -> None:
    """A database laid out before the prefix indexes (same layout version) opens, loses
    the whole-value indexes that refused long values, and stores a 2,700-letter name."""
    import psycopg

    from hygeia.fhir.search.rows import IndexRows
    from hygeia.store.base import StoredVersion

    open_repository(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        for index in ("string_index_prefix", "uri_index_prefix", "composite_index_prefix",
                      "token_index_text_prefix"):
            connection.execute(f"DROP INDEX {index}")
        connection.execute("CREATE INDEX string_index_lookup ON string_index (h_param, norm)")
        connection.execute("CREATE INDEX token_index_text ON token_index (h_param, text, res_pk)"
                           " WHERE text IS NOT NULL")
    repository = open_repository(postgres_url)
    try:
        with psycopg.connect(postgres_url) as connection:
            names = {row[0] for row in connection.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename LIKE '%_index'")}
        assert "string_index_lookup" not in names and "token_index_text" not in names
        assert {"string_index_prefix", "token_index_text_prefix"} <= names
        family = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(2700))
        rows = IndexRows()
        rows.strings.append(("family", family.lower(), family))
        with repository.transaction() as session:
            session.put(StoredVersion("Patient", "long", 1, 0, False, b"{}", "PUT", 0), rows)
    finally:
        repository.close()
